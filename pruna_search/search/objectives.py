"""Objectives, budgets and the rule that picks the model to ship from the Pareto set.

Budgets are constraints (``trial.set_constraint``, feasible when <= 0), never penalties
(docs/design.md). What Optuna optimizes follows what the objective ships:

- ``pareto``: maximize accuracy, minimize latency (and size with ``include_size``); no budget;
  ships the fastest trial within ``select_max_drop`` of dense accuracy.
- ``fastest_within_drop``: minimize latency subject to accuracy drop <= ``max_accuracy_drop``;
  ships the fastest feasible trial.
- ``best_within_latency``: maximize accuracy subject to latency <= ``max_latency_ms`` (or speedup
  >= ``min_speedup``); ships the most accurate feasible trial.

"Latency" is ``latency_ms``: the study's dense reference divided by the speedup (see
``evaluate.py``), and "fastest", when choosing the trial to ship and when ruling a plan out
before its fine-tune, is the highest speedup — the same order. Both rest on a ratio to the dense
model timed in the same window, which a window-wide slowdown of the host leaves alone where it
moves the raw milliseconds (``latency_ms_p10``).

A budgeted objective is a single-objective study: the sampler's "good" trials are then the fast
(or accurate) feasible ones. As a two-objective study, the lossless end of the front (dense int8
at 0 points) always ranked first, and TPE kept proposing it instead of fast plans within budget.
The Pareto front of accuracy against latency (``front_names``) is computed from every trial's
metrics either way, for the report, ``pareto.csv`` and the tracker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..core import names
from ..core.errors import ConfigError
from ..measure import Metric
from ..measure import metric as resolve_metric

MAXIMIZE = "maximize"
MINIMIZE = "minimize"

# Constraint names (Optuna constraint keys and report columns).
DROP_BUDGET = "accuracy_drop_budget"
LATENCY_BUDGET = "latency_budget"
SPEEDUP_BUDGET = "speedup_budget"
SLACK = 1.03  # timing noise allowed before a plan is ruled out on latency alone
MIN_IMAGES_IN_BUDGET = 3  # a budget on the drop spans at least this many val images


@dataclass(frozen=True)
class Objective:
    """What the study optimizes and which trial it ships; one subclass per objective (build one
    with ``make_objective``), so the trial loop calls it without knowing its name.

    Attributes:
        name: one of ``OBJECTIVES``.
        max_accuracy_drop: absolute budget (0.01 = one point) for ``fastest_within_drop``.
        max_latency_ms: latency budget (``latency_ms``) for ``best_within_latency``.
        min_speedup: speedup budget against dense fp32 for ``best_within_latency``.
        include_size: also minimize the ONNX file size.
        select_max_drop: for ``pareto``, the accuracy drop the shipped model may have.
        metric: what "accuracy" is: ``top1``, ``top5`` or ``package.module:function`` of
            (logits, labels), higher is better; budgets and drops are on it.
        allow_small_val: run even when the val split is too small to resolve the budget
            (see ``small_val``); not part of a study's identity.
    """

    name: str = "fastest_within_drop"
    max_accuracy_drop: float | None = 0.01
    max_latency_ms: float | None = None
    min_speedup: float | None = None
    include_size: bool = False
    select_max_drop: float = 0.01
    metric: str = "top1"
    allow_small_val: bool = False

    # the metric Optuna optimizes besides the size (None: the whole front, two objectives)
    optimized: ClassVar[str | None] = None
    # a plan timed before its fine-tune can be ruled out only against the trial the objective
    # would ship now (fastest_within_drop), or against the budget alone (best_within_latency)
    screens_against_choice: ClassVar[bool] = False
    screens: ClassVar[bool] = True
    # a latency or speedup budget, checked against the fastest plan of the space before a study
    latency_budget: ClassVar[bool] = False
    # accuracy is a budget (a constraint), not what the study optimizes
    accuracy_is_a_budget: ClassVar[bool] = False

    def __post_init__(self) -> None:
        resolve_metric(self.metric)  # an unknown or unimportable metric fails at parse
        for field in ("max_accuracy_drop", "max_latency_ms", "min_speedup", "select_max_drop"):
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"objective.{field}: {value!r} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"objective.{field}: {value!r} must be a finite number >= 0")
        self.check()

    def check(self) -> None:
        """Refuse budgets this objective cannot use (``ConfigError``)."""

    @property
    def scorer(self) -> Metric:
        """The metric as a function of (logits, labels)."""
        return resolve_metric(self.metric)

    @property
    def accuracy_budget(self) -> tuple[str, float] | None:
        """The key and value of the budget on the metric's drop, if the objective has one."""
        return None

    def small_val(self, val_images: int) -> str | None:
        """Why ``val_images`` cannot judge the budget on the drop (None when they can): one
        image moves top-1 by 1/n, and a budget should span at least ``MIN_IMAGES_IN_BUDGET``
        images, so 1 point needs 300 images."""
        budget = self.accuracy_budget
        if budget is None or budget[1] <= 0:
            return None
        needed = math.ceil(MIN_IMAGES_IN_BUDGET / budget[1] - 1e-9)
        if val_images >= needed:
            return None
        return (
            f"objective.{budget[0]}: {budget[1]:g} cannot be judged on {val_images} val images "
            f"(one image is {100 / val_images:.2g} points; it needs at least {needed})"
        )

    @property
    def front_names(self) -> tuple[str, ...]:
        """The metrics of the Pareto front: accuracy, latency (and size)."""
        if self.include_size:
            return (names.ACCURACY, names.LATENCY, names.SIZE_MB)
        return (names.ACCURACY, names.LATENCY)

    @property
    def value_names(self) -> tuple[str, ...]:
        """The metrics Optuna optimizes, in order."""
        if self.optimized is None:
            return self.front_names
        return (self.optimized, *((names.SIZE_MB,) if self.include_size else ()))

    @property
    def directions(self) -> list[str]:
        return [MAXIMIZE if n == names.ACCURACY else MINIMIZE for n in self.value_names]

    @property
    def tag(self) -> str:
        """Short text for study names: the objective and its budget."""
        raise NotImplementedError

    @property
    def budget(self) -> str:
        """The budget in words, for reports."""
        raise NotImplementedError

    def values(self, metrics: Mapping[str, float]) -> list[float]:
        return [float(metrics[name]) for name in self.value_names]

    def constraints(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Constraint values (feasible when all are <= 0)."""
        return {}

    def rules_out(
        self, metrics: Mapping[str, float], fastest_feasible: Mapping[str, float] | None
    ) -> str | None:
        """Why a plan timed before fine-tuning cannot be shipped whatever its accuracy, or None.
        Speedups are ratios to the dense model timed in the same window, so a window in which
        the whole host ran slower does not rule a plan out the way its milliseconds would;
        ``SLACK`` covers timing noise."""
        return None

    def shippable(self, rows: Sequence[Mapping[str, float]]) -> list[Mapping[str, float]]:
        """The rows the objective may ship (rows carry the metric names plus ``feasible``)."""
        return [r for r in rows if r["feasible"]]

    def choose(self, rows: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
        """The row to ship among feasible ones, or None when no row meets the budget: the
        fastest by speedup (the same-window ratio to dense: steadier across windows than ms)."""
        rows = self.shippable(rows)
        return max(rows, key=lambda r: (r[names.SPEEDUP], r[names.ACCURACY]), default=None)

    def check_reachable(self, best_ms: float, best_speedup: float, target: str) -> None:
        """Refuse a latency budget the fastest plan of the space misses (``latency_budget``)."""


@dataclass(frozen=True)
class Pareto(Objective):
    """Maximize accuracy, minimize latency (and size); ships the fastest trial within
    ``select_max_drop`` of dense accuracy; never rules a plan out before its fine-tune (a slower
    plan may still be more accurate)."""

    name: str = "pareto"
    screens: ClassVar[bool] = False

    @property
    def accuracy_budget(self) -> tuple[str, float] | None:
        return "select_max_drop", float(self.select_max_drop)

    @property
    def tag(self) -> str:
        return "pareto" + ("-size" if self.include_size else "")

    @property
    def budget(self) -> str:
        return f"none (ships the fastest within {self.select_max_drop * 100:g} points)"

    def shippable(self, rows: Sequence[Mapping[str, float]]) -> list[Mapping[str, float]]:
        return [
            r for r in rows if r["feasible"] and r[names.ACCURACY_DROP] <= self.select_max_drop
        ]


@dataclass(frozen=True)
class FastestWithinDrop(Objective):
    """Minimize latency subject to accuracy drop <= ``max_accuracy_drop``; ships the fastest
    feasible trial; rules out a plan slower than the fastest trial within the budget so far."""

    name: str = "fastest_within_drop"
    optimized: ClassVar[str | None] = names.LATENCY
    screens_against_choice: ClassVar[bool] = True
    accuracy_is_a_budget: ClassVar[bool] = True

    def check(self) -> None:
        if self.max_accuracy_drop is None:
            raise ConfigError(
                "objective.max_accuracy_drop: fastest_within_drop needs a budget, e.g. 0.01 "
                "(one accuracy point)"
            )
        if self.max_accuracy_drop > 1:
            raise ConfigError(
                f"objective.max_accuracy_drop: {self.max_accuracy_drop} is absolute (0.01 is one "
                "point); use a value in [0, 1]"
            )

    @property
    def drop(self) -> float:
        return float(self.max_accuracy_drop or 0.0)

    @property
    def accuracy_budget(self) -> tuple[str, float] | None:
        return "max_accuracy_drop", self.drop

    @property
    def tag(self) -> str:
        return f"drop{self.drop:g}"

    @property
    def budget(self) -> str:
        what = "accuracy" if self.metric == "top1" else self.metric
        return f"{what} drop <= {self.drop * 100:g} points"

    def constraints(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {DROP_BUDGET: metrics[names.ACCURACY_DROP] - self.drop}

    def rules_out(
        self, metrics: Mapping[str, float], fastest_feasible: Mapping[str, float] | None
    ) -> str | None:
        if fastest_feasible is None:
            return None
        ms, speedup = metrics[names.LATENCY], metrics[names.SPEEDUP]
        best = fastest_feasible[names.SPEEDUP]
        if speedup * SLACK >= best:
            return None
        return (
            f"{ms:.3f} ms ({speedup:.2f}x), slower than trial "
            f"{fastest_feasible['number']} ({fastest_feasible[names.LATENCY]:.3f} "
            f"ms, {best:.2f}x) which is within the budget"
        )


@dataclass(frozen=True)
class BestWithinLatency(Objective):
    """Maximize accuracy subject to latency <= ``max_latency_ms`` (or speedup >=
    ``min_speedup``); ships the most accurate feasible trial; rules out a plan over the budget."""

    name: str = "best_within_latency"
    optimized: ClassVar[str | None] = names.ACCURACY
    latency_budget: ClassVar[bool] = True

    def check(self) -> None:
        if (self.max_latency_ms is None) == (self.min_speedup is None):
            raise ConfigError(
                "objective: best_within_latency needs exactly one of max_latency_ms "
                "(e.g. 0.5) or min_speedup (e.g. 2.0)"
            )
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise ConfigError(
                f"objective.max_latency_ms: {self.max_latency_ms} must be > 0 (milliseconds)"
            )
        if self.min_speedup is not None and self.min_speedup <= 0:
            raise ConfigError(f"objective.min_speedup: {self.min_speedup} must be > 0")

    @property
    def tag(self) -> str:
        if self.max_latency_ms is not None:
            return f"lat{self.max_latency_ms:g}ms"
        return f"speedup{self.min_speedup:g}x"

    @property
    def budget(self) -> str:
        if self.max_latency_ms is not None:
            return f"latency <= {self.max_latency_ms:g} ms"
        return f"speedup >= {self.min_speedup:g}x"

    def constraints(self, metrics: Mapping[str, float]) -> dict[str, float]:
        if self.max_latency_ms is not None:
            return {LATENCY_BUDGET: metrics[names.LATENCY] - self.max_latency_ms}
        return {SPEEDUP_BUDGET: float(self.min_speedup or 0.0) - metrics[names.SPEEDUP]}

    def rules_out(
        self, metrics: Mapping[str, float], fastest_feasible: Mapping[str, float] | None
    ) -> str | None:
        ms, speedup = metrics[names.LATENCY], metrics[names.SPEEDUP]
        if self.max_latency_ms is not None and ms > self.max_latency_ms * SLACK:
            return f"{ms:.3f} ms, over the {self.max_latency_ms:g} ms budget"
        if self.min_speedup is not None and speedup * SLACK < self.min_speedup:
            return f"{speedup:.2f}x, under the {self.min_speedup:g}x budget"
        return None

    def choose(self, rows: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
        rows = self.shippable(rows)
        return max(rows, key=lambda r: (r[names.ACCURACY], r[names.SPEEDUP]), default=None)

    def check_reachable(self, best_ms: float, best_speedup: float, target: str) -> None:
        if self.max_latency_ms is not None and self.max_latency_ms < 0.97 * best_ms:
            raise ConfigError(
                f"objective.max_latency_ms: {self.max_latency_ms:g} ms cannot be met; the "
                f"fastest plan in the space measures {best_ms:.3f} ms on "
                f"{target}; raise the budget or widen space.ratios"
            )
        if self.min_speedup is not None and self.min_speedup > 1.03 * best_speedup:
            raise ConfigError(
                f"objective.min_speedup: {self.min_speedup:g}x cannot be met; the fastest plan "
                f"in the space measures {best_speedup:.2f}x; lower the budget or widen "
                "space.ratios"
            )


KINDS: dict[str, type[Objective]] = {
    "pareto": Pareto,
    "fastest_within_drop": FastestWithinDrop,
    "best_within_latency": BestWithinLatency,
}
OBJECTIVES = tuple(KINDS)


def make_objective(name: str = "fastest_within_drop", **options: object) -> Objective:
    """The objective called ``name`` with its options (the ``objective`` config section)."""
    kind = KINDS.get(str(name))
    if kind is None:
        raise ConfigError(
            f"objective: {name!r} is unknown; {names.did_you_mean(str(name), OBJECTIVES)}"
        )
    return kind(name=name, **options)  # type: ignore[arg-type]


__all__ = [
    "OBJECTIVES",
    "BestWithinLatency",
    "FastestWithinDrop",
    "Objective",
    "Pareto",
    "make_objective",
]
