"""A trial as the search shows it: its plan in words, its line in the log, its front row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core import names
from ..core.keys import (
    BUSY_ATTR,
    DRIFT_ATTR,
    DUPLICATE_ATTR,
    FAIL_ATTR,
    LATENCY_ATTR,
    NOISY_ATTR,
    PLAN_ATTR,
    PRUNED_ATTR,
    REFERENCE_ATTR,
    REMEASURED_PREFIX,
    RERANKED_PREFIX,
    STOPPED_ATTR,
    WARM_START_ATTR,
    WINDOWS_ATTR,
)
from ..core.plan import Plan
from ..core.precision import Precision
from ..report.front import pareto_front
from ..space import SearchSpace
from .objectives import Objective
from .study import FrozenTrial, Trial, TrialState, completed

WAIT_SHOWN_S = 0.5  # a trial line says how long its windows waited for the timing lock from here
LATENCY_NAMES = (names.LATENCY, names.LATENCY_P10, names.LATENCY_P50, names.LATENCY_P90)


def plan_summary(plan: Plan, space: SearchSpace) -> str:
    """``prune 0.41 avg (0-0.75) | int8 14/20`` — a one-glance description of a plan: the
    share of each group's channels the model really drops (after rounding to the channel
    multiple, so plans that build the same model read the same), averaged over the groups."""
    ratios = [
        round(1 - plan.kept(g.channels, g.name, g.members) / g.channels, 3)
        for g in space.info.groups
    ]
    parts = []
    if any(ratios):
        parts.append(
            f"prune {sum(ratios) / len(ratios):.2f} avg ({min(ratios):g}-{max(ratios):g})"
        )
    else:
        parts.append("dense")
    layers = len(space.info.layers)
    for precision in (Precision.INT8, Precision.INT4):
        count = len(plan.layers_at(precision))
        if count:
            parts.append(f"{precision.value} {count}/{layers}")
    if len(parts) == 1:
        parts.append("fp32")
    return " | ".join(parts)


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def is_feasible(trial: FrozenTrial) -> bool:
    """Every budget met (Optuna's convention: a constraint value <= 0)."""
    return all(v <= 0 for v in trial.constraints.values())


def trial_line(trial: FrozenTrial, objective: Objective) -> str:
    """One line per finished trial: plan, accuracy, latency, speedup, seconds."""
    attrs = trial.user_attrs
    head = f"trial {trial.number:>4}"
    label = attrs.get(REFERENCE_ATTR) or attrs.get(WARM_START_ATTR)
    tail = f" [{label}]" if label else ""
    if trial.state is TrialState.FAIL:
        return f"{head} FAIL  {attrs.get(PLAN_ATTR, '')}: {attrs.get(FAIL_ATTR, 'no reason')}"
    seconds = f"{attrs.get(names.TRIAL_SECONDS, 0.0):.1f} s"
    if trial.state is TrialState.PRUNED and PRUNED_ATTR in attrs:
        return (
            f"{head} {attrs.get(PLAN_ATTR, ''):<38} not fine-tuned: {attrs[PRUNED_ATTR]} {seconds}"
        )
    if trial.state is TrialState.PRUNED and STOPPED_ATTR in attrs:
        return (
            f"{head} {attrs.get(PLAN_ATTR, ''):<38} stopped early {attrs[STOPPED_ATTR]} "
            f"{seconds}{tail}"
        )
    if trial.state is TrialState.PRUNED and BUSY_ATTR in attrs:
        return (
            f"{head} {attrs.get(PLAN_ATTR, ''):<38} skipped: trial {attrs[BUSY_ATTR]} of another "
            "worker is evaluating the same model"
        )
    if trial.state is not TrialState.COMPLETE:
        return f"{head} {trial.state.name}"
    waited = sum(w[2] for w in attrs.get(WINDOWS_ATTR, ()))
    if waited >= WAIT_SHOWN_S:
        tail += f" (waited {waited:.1f} s for the timing lock)"
    if DUPLICATE_ATTR in attrs:
        tail += f" [same model as trial {attrs[DUPLICATE_ATTR]}, not re-evaluated]"
    feasible = is_feasible(trial)
    if attrs.get(NOISY_ATTR):
        tail += f" (noisy: {attrs[NOISY_ATTR]})"
    elif attrs.get(DRIFT_ATTR):
        tail += f" (drift: {attrs[DRIFT_ATTR]})"
    return (
        f"{head} {attrs.get(PLAN_ATTR, ''):<38} acc {attrs[names.ACCURACY]:.4f} "
        f"({-attrs[names.ACCURACY_DROP] * 100:+.2f} pt) "
        f"{latency_of(attrs):.3f} ms {attrs[names.SPEEDUP]:.2f}x {seconds}"
        + ("" if feasible else " (over budget)")
        + tail
    )


def latency_of(attrs: Mapping[str, Any]) -> float:
    """A trial's ``latency_ms``; its raw p10 for trials of studies made before ``latency_ms``
    existed (version 0.2)."""
    return float(attrs.get(names.LATENCY, attrs[names.LATENCY_P10]))


def record_latency(trial: Trial, latency) -> None:
    """The measurement's protocol figures and the machine that measured, on the trial."""
    trial.set_user_attr(
        LATENCY_ATTR,
        {
            "runs": latency.candidate.runs,
            "ci": latency.candidate.ci,
            "iqr_ms": latency.candidate.iqr,
            "baseline_ms_p10": latency.baseline.p10,
            # the dense int8 model timed as a probe (target.int8_probe), None when not timed
            "int8_probe_ms_p10": latency.reference.p10 if latency.reference else None,
            "other_load": latency.other_load,
            "interleave": latency.interleave,
            "ratio_moved": latency.ratio_moved,
            "converged": latency.converged,
            "attempts": latency.attempts,
            "rounds": latency.rounds,
            "quiet_rounds": latency.quiet_rounds,
            "cached": latency.cached,
            "runner": latency.runner,
            "fingerprint": latency.fingerprint,
        },
    )
    if latency.noisy:
        trial.set_user_attr(NOISY_ATTR, latency.noise or f"in {latency.attempts} windows")
    if latency.drift:
        trial.set_user_attr(DRIFT_ATTR, latency.drift)


def row_of(trial: FrozenTrial) -> dict[str, Any]:
    """A front row (see ``report.front``) from a completed trial."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {m: attrs[m] for m in names.METRICS if m in attrs}
    if names.LATENCY_P10 in row:
        row[names.LATENCY] = latency_of(attrs)
    row.update(
        number=trial.number,
        reference=attrs.get(REFERENCE_ATTR, ""),
        # the analysis suggestion it was enqueued from (study.warm_start), empty otherwise
        warm_start=attrs.get(WARM_START_ATTR, ""),
        feasible=is_feasible(trial),
        plan=attrs.get(PLAN_ATTR, ""),
        duplicate_of=attrs.get(DUPLICATE_ATTR),
        # why the trial's speedup is at risk, empty when steady
        latency_noisy=attrs.get(NOISY_ATTR, ""),
        # how the whole host drifted during the window (reported, not flagged)
        latency_drift=attrs.get(DRIFT_ATTR, ""),
    )
    return row


def remeasured(study) -> dict[int, dict[str, Any]]:
    """The figures measured again after a run (``remeasure.remeasure_noisy``), by trial
    number."""
    return {
        int(key[len(REMEASURED_PREFIX) :]): value
        for key, value in study.user_attrs.items()
        if key.startswith(REMEASURED_PREFIX)
    }


def reranked(study) -> dict[int, dict[str, Any]]:
    """Each trial's accuracy at the highest fidelity it was re-ranked at (``rerank.Reranker``),
    by trial number: ``{"steps", "accuracy", "accuracy_drop", "seconds"}``."""
    best: dict[int, dict[str, Any]] = {}
    for key, value in study.user_attrs.items():
        if not key.startswith(RERANKED_PREFIX):
            continue
        number = int(key[len(RERANKED_PREFIX) :].split(".")[0])
        if number not in best or value["steps"] > best[number]["steps"]:
            best[number] = value
    return best


def study_rows(study, objective: Objective) -> list[dict[str, Any]]:
    """A row (``row_of``) per completed trial, with what was learnt after its trial:

    - a flagged latency figure measured again steady (its own, or for a repeat its original's)
      replaces the flagged one: ``latency_noisy`` empty, ``latency_remeasured`` says what it was;
    - an accuracy re-ranked at a higher fidelity replaces the trial's (``trial_accuracy``,
      ``trial_accuracy_drop`` and ``trial_feasible`` keep the trial's, ``rerank_steps`` says at
      how many fine-tune steps; None when not re-ranked);

    and its feasibility judged again on the figures it carries."""
    again, higher = remeasured(study), reranked(study)
    rows = []
    for trial in completed(study):
        row = row_of(trial)
        source = int(row["duplicate_of"] if row["duplicate_of"] is not None else trial.number)
        figures = again.get(source)
        if figures is not None:
            row.update({name: figures[name] for name in (*LATENCY_NAMES, names.SPEEDUP)})
            row["latency_noisy"] = ""
            row["latency_remeasured"] = (
                f"measured again after the run: was {figures['was_speedup']:.2f}x, flagged "
                f"({figures['was']})"
            )
            row["feasible"] = all(v <= 0 for v in objective.constraints(row).values())
        row["trial_accuracy"] = row.get(names.ACCURACY)
        row["trial_accuracy_drop"] = row.get(names.ACCURACY_DROP)
        row["trial_feasible"], row["rerank_steps"] = row["feasible"], None
        record = higher.get(source)
        if record is not None:
            row[names.ACCURACY] = record[names.ACCURACY]
            row[names.ACCURACY_DROP] = record[names.ACCURACY_DROP]
            row["rerank_steps"] = record["steps"]
            row["feasible"] = all(v <= 0 for v in objective.constraints(row).values())
        rows.append(row)
    return rows


def at_trial_fidelity(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``study_rows`` as the trials measured them: each row's trial accuracy and feasibility
    (what the choice would be made on without re-ranking)."""
    return [
        {
            **r,
            names.ACCURACY: r["trial_accuracy"],
            names.ACCURACY_DROP: r["trial_accuracy_drop"],
            "feasible": r["trial_feasible"],
        }
        for r in rows
    ]


def choice(rows: Sequence[Mapping[str, Any]], objective: Objective) -> Mapping[str, Any] | None:
    """The row the objective's rule picks from the feasible front of the evaluated plans."""
    unique = [r for r in rows if r["duplicate_of"] is None and r["feasible"]]
    return objective.choose(pareto_front(unique, objective.front_names))


__all__ = [
    "LATENCY_NAMES",
    "at_trial_fidelity",
    "choice",
    "is_feasible",
    "latency_of",
    "params_key",
    "plan_summary",
    "record_latency",
    "remeasured",
    "reranked",
    "row_of",
    "study_rows",
    "trial_line",
]
