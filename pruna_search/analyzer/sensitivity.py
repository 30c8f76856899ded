"""The sensitivity profile: what each prunable group and each layer's precision costs in accuracy.

One group pruned at each ratio of the space (everything else dense), BatchNorm recalibrated, no
fine-tune; one layer at each lower precision the target runs (everything else fp32). Each is
built, exported and scored like any trial, on the evaluator's validation data (a seeded subset,
``analysis.val_subset``). What the fine-tune would win back is not in these figures: they rank
groups and layers by how much they can lose, they do not predict a fine-tuned accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..core.plan import Finetune, Plan, RoundTo
from ..core.precision import Precision
from ..core.progress import bar
from ..search.evaluate import Evaluator


@dataclass(frozen=True)
class Sensitivity:
    """Accuracy of the exported model with one change at a time.

    Attributes:
        dense: the dense model's metric on the same data.
        prune: group -> pruning ratio -> metric (BatchNorm recalibrated, no fine-tune).
        precision: layer -> precision (``int8``, ``int4``) -> metric.
        seconds: what the profile took.
    """

    dense: float
    prune: dict[str, dict[float, float]] = field(default_factory=dict)
    precision: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def prune_drop(self, group: str, ratio: float) -> float:
        """Accuracy lost (absolute, 0.01 = one point) with ``group`` pruned at ``ratio``."""
        return 0.0 if ratio == 0 else self.dense - self.prune[group][ratio]

    def precision_drop(self, layer: str, precision: str) -> float:
        return (
            0.0
            if precision == Precision.FP32.value
            else self.dense - self.precision[layer][precision]
        )


@dataclass(frozen=True)
class SensitivityPlan:
    """One change to measure: a plan and where its figure goes."""

    kind: str  # "prune" or "precision"
    name: str  # the group or the layer
    choice: float | str  # the ratio or the precision
    plan: Plan


def changes(
    evaluator: Evaluator, ratios: Sequence[float], round_to: RoundTo, bn_batches: int
) -> Iterator[SensitivityPlan]:
    """Every single-change plan of the profile, groups first. Ratios that keep a group the same
    channels (after rounding to the channel multiple) build the same model: only the first is
    listed (``same_as`` gives the others its figure)."""
    recalibrate = Finetune(steps=0, bn_recalibration=bn_batches)
    for group in evaluator.info.groups:
        for ratio, first in same_as(evaluator, ratios, round_to, group.name).items():
            if ratio > 0 and first == ratio:
                plan = Plan(prune={group.name: ratio}, finetune=recalibrate, round_to=round_to)
                yield SensitivityPlan("prune", group.name, ratio, plan)
    as_is = Finetune(steps=0, bn_recalibration=0)
    for layer in evaluator.info.layers:
        for precision in evaluator.target.choices(layer.kind):
            if precision is not Precision.FP32:
                plan = Plan(precision={layer.name: precision}, finetune=as_is, round_to=round_to)
                yield SensitivityPlan("precision", layer.name, precision.value, plan)


def same_as(
    evaluator: Evaluator, ratios: Sequence[float], round_to: RoundTo, group: str
) -> dict[float, float]:
    """Each ratio of ``group`` -> the first ratio that keeps the same channels (0 for those
    that keep them all)."""
    info = evaluator.info.group(group)
    first: dict[int, float] = {info.channels: 0.0}
    out: dict[float, float] = {}
    for ratio in ratios:
        kept = Plan(prune={group: ratio}, round_to=round_to).kept(
            info.channels, group, info.members
        )
        out[float(ratio)] = first.setdefault(kept, float(ratio))
    return out


def sensitivity(
    evaluator: Evaluator, ratios: Sequence[float], round_to: RoundTo, bn_batches: int
) -> Sensitivity:
    """Measure every single-change plan (``changes``) on the evaluator's val data."""
    start = time.perf_counter()
    todo = list(changes(evaluator, ratios, round_to, bn_batches))
    prune: dict[str, dict[float, float]] = {}
    precision: dict[str, dict[str, float]] = {}
    progress = bar(total=len(todo), desc="sensitivity", leave=False)
    try:
        for change in todo:
            if change.kind == "prune":  # scored only: exported unfolded (ORT folds at load)
                metric = evaluator.score_without_finetune(change.plan, fold_bn=False)
            else:  # the dense model's own export, quantized
                metric = evaluator.score(evaluator.at_precisions(change.plan, "sensitivity"))
            if change.kind == "prune":
                prune.setdefault(change.name, {})[float(change.choice)] = metric
            else:
                precision.setdefault(change.name, {})[str(change.choice)] = metric
            progress.update(1)
    finally:
        progress.close()
    dense = float(evaluator.baseline["accuracy"])
    for group, measured in prune.items():
        copies = same_as(evaluator, ratios, round_to, group)
        prune[group] = {
            r: dense if src == 0 else measured[src] for r, src in copies.items() if r > 0
        }
    return Sensitivity(dense, prune, precision, time.perf_counter() - start)


__all__ = ["Sensitivity", "SensitivityPlan", "changes", "same_as", "sensitivity"]
