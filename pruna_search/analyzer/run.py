"""The Model Analyzer: where the time goes, what each group and layer can lose, and what to try.

``analyze`` measures the dense model's latency per layer at fp32 and at int8 (ONNX Runtime's
profiler, ``measure.profile``), the sensitivity profile (``sensitivity.py``), then for each
accuracy budget the plan with the most time saved within its predicted loss (``suggest.py``),
which it builds, exports, scores and times against the dense model like a trial.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..core import names
from ..core.precision import Precision
from ..data import DataSplits
from ..data.subset import balanced_subset
from ..measure import ProfileSettings, layer_profile
from ..search.evaluate import Evaluator
from ..search.rows import plan_summary
from ..search.settings import AnalysisSettings
from ..search.study import FixedTrial
from ..space import SearchSpace
from .sensitivity import Sensitivity, sensitivity
from .suggest import Choice, knapsack, never_worth, params_of, precision_choices, prune_choices


@dataclass(frozen=True)
class LayerTime:
    """One layer of the latency profile."""

    module: str
    group: str | None  # the prunable group whose channels it produces, if any
    fp32_ms: float
    int8_ms: float | None  # None: the target does not run it at int8

    @property
    def int8_gain(self) -> float | None:
        """fp32 ms / int8 ms (above 1: int8 is faster)."""
        return None if not self.int8_ms else self.fp32_ms / self.int8_ms


@dataclass(frozen=True)
class Suggestion:
    """A suggested plan for a budget, predicted and then measured."""

    budget: float
    params: dict[str, Any]
    summary: str
    predicted_loss: float
    predicted_saved_ms: float
    accuracy: float  # measured: BatchNorm recalibrated, no fine-tune
    speedup: float  # measured against the dense model in one window
    latency_ms: float


@dataclass
class Analysis:
    """What ``analyze`` found (``to_dict`` for ``analysis.json``)."""

    dense_accuracy: float
    fp32_run_ms: float
    int8_run_ms: float | None
    layers: list[LayerTime]
    group_fp32_ms: dict[str, float]
    sensitivity: Sensitivity
    suggestions: list[Suggestion] = field(default_factory=list)
    never_worth: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sensitivity"]["prune"] = {
            g: {str(r): m for r, m in by.items()} for g, by in self.sensitivity.prune.items()
        }
        for row, layer in zip(out["layers"], self.layers, strict=True):
            row["int8_gain"] = layer.int8_gain
        return out


def analyze(evaluator: Evaluator, space: SearchSpace, settings: AnalysisSettings) -> Analysis:
    """Profile the evaluator's dense model on its target and suggest plans of ``space``."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    layers, fp32_run, int8_run = latency_profile(evaluator, settings.profile_runs)
    seconds["latency_profile"] = time.perf_counter() - start
    groups = {g.name: [g.name, *g.members] for g in evaluator.info.groups}
    fp32 = {layer.module: layer.fp32_ms for layer in layers}
    by_group = {g: sum(fp32.get(m, 0.0) for m in members) for g, members in groups.items()}
    options = space.options
    found = sensitivity(evaluator, options.ratios, options.round_to, settings.bn_recalibration)
    seconds["sensitivity"] = found.seconds
    analysis = Analysis(
        dense_accuracy=found.dense,
        fp32_run_ms=fp32_run,
        int8_run_ms=int8_run,
        layers=layers,
        group_fp32_ms=by_group,
        sensitivity=found,
        seconds=seconds,
    )
    start = time.perf_counter()
    suggest(analysis, evaluator, space, settings.budgets)
    seconds["suggestions"] = time.perf_counter() - start
    return analysis


def latency_profile(
    evaluator: Evaluator, runs: int
) -> tuple[list[LayerTime], float, float | None]:
    """Per layer ms at fp32 and at int8 (the dense model quantized as the target runs it),
    timed as the target runs (provider, threads, optimization level, batch)."""
    target = evaluator.target
    profile = ProfileSettings(
        provider=target.provider,
        intra_op_threads=target.intra_op_threads,
        graph_optimization=target.graph_optimization,
        runs=runs,
    )
    fp32 = layer_profile(evaluator.dense_path, evaluator.timing_input, profile)
    probe = evaluator.int8_probe()
    int8 = layer_profile(probe, evaluator.timing_input, profile) if probe else None
    owner = {m: g.name for g in evaluator.info.groups for m in (g.name, *g.members)}
    layers = [
        LayerTime(
            module=layer.name,
            group=owner.get(layer.name),
            fp32_ms=fp32.module_ms.get(layer.name, 0.0),
            int8_ms=int8.module_ms.get(layer.name) if int8 else None,
        )
        for layer in evaluator.info.layers
    ]
    layers.sort(key=lambda t: -t.fp32_ms)
    return layers, fp32.run_ms, int8.run_ms if int8 else None


def suggest(
    analysis: Analysis, evaluator: Evaluator, space: SearchSpace, budgets: Sequence[float]
) -> None:
    """For each budget: the knapsack's plan, built, scored and timed; and the parameters no
    budget makes worth touching."""
    fp32 = {t.module: t.fp32_ms for t in analysis.layers}
    int8 = {t.module: t.int8_ms for t in analysis.layers if t.int8_ms is not None}
    options = prune_choices(space, analysis.sensitivity, analysis.group_fp32_ms)
    options |= tied_precisions(
        evaluator, space, precision_choices(space, analysis.sensitivity, fp32, int8)
    )
    analysis.never_worth = never_worth(options, max(budgets, default=0.0))
    for budget in budgets:
        chosen = knapsack(list(options.values()), budget)
        params = params_of(chosen, space)
        analysis.suggestions.append(_measured(evaluator, space, params, budget, chosen))


def tied_precisions(
    evaluator: Evaluator, space: SearchSpace, options: dict[str, list[Choice]]
) -> dict[str, list[Choice]]:
    """A ``bits/`` parameter that sets several layers at once (``space.precision_tie``) loses
    what those layers lose together, measured: the sum of their single-layer drops overstates
    it (quantization errors partly cancel, and a lone int8 layer pays its own conversions)."""
    dense = float(evaluator.baseline[names.ACCURACY])
    for key, (layers, _) in space.bits_params.items():
        if len(layers) < 2:
            continue
        measured = []
        for choice in options[key]:
            if choice.value != Precision.FP32.value:
                plan = space(FixedTrial(params_of([choice], space)))
                loss = max(0.0, dense - evaluator.score_without_finetune(plan))
                choice = dataclasses.replace(choice, loss=loss)
            measured.append(choice)
        options[key] = measured
    return options


def _measured(
    evaluator: Evaluator,
    space: SearchSpace,
    params: Mapping[str, Any],
    budget: float,
    chosen: Sequence[Choice],
) -> Suggestion:
    """The suggested plan built without fine-tune, scored and timed against dense."""
    plan = space(FixedTrial(dict(params)))
    path = evaluator.recalibrated(plan, f"suggested-{budget:g}")
    metrics = evaluator.latency_metrics(evaluator.measure(path, plan))
    return Suggestion(
        budget=budget,
        params=dict(params),
        summary=plan_summary(plan, space),
        predicted_loss=sum(c.loss for c in chosen),
        predicted_saved_ms=sum(c.saved_ms for c in chosen),
        accuracy=evaluator.score(path),
        speedup=float(metrics[names.SPEEDUP]),
        latency_ms=float(metrics[names.LATENCY]),
    )


# train images the profile's BatchNorm recalibrations draw from (read into memory once)
RECALIBRATION_IMAGES = 256
# calibration images of each int8 variant the profile builds (data.calib_size for the search's)
CALIB_IMAGES = 64


def analysis_splits(splits: DataSplits, settings: AnalysisSettings) -> DataSplits:
    """The data the analysis runs on, all in memory: ``analysis.val_subset`` val images
    (``val_subset``), ``RECALIBRATION_IMAGES`` train images (``recalibration_subset``) and the
    first ``CALIB_IMAGES`` calibration images (int8 sensitivities rank layers; calibrating each
    variant on fewer images barely moves them)."""
    size = settings.subset_of(splits.size("val"))
    splits = val_subset(splits, size, settings.seed)
    splits = recalibration_subset(splits, RECALIBRATION_IMAGES, settings.seed)
    first = range(min(CALIB_IMAGES, splits.size("calib")))
    return dataclasses.replace(splits, calib=in_memory(splits, Subset(splits.calib, first)))


def in_memory(splits: DataSplits, dataset: Dataset) -> TensorDataset:
    """``dataset`` (a split of ``splits``, or part of one) read once into memory, as its
    batches give it (inputs exactly as fed to the model)."""
    x, y = dataclasses.replace(splits, val=dataset).val_arrays()
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def val_subset(splits: DataSplits, size: int, seed: int) -> DataSplits:
    """``splits`` with its val split cut to ``size`` class-balanced examples (seeded) and read
    into memory once: the profile scores it about a hundred times, and a streamed split would
    decode every image (and start its loader processes) each time."""
    if size < splits.size("val"):
        indices = balanced_subset(val_labels(splits), size, seed)
        splits = dataclasses.replace(splits, val=Subset(splits.val, indices.tolist()))
    if isinstance(splits.val, TensorDataset):
        return splits
    return dataclasses.replace(splits, val=in_memory(splits, splits.val))


def recalibration_subset(splits: DataSplits, images: int, seed: int) -> DataSplits:
    """``splits`` with its train split cut to ``images`` examples (seeded) read into memory:
    the profile's BatchNorm recalibrations (one per pruned group and ratio) read only a few
    batches each, the same ones every time instead of decoding new images for each."""
    if isinstance(splits.train, TensorDataset):
        return splits
    order = np.random.default_rng(seed).permutation(splits.size("train"))[:images]
    part = Subset(splits.train, sorted(order.tolist()))
    return dataclasses.replace(splits, train=in_memory(splits, part))


def val_labels(splits: DataSplits) -> np.ndarray:
    """The val split's labels, without reading its inputs when the dataset holds them."""
    dataset = splits.val
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return np.asarray(labels)
    return np.concatenate([y for _, y in splits.batches("val")])


__all__ = [
    "Analysis",
    "AnalysisSettings",
    "LayerTime",
    "Suggestion",
    "analysis_splits",
    "analyze",
    "recalibration_subset",
    "val_subset",
]
