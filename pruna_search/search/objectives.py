"""Objectives, budgets and the rule that picks the model to ship from the Pareto set.

Budgets are constraints (``trial.set_constraint``, feasible when <= 0), never penalties
(DESIGN.md decision 6). What Optuna optimizes follows what the objective ships:

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

from ..core import names
from ..core.errors import ConfigError
from ..measure import Metric
from ..measure import metric as resolve_metric

OBJECTIVES = ("pareto", "fastest_within_drop", "best_within_latency")
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
    """What the study optimizes and which trial it ships.

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

    def __post_init__(self) -> None:
        resolve_metric(self.metric)  # an unknown or unimportable metric fails at parse
        if self.name not in OBJECTIVES:
            raise ConfigError(
                f"objective: {self.name!r} is unknown; {names.did_you_mean(self.name, OBJECTIVES)}"
            )
        for field in ("max_accuracy_drop", "max_latency_ms", "min_speedup", "select_max_drop"):
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"objective.{field}: {value!r} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"objective.{field}: {value!r} must be a finite number >= 0")
        if self.name == "fastest_within_drop" and self.max_accuracy_drop is None:
            raise ConfigError(
                "objective.max_accuracy_drop: fastest_within_drop needs a budget, e.g. 0.01 "
                "(one accuracy point)"
            )
        if self.name == "fastest_within_drop" and self.max_accuracy_drop > 1:
            raise ConfigError(
                f"objective.max_accuracy_drop: {self.max_accuracy_drop} is absolute (0.01 is one "
                "point); use a value in [0, 1]"
            )
        if self.name == "best_within_latency":
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
    def scorer(self) -> Metric:
        """The metric as a function of (logits, labels)."""
        return resolve_metric(self.metric)

    @property
    def accuracy_budget(self) -> tuple[str, float] | None:
        """The key and value of the budget on the metric's drop, if the objective has one."""
        if self.name == "fastest_within_drop":
            return "max_accuracy_drop", float(self.max_accuracy_drop)
        if self.name == "pareto":
            return "select_max_drop", float(self.select_max_drop)
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
        size = (names.SIZE_MB,) if self.include_size else ()
        if self.name == "fastest_within_drop":
            return (names.LATENCY, *size)
        if self.name == "best_within_latency":
            return (names.ACCURACY, *size)
        return self.front_names

    @property
    def directions(self) -> list[str]:
        return [MAXIMIZE if n == names.ACCURACY else MINIMIZE for n in self.value_names]

    @property
    def tag(self) -> str:
        """Short text for study names: the objective and its budget."""
        if self.name == "fastest_within_drop":
            return f"drop{self.max_accuracy_drop:g}"
        if self.name == "best_within_latency":
            if self.max_latency_ms is not None:
                return f"lat{self.max_latency_ms:g}ms"
            return f"speedup{self.min_speedup:g}x"
        return "pareto" + ("-size" if self.include_size else "")

    @property
    def budget(self) -> str:
        """The budget in words, for reports."""
        if self.name == "fastest_within_drop":
            what = "accuracy" if self.metric == "top1" else self.metric
            return f"{what} drop <= {self.max_accuracy_drop * 100:g} points"
        if self.name == "best_within_latency":
            if self.max_latency_ms is not None:
                return f"latency <= {self.max_latency_ms:g} ms"
            return f"speedup >= {self.min_speedup:g}x"
        return f"none (ships the fastest within {self.select_max_drop * 100:g} points)"

    def values(self, metrics: Mapping[str, float]) -> list[float]:
        return [float(metrics[name]) for name in self.value_names]

    def constraints(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Constraint values (feasible when all are <= 0)."""
        if self.name == "fastest_within_drop":
            return {DROP_BUDGET: metrics[names.ACCURACY_DROP] - self.max_accuracy_drop}
        if self.name == "best_within_latency":
            if self.max_latency_ms is not None:
                return {LATENCY_BUDGET: metrics[names.LATENCY] - self.max_latency_ms}
            return {SPEEDUP_BUDGET: self.min_speedup - metrics[names.SPEEDUP]}
        return {}

    def rules_out(
        self, metrics: Mapping[str, float], fastest_feasible: Mapping[str, float] | None
    ) -> str | None:
        """Why a plan timed before fine-tuning cannot be shipped whatever its accuracy, or None.

        ``fastest_within_drop``: slower than the fastest trial within the budget so far (3 %
        slack for timing noise), by speedup — each a ratio to the dense model timed in the
        same window, so a window in which the whole host ran slower does not rule a plan out
        the way its milliseconds would. ``best_within_latency``: over the latency budget (3 %
        slack). ``pareto`` never rules out: a slower plan may still be more accurate.
        """
        ms = metrics[names.LATENCY]
        if self.name == "fastest_within_drop" and fastest_feasible is not None:
            speedup, best = metrics[names.SPEEDUP], fastest_feasible[names.SPEEDUP]
            if speedup * SLACK < best:
                return (
                    f"{ms:.3f} ms ({speedup:.2f}x), slower than trial "
                    f"{fastest_feasible['number']} ({fastest_feasible[names.LATENCY]:.3f} "
                    f"ms, {best:.2f}x) which is within the budget"
                )
        if self.name == "best_within_latency":
            if self.max_latency_ms is not None and ms > self.max_latency_ms * SLACK:
                return f"{ms:.3f} ms, over the {self.max_latency_ms:g} ms budget"
            speedup = metrics[names.SPEEDUP]
            if self.min_speedup is not None and speedup * SLACK < self.min_speedup:
                return f"{speedup:.2f}x, under the {self.min_speedup:g}x budget"
        return None

    def choose(self, rows: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
        """The row to ship among feasible ones, or None when no row meets the budget.

        Rows carry the metric names plus ``feasible``.
        """
        feasible = [r for r in rows if r["feasible"]]
        if self.name == "pareto":
            feasible = [r for r in feasible if r[names.ACCURACY_DROP] <= self.select_max_drop]
        if not feasible:
            return None
        # "fastest" by speedup, the same-window ratio to dense: steadier across windows than ms
        if self.name == "best_within_latency":
            return max(feasible, key=lambda r: (r[names.ACCURACY], r[names.SPEEDUP]))
        return max(feasible, key=lambda r: (r[names.SPEEDUP], r[names.ACCURACY]))


__all__ = ["OBJECTIVES", "Objective"]
