"""What a finished study hands to the report, the plots and the tracker: one value, so each of
them takes it whole instead of a dozen arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class FinishedStudy:
    """A study at its end.

    Attributes:
        study_name: the Optuna study.
        status: ``ok``, ``no_feasible`` or ``interrupted``.
        settings: the job's settings (``search.settings.JobSettings``).
        space: the search space (``space.SearchSpace``).
        rows: one row per completed trial (``search.rows.row_of``), repeats included.
        front: the Pareto front of the evaluated plans (rows, ``chosen`` marked).
        chosen: the row the objective ships, None when no trial meets the budget.
        chosen_on_trials: the trial the objective would ship on the trials' own figures
            (before re-ranking), None when none meets the budget.
        chosen_plan: its plan, replayed from its params.
        final: the shipped model's evaluation after the final fine-tune (``Evaluation``), None
            when nothing was exported.
        outcome: what this run of the trial loop did (``search.runner.LoopOutcome``).
        baseline: the dense model's metrics on the data the shipped model was measured on.
        dense_ms: the study's dense reference of ``latency_ms``.
    """

    study_name: str
    status: str
    settings: Any
    space: Any
    rows: list[dict[str, Any]]
    front: list[dict[str, Any]]
    chosen: Mapping[str, Any] | None
    chosen_plan: Any
    final: Any
    outcome: Any
    baseline: Mapping[str, float]
    dense_ms: float | None = None
    chosen_on_trials: int | None = None

    @property
    def unique(self) -> list[dict[str, Any]]:
        """Rows of evaluated plans (repeats left out)."""
        return [r for r in self.rows if r.get("duplicate_of") is None]

    @property
    def references(self) -> list[dict[str, Any]]:
        return [r for r in self.unique if r["reference"]]

    @property
    def searched(self) -> list[dict[str, Any]]:
        return [r for r in self.unique if not r["reference"]]

    @property
    def chosen_number(self) -> int | None:
        return None if self.chosen is None else int(self.chosen["number"])

    @property
    def final_metrics(self) -> Mapping[str, float] | None:
        return None if self.final is None else self.final.metrics


__all__ = ["FinishedStudy"]
