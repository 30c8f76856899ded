"""Suggestions: for an accuracy budget, the plan that saves the most measured time per point of
predicted loss — a multiple-choice knapsack over the two profiles.

The items are the search space's parameters, so a suggestion is a point of the space: each
``prune/`` parameter chooses one of its ratios and each ``bits/`` parameter one precision. A
choice costs its measured drops (the sensitivity profile, one change at a time, so the
predicted loss of a plan is the sum of its choices' drops) and saves time (the latency
profile: a layer's fp32 time less its int8 time; a group's pruned share of its layers' time,
``ratio x group ms``). The knapsack picks, per
budget, the choices with the most time saved whose drops sum within the budget. Both numbers are
estimates for ranking; every suggested plan is then built, exported and timed for real.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.precision import Precision
from ..space import SearchSpace
from .sensitivity import Sensitivity

UNIT = 0.0005  # loss resolution of the knapsack: 0.05 accuracy points


@dataclass(frozen=True)
class Choice:
    """One option of one item: a group's ratio or a layer's precision."""

    item: str  # the space's parameter (``prune/...`` or ``bits/...``)
    kind: str  # "prune" or "precision"
    value: float | str
    saved_ms: float
    loss: float  # predicted accuracy drop, >= 0


def prune_choices(
    space: SearchSpace, sensitivity: Sensitivity, group_ms: Mapping[str, float]
) -> dict[str, list[Choice]]:
    """Per ``prune/`` parameter of the space: its ratios (0 keeps its groups dense), each saving
    that share of its groups' time and losing the sum of their drops."""
    options: dict[str, list[Choice]] = {}
    for key, groups in space.prune_params.items():
        ms = sum(group_ms.get(g, 0.0) for g in groups)
        options[key] = [
            Choice(key, "prune", r, r * ms, _loss(sensitivity.prune_drop(g, r) for g in groups))
            for r in space.ratio_choices[key]
        ]
    return options


def precision_choices(
    space: SearchSpace,
    sensitivity: Sensitivity,
    fp32_ms: Mapping[str, float],
    int8_ms: Mapping[str, float],
) -> dict[str, list[Choice]]:
    """Per ``bits/`` parameter: its precisions, each saving its int8 layers' fp32 time less
    their int8 time (a precision the profile has no time for saves nothing) and losing the sum
    of their drops."""
    options: dict[str, list[Choice]] = {}
    for key, (layers, values) in space.bits_params.items():
        options[key] = []
        for value in values:
            chosen = space.precisions_for(layers, value)
            saved = sum(
                fp32_ms.get(layer, 0.0) - int8_ms[layer]
                for layer, p in chosen.items()
                if p is Precision.INT8 and layer in int8_ms
            )
            loss = _loss(sensitivity.precision_drop(layer, p.value) for layer, p in chosen.items())
            options[key].append(Choice(key, "precision", value, saved, loss))
    return options


def _loss(drops: Iterable[float]) -> float:
    """A plan's predicted loss: the sum of its single-change drops (gains count as none)."""
    return sum(max(0.0, d) for d in drops)


def knapsack(items: Sequence[Sequence[Choice]], budget: float) -> list[Choice]:
    """One choice per item, the most time saved with the summed loss within ``budget``
    (dynamic programming over the loss in ``UNIT`` steps); items left at no change are not
    listed."""
    capacity = int(round(budget / UNIT))
    # best[c]: (saved ms, choices) using at most c units of loss
    best: list[tuple[float, tuple[Choice, ...]]] = [(0.0, ())] * (capacity + 1)
    for options in items:
        nxt = list(best)
        for c in range(capacity + 1):
            for choice in options:
                cost = int(round(choice.loss / UNIT + 0.4999))  # round up: stay within budget
                if cost > c or choice.saved_ms <= 0:
                    continue
                saved, chosen = best[c - cost]
                if saved + choice.saved_ms > nxt[c][0]:
                    nxt[c] = (saved + choice.saved_ms, (*chosen, choice))
        best = nxt
    return list(best[capacity][1])


def params_of(choices: Sequence[Choice], space: SearchSpace) -> dict[str, Any]:
    """The space's parameters the chosen options set; every other parameter at its no-change
    value (ratio 0, fp32), so the plan replays through the space like any trial."""
    params: dict[str, Any] = {key: 0.0 for key in space.prune_params}
    params |= {key: Precision.FP32.value for key in space.bits_params}
    params |= {c.item: c.value for c in choices}
    return params


def never_worth(options: Mapping[str, Sequence[Choice]], budget: float) -> list[str]:
    """Items no option of which saves time within ``budget``: leave them as they are."""
    return sorted(
        item
        for item, choices in options.items()
        if not any(c.saved_ms > 0 and c.loss <= budget for c in choices)
    )


__all__ = [
    "UNIT",
    "Choice",
    "knapsack",
    "never_worth",
    "params_of",
    "precision_choices",
    "prune_choices",
]
