"""The study's life in the tracker: parent run, a child per trial, and the end-of-study files.

Every call goes through a :class:`~pruna_search.tracking.GuardedTracker`, so tracking problems
are one warning and a line in the summary, never a failed study. A resumed study finds its
parent run by the ``pruna.study`` tag and logs the trials that have no child run yet (the new
ones, and any finished while the tracking server was down).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import keys, names
from ..core.keys import UID_ATTR
from ..core.model_info import GroupInfo
from ..core.plan import Plan
from ..report import plots
from ..report.finished import FinishedStudy
from ..report.front import pareto_front
from ..space import SearchSpace
from ..tracking import GuardedTracker, StudyEnd, make_tracker
from .records import is_finished, study_record, trial_record
from .rows import LATENCY_NAMES
from .settings import JobSettings
from .study import FrozenTrial, param_importances

log = logging.getLogger("pruna_search")

ARTIFACTS = ("pareto.csv", "report.md", "plan.yaml", "summary.json")


class StudyTracking:
    """Tracks one study (one Hydra job)."""

    def __init__(self, tracker: GuardedTracker, space: SearchSpace) -> None:
        self.tracker = tracker
        self.space = space

    @classmethod
    def start(
        cls,
        settings: JobSettings,
        space: SearchSpace,
        study,
        *,
        overrides: Sequence[str] = (),
        sweep: str | None = None,
        machine: Mapping[str, Any] | None = None,
    ) -> StudyTracking:
        tracker = make_tracker(
            settings.tracking.name, settings.tracking.uri, register=settings.tracking.register
        )
        tracking = cls(tracker, space)
        if settings.tracking.name == "none":
            return tracking
        tracker.start_study(
            study_record(
                settings,
                study.study_name,
                overrides=overrides,
                sweep=sweep,
                machine=machine,
                uid=str(study.user_attrs.get(UID_ATTR, "")),
            )
        )
        tracking.log_missing(study.get_trials(deepcopy=False))
        return tracking

    def log_missing(self, trials: Sequence[FrozenTrial]) -> None:
        """Child runs for the finished trials that have none yet (a resumed study)."""
        finished = [t for t in trials if is_finished(t)]
        if not finished:
            return
        logged = self.tracker.logged_trials()
        for trial in finished:
            if trial.number not in logged:
                self.on_trial(trial)

    def on_trial(self, trial: FrozenTrial) -> None:
        self.tracker.log_trial(trial_record(trial, self.space))

    def end(self, study, output_dir: Path, finished: FinishedStudy) -> None:
        """Plots and files on the parent run, tags on the front and the chosen trial, the
        model in the registry; then the parent run's status."""
        settings, rows, chosen_number = finished.settings, finished.rows, finished.chosen_number
        final_metrics, status = finished.final_metrics, finished.status
        self.log_missing(study.get_trials(deepcopy=False))
        files = [output_dir / name for name in ARTIFACTS]
        files += sorted(output_dir.glob("*.png")) + [output_dir / plots.HTML_FILE]
        metrics = dict(final_metrics or {})
        again = [r for r in rows if r.get("latency_remeasured")]
        self.tracker.end_study(
            StudyEnd(
                pareto=pareto_numbers(rows),
                chosen=chosen_number,
                metrics=metrics,
                artifacts=[f for f in files if f.is_file()],
                model=output_dir / "best.onnx" if final_metrics else None,
                model_name=settings.registered_model,
                model_tags={
                    **{m: f"{metrics[m]:.6g}" for m in names.HEADLINE if m in metrics},
                    keys.STUDY_TAG: study.study_name,
                    keys.TARGET_TAG: settings.target.name,
                    keys.TRIAL_TAG: str(chosen_number),
                },
                remeasured={
                    int(r["number"]): {m: r[m] for m in (*LATENCY_NAMES, names.SPEEDUP)}
                    for r in again
                },
                remeasured_why={int(r["number"]): str(r["latency_remeasured"]) for r in again},
                reranked={
                    int(r["number"]): {
                        "accuracy_reranked": r[names.ACCURACY],
                        "accuracy_drop_reranked": r[names.ACCURACY_DROP],
                        "rerank_steps": float(r["rerank_steps"]),
                    }
                    for r in rows
                    if r.get("rerank_steps") is not None and r.get("duplicate_of") is None
                },
            )
        )
        self.tracker.close("KILLED" if status == "interrupted" else "FINISHED")

    def fail(self, interrupted: bool) -> None:
        self.tracker.close("KILLED" if interrupted else "FAILED")

    def not_logged(self) -> str | None:
        return self.tracker.summary()


def pareto_numbers(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Trials on the feasible Pareto front (what Optuna's ``best_trials`` is for a two-objective
    study), duplicates of those included."""
    feasible = [r for r in rows if r["feasible"] and r.get("duplicate_of") is None]
    front = {int(r["number"]) for r in pareto_front(feasible, (names.ACCURACY, names.LATENCY))}
    front |= {
        int(r["number"])
        for r in rows
        if r.get("duplicate_of") is not None and r["duplicate_of"] in front
    }
    return sorted(front)


def layer_rows(space: SearchSpace, plan: Plan) -> list[dict[str, Any]]:
    """The chosen plan layer by layer: channels removed and precision."""
    owner: dict[str, GroupInfo] = {}
    for group in space.info.groups:
        for name in (group.name, *group.members):
            owner.setdefault(name, group)
    rows = []
    for layer in space.info.layers:
        owned = owner.get(layer.name)
        kept = (
            plan.kept(layer.out_channels, owned.name, owned.members)
            if owned
            else layer.out_channels
        )
        rows.append(
            {
                "name": layer.name,
                "ratio": 1 - kept / layer.out_channels,
                "precision": plan.precision_of(layer.name).value,
                "kept": kept,
                "channels": layer.out_channels,
            }
        )
    return rows


def write_plots(study, output_dir: Path, finished: FinishedStudy) -> list[Path]:
    """The end-of-study plots in the output folder (also when tracking is off)."""
    importances = param_importances(
        study,
        {names.ACCURACY: names.ACCURACY, names.LATENCY: names.LATENCY},
    )
    chosen, plan = finished.chosen, finished.chosen_plan
    title = ""
    if chosen is not None:
        title = (
            f"Chosen trial {chosen['number']}: {chosen[names.SPEEDUP]:.2f}x, "
            f"drop {chosen[names.ACCURACY_DROP] * 100:.2f} pt (trial fine-tune)"
        )
    objective = finished.settings.objective
    data = plots.PlotData(
        rows=finished.rows,
        chosen=finished.chosen_number,
        budget=objective.budget,
        importances=importances,
        layers=layer_rows(finished.space, plan) if plan is not None else None,
        layers_title=title,
        front_names=objective.front_names,
    )
    return plots.write_plots(output_dir, data)


__all__ = ["StudyTracking", "layer_rows", "pareto_numbers", "write_plots"]
