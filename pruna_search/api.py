"""The one-shot Python API: ``Config`` and ``optimize()``.

    import pruna_search as ps
    data = ps.data.load("digits")
    model = ps.models.build("resnet20", data=data, pretrained=True)
    result = ps.optimize(model, ps.Config(pruning_ratio=0.5, quantization_bits=8), data=data)
    print(result.metrics["speedup"], result.metrics["accuracy_drop"])
    result.export("resnet20-int8.onnx")

A uniform Config is just a Plan with the same value everywhere; pass a Plan for per-layer control.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import data as data_lib
from . import models as model_lib
from .analyzer import Analysis, analyze
from .analyzer.run import analysis_splits
from .compress import PruneReport
from .core import names
from .core.errors import ConfigError, DataError, ModelError
from .core.files import atomic_copy
from .core.model_info import ModelInfo
from .core.plan import DEFAULT_ROUND_TO, Finetune, Plan, RoundTo
from .core.target import Target, get_target
from .measure import LatencyComparison
from .measure import metric as resolve_metric
from .search import Evaluator, EvaluatorOptions
from .search.settings import AnalysisSettings
from .space import SearchSpace, SpaceOptions
from .train import Compute


@dataclass(frozen=True)
class Config:
    """A uniform compression request, expanded into a Plan over every group and layer.

    Attributes:
        target_device: target name (``cpu``).
        pruning_ratio: fraction of channels removed from every dependency group.
        quantization_bits: 32 (fp32), 8 (int8) or 4 (int4 where the target runs it, int8
            elsewhere).
        finetune_steps: recovery fine-tune steps after pruning; None (default): sized to the
            data by ``auto_finetune_steps`` (one epoch, at least ``AUTO_MIN_STEPS``); 0:
            BatchNorm recalibration only.
        finetune_lr: fine-tune learning rate.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        distill: weight of distillation from the dense model during the fine-tune (0: off).
        keep_fp32: layer names left at fp32 whatever ``quantization_bits`` says (e.g. the
            first conv and the classifier); ``"first"`` and ``"last"`` name those two.
        round_to: kept channels are a multiple of this, or one multiple per precision
            (default ``{"fp32": 8, "int8": 16}``; see ``Plan.multiple_of``).
    """

    target_device: str = "cpu"
    pruning_ratio: float = 0.0
    quantization_bits: int = 8
    finetune_steps: int | None = None
    finetune_lr: float = 0.01
    optimizer: str = "sgd"
    distill: float = 0.7
    keep_fp32: tuple[str, ...] = ()
    round_to: RoundTo = field(default_factory=lambda: dict(DEFAULT_ROUND_TO))

    def steps_for(self, train_size: int | None) -> int:
        """The fine-tune steps: ``finetune_steps``, or sized to ``train_size`` when it is None
        (0 without data)."""
        if self.finetune_steps is not None:
            return self.finetune_steps
        return 0 if not train_size else auto_finetune_steps(train_size)

    def to_plan(self, info: ModelInfo, train_size: int | None = None) -> Plan:
        """The uniform Plan over ``info``; ``train_size`` sizes an automatic fine-tune."""
        plan = Plan.uniform(
            info,
            target=self.target_device,
            pruning_ratio=self.pruning_ratio,
            quantization_bits=self.quantization_bits,
            finetune=Finetune(
                steps=self.steps_for(train_size),
                lr=self.finetune_lr,
                optimizer=self.optimizer,
                distill=self.distill,
            ),
            round_to=self.round_to,
        )
        keep = {_resolve_layer(info, name) for name in self.keep_fp32}
        precision = {k: v for k, v in plan.precision.items() if k not in keep}
        return Plan(
            prune=plan.prune, precision=precision, finetune=plan.finetune, round_to=plan.round_to
        )


# The automatic recovery budget: one epoch of the fine-tuning data, but at least this many
# steps (ResNet-20 on digits 50 % pruned: 0.983 after 60 steps, 0.992 after 300) and at most
# AUTO_MAX_STEPS (an ImageNet-size folder would otherwise take days on a CPU).
AUTO_MIN_STEPS = 300
AUTO_MAX_STEPS = 3000


def auto_finetune_steps(train_size: int, batch_size: int = Finetune.batch_size) -> int:
    """Fine-tune steps sized to ``train_size`` examples: one epoch within
    [AUTO_MIN_STEPS, AUTO_MAX_STEPS]."""
    epoch = math.ceil(train_size / batch_size)
    return min(AUTO_MAX_STEPS, max(AUTO_MIN_STEPS, epoch))


def _resolve_layer(info: ModelInfo, name: str) -> str:
    if name == "first":
        return info.layers[0].name
    if name == "last":
        return info.layers[-1].name
    if name not in info.layer_names:
        raise ConfigError(
            f"keep_fp32: {name!r} is not a layer of this model; "
            f"{names.did_you_mean(name, info.layer_names)}"
        )
    return name


@dataclass
class Result:
    """What ``optimize`` produced. The ONNX file lives in a temporary folder until exported."""

    metrics: dict[str, float]
    baseline: dict[str, float]
    plan: Plan
    prune_report: PruneReport
    seconds: dict[str, float]
    latency: LatencyComparison | None
    onnx_path: Path
    accuracy_before_finetune: float | None = None
    _workdir: Any = field(default=None, repr=False)

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Copy the shippable ONNX model to ``path`` (atomically; one self-contained file)."""
        return atomic_copy(self.onnx_path, path)

    def table(self) -> str:
        """A before/after table of accuracy, latency, speedup and size."""
        rows = [
            (
                "accuracy",
                f"{self.baseline[names.ACCURACY]:.4f}",
                f"{self.metrics[names.ACCURACY]:.4f}",
            ),
            (
                "latency p10 (ms)",
                _fmt(self.baseline.get(names.LATENCY_P10)),
                _fmt(self.metrics.get(names.LATENCY_P10)),
            ),
            ("speedup", "1.00x", f"{self.metrics.get(names.SPEEDUP, float('nan')):.2f}x"),
            (
                "size (MB)",
                f"{self.baseline[names.SIZE_MB]:.3f}",
                f"{self.metrics[names.SIZE_MB]:.3f}",
            ),
            (
                "MMACs",
                f"{self.baseline[names.MACS] / 1e6:.2f}",
                f"{self.metrics[names.MACS] / 1e6:.2f}",
            ),
            (
                "params",
                f"{int(self.baseline[names.PARAMS]):,}",
                f"{int(self.metrics[names.PARAMS]):,}",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'':<{width}}  {'dense fp32':>12}  {'optimized':>12}"]
        lines += [f"{a:<{width}}  {b:>12}  {c:>12}" for a, b, c in rows]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _checked_inputs(
    model: nn.Module | str, config: Config | Plan | None, data: data_lib.DataSplits | str
) -> tuple[Config | Plan, data_lib.DataSplits, nn.Module]:
    """``optimize``'s arguments checked: a Config or Plan, loaded data and a built model."""
    config = Config() if config is None else config
    if not isinstance(config, Config | Plan):
        raise ConfigError(
            f"config: expected pruna_search.Config or Plan, got {type(config).__name__}"
        )
    data = data_lib.load(data) if isinstance(data, str) else data
    if not isinstance(data, data_lib.DataSplits):
        raise DataError(
            f"data: expected a DataSplits or a data set name, got {type(data).__name__}"
        )
    if isinstance(model, str):
        model = model_lib.build(model, data=data, pretrained=True)
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model: expected a torch nn.Module or a model name, got {type(model).__name__}"
        )
    return config, data, model


def _outcome(
    baseline: dict[str, float], metrics: dict[str, float], before: float | None, timed: bool
) -> str:
    return (
        f"accuracy {baseline[names.ACCURACY]:.4f} dense, "
        + (f"{before:.4f} before the fine-tune, " if before is not None else "")
        + f"{metrics[names.ACCURACY]:.4f} shipped ({-100 * metrics[names.ACCURACY_DROP]:+.2f} pt)"
        + (f", {metrics[names.SPEEDUP]:.2f}x faster" if timed else "")
    )


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f"optimize  {text}", flush=True)


def _recovery(evaluator: Evaluator, plan: Plan, config: object, verbose: bool) -> float | None:
    """Say how the plan recovers from pruning; the metric after recalibration only (before
    the fine-tune) when it fine-tunes, else None."""
    steps = plan.finetune.steps
    if plan.is_dense:
        _say(verbose, "nothing pruned, so no fine-tune")
        return None
    auto = isinstance(config, Config) and config.finetune_steps is None
    how = (
        f"auto: one epoch of {len(evaluator.data.train)} train examples, within "
        f"{AUTO_MIN_STEPS}-{AUTO_MAX_STEPS}; Config.finetune_steps sets it"
        if auto
        else "as given"
    )
    if steps == 0:
        _say(verbose, "BatchNorm recalibration only (finetune_steps=0)")
        return None
    before = evaluator.score_without_finetune(plan)
    _say(
        verbose,
        f"fine-tune {steps} steps ({how}) on {evaluator.compute.device}; accuracy after "
        f"pruning + BatchNorm recalibration {before:.4f}",
    )
    return before


def optimize(  # noqa: PLR0913 - the one-shot API: keyword-only options, each with a default
    model: nn.Module | str,
    config: Config | Plan | None = None,
    *,
    data: data_lib.DataSplits | str,
    target: str | Target | None = None,
    measure_latency: bool = True,
    exporter: str = "torchscript",
    workdir: str | os.PathLike[str] | None = None,
    metric: str = "top1",
    device: str = "auto",
    verbose: bool = True,
) -> Result:
    """Compress ``model`` as ``config`` (uniform) or a Plan (per group / per layer) says.

    Accuracy is measured on the exported ONNX model in ONNX Runtime on ``data.val``; latency
    in a separate process, alternately with the dense fp32 export (design decision 5).

    Args:
        model: a trained model, or a built-in model name (trained on ``data`` if not cached).
        config: a Config or a Plan (default: ``Config()``, int8 everywhere).
        data: a DataSplits or a data set name.
        target: the target (default: the Config's ``target_device``, else ``cpu``).
        measure_latency: time the models (skip for accuracy-only runs).
        exporter: ``torchscript`` (fast) or ``dynamo``.
        workdir: where intermediate ONNX files go (default: a temporary folder).
        metric: what accuracy is: ``top1``, ``top5`` or ``package.module:function``.
        device: where the fine-tune runs: ``auto`` (CUDA when there is one), ``cpu``, ``cuda``.
        verbose: print what was done to recover and the accuracy before and after.

    Raises:
        PrunaSearchError: a subclass naming the field, the value and the fix.
    """
    config, data, model = _checked_inputs(model, config, data)
    # a model whose forward returns a dict or a tuple is used through a copy returning logits
    model = model_lib.logits_model(
        model, type(model).__name__, tuple(data.input_shape), data.num_classes, copy_first=True
    )
    target = get_target(target or (config.target_device if isinstance(config, Config) else "cpu"))

    holder, folder = _workdir(workdir)
    evaluator = Evaluator(
        model,
        data,
        target,
        workdir=folder,
        options=EvaluatorOptions(
            exporter=exporter,
            measure_latency=measure_latency,
            metric=resolve_metric(metric),
            compute=Compute.resolve(device),
        ),
    )
    plan = (
        config.to_plan(evaluator.info, data.size("train"))
        if isinstance(config, Config)
        else config
    )
    before = _recovery(evaluator, plan, config, verbose)
    evaluation = evaluator.evaluate(plan)
    baseline = _baseline(evaluator, evaluation.latency)
    _say(verbose, _outcome(baseline, evaluation.metrics, before, evaluation.latency is not None))
    return Result(
        metrics=evaluation.metrics,
        baseline=baseline,
        plan=plan,
        prune_report=evaluation.candidate.prune_report,
        seconds={**evaluator.seconds, **evaluation.seconds},
        latency=evaluation.latency,
        onnx_path=evaluation.candidate.onnx_path,
        accuracy_before_finetune=before,
        _workdir=holder,
    )


def _workdir(
    workdir: str | os.PathLike[str] | None,
) -> tuple[tempfile.TemporaryDirectory[str] | None, Path]:
    """The folder for intermediate files: ``workdir``, else a temporary folder (and its
    holder, which removes it when the Result is collected)."""
    if workdir is not None:
        return None, Path(workdir)
    holder = tempfile.TemporaryDirectory(prefix="pruna_search_")
    return holder, Path(holder.name)


def _baseline(evaluator: Evaluator, latency: LatencyComparison | None) -> dict[str, float]:
    """The dense model's metrics, with its latency figures when it was timed."""
    baseline = dict(evaluator.baseline)
    if latency is not None:
        # latency_ms of dense: the study's dense reference; without one yet (a flagged window
        # and no floor) the window's own dense p10, the scale the candidate's latency_ms is on
        dense_ms = latency.baseline.p10 if evaluator.dense_ms is None else evaluator.dense_ms
        baseline.update(
            {
                names.LATENCY: dense_ms,
                names.LATENCY_P10: latency.baseline.p10,
                names.LATENCY_P50: latency.baseline.p50,
                names.LATENCY_P90: latency.baseline.p90,
            }
        )
    return baseline


def analyze_model(
    model: nn.Module | str,
    data: data_lib.DataSplits | str,
    target: str | Target = "cpu",
    *,
    space: SpaceOptions | None = None,
    settings: AnalysisSettings | None = None,
) -> Analysis:
    """The Model Analyzer on ``model``: its latency per layer on ``target`` (fp32 and int8),
    what each prunable group and each layer's precision costs in accuracy (exported model,
    BatchNorm recalibrated, no fine-tune), and a suggested plan of ``space`` for each budget
    of ``settings.budgets``, built and timed (``pruna-search-analyze`` does the same from the
    config and writes the report).

    Raises:
        PrunaSearchError: a subclass naming the field, the value and the fix.
    """
    _, data, model = _checked_inputs(model, None, data)
    model = model_lib.logits_model(
        model, type(model).__name__, tuple(data.input_shape), data.num_classes, copy_first=True
    )
    settings = settings or AnalysisSettings()
    target = get_target(target)
    with tempfile.TemporaryDirectory(prefix="pruna_analysis_") as folder:
        evaluator = Evaluator(model, analysis_splits(data, settings), target, workdir=folder)
        options = space or SpaceOptions(precision_tie="model")
        return analyze(evaluator, SearchSpace(evaluator.info, target, options), settings)
