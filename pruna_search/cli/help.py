"""``pruna-search --help``: the config groups and every key with its default and one line.

Typed sections describe themselves (their schema dataclass's docstring); the model, data and
sampler options list the keys their YAML sets, described by the model options, the data set's
loader and Optuna's sampler options.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from .. import data as data_lib
from ..models import ModelOptions
from . import schema
from .errors import CONF_DIR, groups, options

HEADER = """\
pruna-search: search per-layer pruning and precision of a trained model against latency
measured on the target and accuracy measured on the exported ONNX model.

Usage: pruna-search [group=option ...] [section.key=value ...] [-m for a sweep]
Outputs (in the run folder, hydra.run.dir=...): best.onnx, plan.yaml, pareto.csv, report.md,
plots, search.log. The study lives in study.storage and resumes when run again."""
FOOTER = """\
Examples:
  pruna-search study.n_trials=200 finetune.trial_steps=200       # overnight
  pruna-search experiment=fashion_resnet20
  pruna-search model=custom model.name=mynets:Net model.checkpoint=net.pt \\
      data=imagefolder data.root=photos data.size=224 data.mean=imagenet data.std=imagenet
  pruna-search objective=best_within_latency objective.min_speedup=2.5
  pruna-search -m model=resnet20,cnn objective.max_accuracy_drop=0.005,0.01
  pruna-search target=remote target.url=http://device:8765      # latency on a device agent
  pruna-search-export study.name=NAME trial=12                   # re-export any trial later
Errors print one line (exit 2); verbose=true shows the traceback; --version; README.md."""
TOP_LEVEL = {
    "seed": "seed of the sampler and of every seeded subset (sampler.seed follows it)",
    "verbose": "true: errors show their traceback",
}
MODEL_NAME = "a built-in model, or package.module:name of your class or factory"
DATA_NAME = "a built-in data set or loader (digits, fashion_mnist, imagefolder, npz)"
SAMPLER = {
    "name": "tpe, nsga2, random or gp (Optuna's samplers)",
    "seed": "the sampler's seed (follows the top-level seed)",
    "n_startup_trials": "random trials before the sampler models the results",
    "multivariate": "TPE models the parameters jointly",
    "population_size": "NSGA-II's population",
}


def help_text() -> str:
    """The whole help: header, groups and their options, every key, examples."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        defaults = compose("search")  # what runs without options
    lines = [HEADER, "", "Config groups (group=option):"]
    lines += [f"  {group}: {', '.join(options(group))}" for group in groups()]
    lines += ["", "Keys (section.key=value; default in brackets):"]
    top = _yaml_values("search")
    for key, text in TOP_LEVEL.items():
        lines.append(_line(key, top.get(key), text))
    for group in groups():
        if group == "experiment":
            continue
        lines += ["", f"{group}:"]
        lines += _typed(group, defaults[group]) if group in schema.SECTIONS else _untyped(group)
    return "\n".join([*lines, "", FOOTER])


def _line(key: str, default: Any, text: str) -> str:
    return f"  {key} [{_show(default)}]: {text}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _typed(group: str, values: DictConfig) -> list[str]:
    texts = schema.descriptions(schema.SECTIONS[group])
    texts.setdefault(
        "capabilities", "layer kind -> precisions the target runs (null: the named target's)"
    )
    return [
        _line(f"{group}.{key}", values.get(key), texts.get(key, "")) for key in schema.keys(group)
    ]


def _untyped(group: str) -> list[str]:
    lines = []
    for option in options(group):
        texts = _descriptions(group, option)
        lines.append(f"  ({group}={option})")
        for key, default in _yaml_values(f"{group}/{option}").items():
            lines.append(_line(f"{group}.{key}", default, texts.get(key, "")))
    return lines


def _descriptions(group: str, option: str) -> dict[str, str]:
    if group == "sampler":
        return SAMPLER
    if group == "model":
        return {"name": MODEL_NAME, **schema.descriptions(ModelOptions)}
    loader = data_lib.loader(option) if option in data_lib.names() else None
    texts = schema.descriptions(loader) if loader is not None else {}
    if loader is not None and set(texts) <= {"options"}:  # a loader over an options dataclass
        module = inspect.getmodule(loader)
        for name, member in inspect.getmembers(module, inspect.isclass):
            if (
                name.endswith("Options")
                and module is not None
                and member.__module__ == module.__name__
            ):
                texts = schema.descriptions(member)
    return {"name": DATA_NAME, **texts}


def _yaml_values(path: str) -> dict[str, Any]:
    """The keys a YAML file sets and their values as written (``${seed}`` unresolved)."""
    loaded = OmegaConf.load(CONF_DIR / f"{path}.yaml")
    assert isinstance(loaded, DictConfig)  # a config group's option is a mapping
    return {
        str(key): loaded._get_node(key)._value()  # type: ignore[union-attr]
        for key in loaded
        if key != "defaults"
    }


__all__ = ["help_text"]
