"""Hydra / OmegaConf errors as one line that names the key, the value and the fix.

Read from the exceptions' own fields (the key, the value, the missing option), never from their
message text; the expected type comes from the config schema (``schema.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from ..core.names import did_you_mean
from ..core.target import RENAMED
from . import schema

# the Hydra configs ship inside the package, so an installed wheel has them
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TOP_LEVEL = ("seed", "verbose")


def groups() -> list[str]:
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def one_line(exc: BaseException) -> str:
    """The one line to print for a config error, with the choices when there are some."""
    missing = _cause(exc, MissingConfigException)
    if isinstance(missing, MissingConfigException) and missing.missing_cfg_file:
        group, _, option = str(missing.missing_cfg_file).rpartition("/")
        choices = list(missing.options or []) or options(group)
        return f"{group}={option}: no such option; {did_you_mean(option, choices)}"
    problem = _cause(exc, OmegaConfBaseException)
    key = str(getattr(problem, "full_key", "") or "")
    if isinstance(problem, MissingMandatoryValue) and key:
        return f"{key}: required; give it on the command line ({key}=...)"
    if isinstance(problem, ValidationError) and key:
        return _bad_value(key, getattr(problem, "value", None))
    if isinstance(problem, ConfigKeyError | ConfigAttributeError) and key:
        return unknown_key(key)
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def _cause(exc: BaseException, kind: type) -> BaseException | None:
    """``exc`` or the first exception of that kind it was raised from."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _bad_value(key: str, value: Any) -> str:
    section, _, field = key.partition(".")
    annotation = schema.keys(section).get(field) if section in schema.SECTIONS else None
    if annotation is None:
        return f"{key}: {value!r} is not a valid value"
    return (
        f"{key}: {value!r} is not {schema.describe(annotation)}; e.g. "
        f"{key}={schema.example(annotation)}"
    )


def unknown_key(key: str) -> str:
    """A key no section has: the nearest names, or the options of the group that have it."""
    if "." not in key:
        return (
            f"{key}: no config group or key of that name; "
            f"{did_you_mean(key, [*groups(), *TOP_LEVEL])}"
        )
    section, _, field = key.rpartition(".")
    if section == "target" and field in RENAMED:
        return f"{key}: renamed; use {RENAMED[field]}"
    if section in schema.SECTIONS:
        return f"{key}: unknown option; {did_you_mean(field, list(schema.keys(section)))}"
    having = [option for option in options(section) if field in option_keys(section, option)]
    if having:
        return (
            f"{key}: the chosen {section} option has no {field!r}; options that have it: "
            f"{', '.join(having)} (choose one, e.g. {section}={having[0]}, or add the key "
            f"with +{key}=...)"
        )
    known = sorted({k for option in options(section) for k in option_keys(section, option)})
    hint = did_you_mean(field, known) if known else "check the spelling"
    return f"{key}: {section} has no option {field!r}; {hint} (or add it with +{key}=...)"


def options(group: str) -> list[str]:
    """The options of a config group (its YAML files)."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def option_keys(group: str, option: str) -> list[str]:
    """The keys one option's YAML file sets."""
    path = CONF_DIR / group / f"{option}.yaml"
    if "/" in group or not path.is_file():
        return []
    loaded = OmegaConf.load(path)
    return [str(k) for k in loaded if k != "defaults"] if hasattr(loaded, "keys") else []
