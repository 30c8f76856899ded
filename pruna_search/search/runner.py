"""The trial loop: ``space(trial)`` -> Plan -> Evaluator -> objectives + constraints.

What the loop guarantees (issue 3):
- a parameter set already evaluated in the study is not evaluated again (its values are reused
  and the trial is marked ``pruna.duplicate_of``);
- a plan that fails to prune, export or quantize becomes a FAIL trial with the reason in its user
  attributes, and the study goes on (until ``max_consecutive_failures`` in a row);
- the first Ctrl-C finishes the running trial and stops; a second one aborts it, marks it FAIL and
  enqueues its parameters again, so the study stays resumable and nothing is lost;
- ``n_trials`` counts evaluated plans (completed trials minus duplicates) in the whole study, so a
  resumed run only adds the missing; a duplicate is answered from the earlier trial at no cost
  (the sampler still learns from it) and does not count.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import names
from ..core.errors import PrunaSearchError
from ..core.plan import Plan
from ..core.precision import Precision
from ..core.progress import bar, quiet
from ..space import SearchSpace, model_key
from .evaluate import Evaluator
from .objectives import Objective
from .study import (
    DUPLICATE_ATTR,
    FAIL_ATTR,
    PRUNED_ATTR,
    REFERENCE_ATTR,
    FixedTrial,
    FrozenTrial,
    Trial,
    TrialPruned,
    TrialState,
    completed,
    evaluated,
)

log = logging.getLogger("pruna_search")

SECONDS_ATTR = "seconds"  # per-stage seconds of a trial (dict)
PLAN_ATTR = "pruna.plan"  # short plan summary
LATENCY_ATTR = "pruna.latency"  # how the latency was measured (runs, load, noise gate, machine)
NOISY_ATTR = "pruna.noisy"  # why the trial's speedup is at risk (flagged); absent when steady
DRIFT_ATTR = "pruna.drift"  # how the whole host drifted during its window (reported only)
# the study's dense reference of latency_ms (ms; see evaluate.py): stored by the first trial
# timed, read by every later run and worker so all trials are scaled by the same figure
DENSE_MS_ATTR = "pruna.dense_ms"
# a figure flagged noisy that came back steady when measured again after the run (a study
# attribute per trial: a finished trial's own attributes cannot change)
REMEASURED_PREFIX = "pruna.remeasured."
LATENCY_NAMES = (names.LATENCY, names.LATENCY_P10, names.LATENCY_P50, names.LATENCY_P90)


class TrialFailed(Exception):
    """A plan could not be applied or measured; the trial is FAIL, the study goes on."""


@dataclass
class LoopOutcome:
    """What happened in this run of the loop."""

    evaluated: int = 0
    duplicates: int = 0
    pruned: int = 0  # ruled out on latency before fine-tuning (latency_first)
    remeasured: int = 0  # flagged figures measured again after the loop that came back steady
    still_noisy: int = 0  # flagged figures that were noisy again
    failed: int = 0
    interrupted: bool = False
    exhausted: bool = False
    stopped_for_failures: str | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, list[float]] = field(default_factory=dict)


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
    label = attrs.get(REFERENCE_ATTR)
    tail = f" [{label}]" if label else ""
    if trial.state is TrialState.FAIL:
        return f"{head} FAIL  {attrs.get(PLAN_ATTR, '')}: {attrs.get(FAIL_ATTR, 'no reason')}"
    if trial.state is TrialState.PRUNED and PRUNED_ATTR in attrs:
        return (
            f"{head} {attrs.get(PLAN_ATTR, ''):<38} not fine-tuned: {attrs[PRUNED_ATTR]} "
            f"{attrs.get(names.TRIAL_SECONDS, 0.0):.1f} s"
        )
    if trial.state is not TrialState.COMPLETE:
        return f"{head} {trial.state.name}"
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
        f"{_latency_of(attrs):.3f} ms {attrs[names.SPEEDUP]:.2f}x "
        f"{attrs.get(names.TRIAL_SECONDS, 0.0):.1f} s"
        + ("" if feasible else " (over budget)")
        + tail
    )


def _latency_of(attrs: Mapping[str, Any]) -> float:
    """A trial's ``latency_ms``; its raw p10 for trials of studies made before ``latency_ms``
    existed (2026-12-04)."""
    return float(attrs.get(names.LATENCY, attrs[names.LATENCY_P10]))


def _record_latency(trial: Trial, latency) -> None:
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
    """A front row (see ``front.py``) from a completed trial."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {m: attrs[m] for m in names.METRICS if m in attrs}
    if names.LATENCY_P10 in row:
        row[names.LATENCY] = _latency_of(attrs)
    row.update(
        number=trial.number,
        reference=attrs.get(REFERENCE_ATTR, ""),
        feasible=is_feasible(trial),
        plan=attrs.get(PLAN_ATTR, ""),
        duplicate_of=attrs.get(DUPLICATE_ATTR),
        # why the trial's speedup is at risk, empty when steady
        latency_noisy=attrs.get(NOISY_ATTR, ""),
        # how the whole host drifted during the window (reported, not flagged)
        latency_drift=attrs.get(DRIFT_ATTR, ""),
    )
    return row


class _Interrupts:
    """First Ctrl-C: stop after the running trial. Second: abort it (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after the running trial (press again to abort it now)")


def run_trials(
    study,
    space: SearchSpace,
    evaluator: Evaluator,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None = None,
    max_consecutive_failures: int = 5,
    max_consecutive_duplicates: int = 25,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    latency_first: bool = False,
) -> LoopOutcome:
    """Run trials until the study has evaluated ``n_trials`` distinct plans (or timeout, Ctrl-C,
    too many failures, or only duplicates proposed ``max_consecutive_duplicates`` times).

    With ``latency_first``, a searched plan is timed before it is fine-tuned; if the objective
    rules it out on latency alone (``Objective.rules_out``) it is PRUNED without fine-tuning
    (a few seconds instead of a fine-tune) and does not count toward ``n_trials``. Reference
    trials are always evaluated in full.
    """
    outcome = LoopOutcome()
    keys: dict[tuple, tuple] = {}  # params -> the model they build (model_key)
    kept: dict[int, Flagged] = {}  # trials of this run whose latency was flagged noisy

    def key_of(params: Mapping[str, Any], plan: Plan | None = None) -> tuple:
        """Trials that build the same model (same channels, precisions and fine-tune) are one
        evaluation, whatever their params: ratios that round to the same channel counts."""
        by_params = params_key(params)
        if by_params not in keys:
            plan = plan if plan is not None else space(FixedTrial(dict(params)))
            keys[by_params] = model_key(space.info, plan)
        return keys[by_params]

    def finished() -> dict[tuple, FrozenTrial]:
        found: dict[tuple, FrozenTrial] = {}
        for t in completed(study):
            found.setdefault(key_of(t.params), t)
        return found

    done = finished()
    stored_ms = adopt_dense_ms(study, evaluator)
    if len(evaluated(study)) >= n_trials:
        # nothing to evaluate: the same command run again measures flagged figures again
        outcome.remeasured, outcome.still_noisy = remeasure_noisy(study, space, evaluator, {})
        return outcome

    def keep_dense_ms() -> None:
        """Store the dense reference the first time a trial of the study fixes it."""
        nonlocal stored_ms
        if stored_ms is None and evaluator.dense_ms is not None:
            stored_ms = evaluator.dense_ms
            study.set_user_attr(DENSE_MS_ATTR, stored_ms)

    def evaluate(trial: Trial) -> list[float]:
        start = time.perf_counter()
        plan = space(trial)
        trial.set_user_attr(PLAN_ATTR, plan_summary(plan, space))
        key = key_of(trial.params, plan)
        if key not in done:  # another worker may have finished it meanwhile
            for other, t in finished().items():
                done.setdefault(other, t)
        if key in done:
            return _reuse(trial, done[key], objective)
        try:
            if latency_first and not trial.user_attrs.get(REFERENCE_ATTR):
                _screen(trial, plan, start)
            evaluation = evaluator.evaluate(plan, name="trial")
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_ATTR, "interrupted (Ctrl-C); enqueued again")
            label = trial.user_attrs.get(REFERENCE_ATTR)
            study.enqueue_trial(
                dict(trial.params), user_attrs={REFERENCE_ATTR: label} if label else None
            )
            raise
        except TrialPruned:
            raise
        except PrunaSearchError as exc:
            trial.set_user_attr(FAIL_ATTR, str(exc))
            raise TrialFailed(str(exc)) from exc
        except Exception as exc:  # a bug or a library failure: record it, keep the study going
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(FAIL_ATTR, reason)
            raise TrialFailed(reason) from exc
        keep_dense_ms()
        metrics = dict(evaluation.metrics)
        metrics[names.TRIAL_SECONDS] = time.perf_counter() - start
        if evaluation.latency is not None and evaluation.latency.noisy:
            kept[trial.number] = Flagged(
                evaluator.keep(evaluation.candidate.onnx_path, f"trial-{trial.number}"),
                plan,
                evaluation.latency.noise,
                evaluation.latency.speedup,
            )
        for name, value in metrics.items():
            trial.set_user_attr(name, float(value))
        trial.set_user_attr(SECONDS_ATTR, {k: round(v, 4) for k, v in evaluation.seconds.items()})
        if evaluation.latency is not None:
            _record_latency(trial, evaluation.latency)
        for stage, value in evaluation.seconds.items():
            outcome.stage_seconds.setdefault(stage, []).append(value)
        for name, value in objective.constraints(metrics).items():
            trial.set_constraint(name, value)
        return objective.values(metrics)

    def _screen(trial: Trial, plan: Plan, start: float) -> None:
        """Time the plan without fine-tuning; prune the trial when latency alone rules it out."""
        # ``done`` was refreshed from the storage just before (the plan is new)
        feasible = [row_of(t) for t in done.values() if is_feasible(t)]
        # what the objective would ship now: for fastest_within_drop, the fastest feasible trial
        fastest = objective.choose(feasible)
        if objective.name == "fastest_within_drop" and fastest is None:
            return  # nothing to compare with yet
        # only the latency: the untuned model times like the tuned one; its accuracy is moot
        latency = evaluator.measure(evaluator.untuned(plan, "probe"), plan)
        metrics = evaluator.latency_metrics(latency)
        keep_dense_ms()
        if latency.noisy:
            return  # a figure the host disturbed rules nothing out: fine-tune, measure again
        reason = objective.rules_out(metrics, fastest)
        if reason is None:
            return
        for name in (*LATENCY_NAMES, names.SPEEDUP):
            trial.set_user_attr(name, float(metrics[name]))
        trial.set_user_attr(names.TRIAL_SECONDS, time.perf_counter() - start)
        trial.set_user_attr(PRUNED_ATTR, reason)
        raise TrialPruned(reason)

    consecutive_failures = 0
    consecutive_idle = 0
    progress = bar(total=n_trials, desc="trials", leave=True)
    progress.update(min(len(evaluated(study)), n_trials))
    best: dict[str, Any] | None = None
    loop_start = time.perf_counter()

    def after_trial(study_, trial: FrozenTrial) -> None:
        nonlocal consecutive_failures, consecutive_idle, best
        # a repeat or a plan ruled out on latency adds nothing new; many in a row mean the
        # sampler has nothing new to offer
        idle = trial.state is TrialState.PRUNED or DUPLICATE_ATTR in trial.user_attrs
        if trial.state is TrialState.PRUNED:
            outcome.pruned += 1
        if idle:
            consecutive_idle += 1
            if consecutive_idle >= max_consecutive_duplicates:
                outcome.exhausted = True
                study_.stop()
        if trial.state is TrialState.COMPLETE:
            consecutive_failures = 0
            if DUPLICATE_ATTR in trial.user_attrs:
                outcome.duplicates += 1
            else:
                consecutive_idle = 0
                progress.update(1)
                outcome.evaluated += 1
                done.setdefault(key_of(trial.params), trial)
            row = row_of(trial)
            best = objective.choose([r for r in (best, row) if r is not None]) or best
            if best is not None:
                progress.set_postfix_str(
                    f"best #{best['number']}: {best[names.SPEEDUP]:.2f}x, "
                    f"acc {best[names.ACCURACY]:.4f}"
                )
        elif trial.state is TrialState.FAIL:
            consecutive_failures += 1
            outcome.failed += 1
            if consecutive_failures >= max_consecutive_failures:
                outcome.stopped_for_failures = trial.user_attrs.get(FAIL_ATTR, "unknown")
                study_.stop()
        log.info(trial_line(trial, objective))
        if on_trial is not None:
            on_trial(trial)
        if len(evaluated(study_)) >= n_trials or interrupts.requested:
            outcome.interrupted = interrupts.requested
            study_.stop()

    try:
        with _Interrupts() as interrupts, quiet():
            study.optimize(
                evaluate,
                n_trials=None,
                timeout=timeout,
                catch=(TrialFailed,),
                callbacks=[after_trial],
                gc_after_trial=False,
            )
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        progress.close()
    if not outcome.interrupted and not outcome.stopped_for_failures:
        outcome.remeasured, outcome.still_noisy = remeasure_noisy(study, space, evaluator, kept)
    outcome.seconds = time.perf_counter() - loop_start
    if outcome.exhausted:
        log.warning(
            f"the sampler proposed only already-evaluated plans (or plans ruled out on latency) "
            f"{max_consecutive_duplicates} times in a row: stopping with "
            f"{len(evaluated(study))} distinct plans (the space is small or the sampler has "
            "converged; widen the space or change sampler)"
        )
    return outcome


def adopt_dense_ms(study, evaluator: Evaluator) -> float | None:
    """Give ``evaluator`` the dense reference of ``latency_ms`` the study stored, if any (the
    first trial timed stores it), and return it."""
    stored = study.user_attrs.get(DENSE_MS_ATTR)
    if stored is not None:
        evaluator.dense_ms = float(stored)
    return stored


@dataclass(frozen=True)
class Flagged:
    """A trial whose latency the noise gate flagged: its plan and a copy of its model (None
    for a trial of an earlier run: rebuilt without fine-tune), to measure again."""

    onnx_path: Path | None
    plan: Plan
    noise: str
    speedup: float


def _flagged_earlier(study, space: SearchSpace, kept: Mapping[int, Flagged]) -> dict[int, Flagged]:
    """The study's evaluated trials flagged noisy, not of this run (``kept``) and not measured
    again steady yet."""
    again = remeasured(study)
    return {
        t.number: Flagged(
            None,
            space(FixedTrial(dict(t.params))),
            str(t.user_attrs[NOISY_ATTR]),
            float(t.user_attrs[names.SPEEDUP]),
        )
        for t in evaluated(study)
        if t.user_attrs.get(NOISY_ATTR) and t.number not in again and t.number not in kept
    }


def remeasure_noisy(
    study, space: SearchSpace, evaluator: Evaluator, kept: Mapping[int, Flagged]
) -> tuple[int, int]:
    """Measure again, after the loop, the trials whose latency was flagged noisy (a slow phase
    of the host that outlasted the noise gate's retries; it may have ended since): this run's
    from the copies in ``kept``, earlier runs' (not yet measured again steady) rebuilt from
    their plans without fine-tune — the same layers, channels and precisions, so the same
    latency. A figure that comes back steady is stored in the study (``REMEASURED_PREFIX`` +
    number) and replaces the flagged one in ``study_rows``; one that is noisy again is left as
    it was. Returns how many came back steady and how many did not."""
    earlier = _flagged_earlier(study, space, kept)
    flagged_all = {**earlier, **kept}
    if not flagged_all or not evaluator.measure_latency:
        return 0, 0
    log.info(
        f"measure  {len(flagged_all)} trial{'s' if len(flagged_all) != 1 else ''} flagged "
        "noisy, again"
        + (f" ({len(earlier)} of earlier runs, rebuilt without fine-tune)" if earlier else "")
    )
    steady = 0
    progress = bar(total=len(flagged_all), desc="re-measure", leave=False)
    try:
        for number, flagged in sorted(flagged_all.items()):
            try:
                path = flagged.onnx_path or evaluator.untuned(flagged.plan, f"again-{number}")
                latency = evaluator.measure(path, flagged.plan)
            except Exception as exc:  # optional work: a failure keeps the flagged figure
                log.warning(f"trial {number:>4} measured again: {exc}; keeps its flagged figure")
                continue
            finally:
                progress.update(1)
            if latency.noisy:
                log.info(
                    f"trial {number:>4} measured again: noisy again ({latency.noise}); keeps its "
                    f"flagged figure ({flagged.speedup:.2f}x)"
                )
                continue
            metrics = evaluator.latency_metrics(latency)
            study.set_user_attr(
                f"{REMEASURED_PREFIX}{number}",
                {**metrics, "was_speedup": flagged.speedup, "was": flagged.noise},
            )
            steady += 1
            log.info(
                f"trial {number:>4} measured again: {metrics[names.SPEEDUP]:.2f}x "
                f"({metrics[names.LATENCY]:.3f} ms), steady; was {flagged.speedup:.2f}x, flagged"
            )
    finally:
        progress.close()
    return steady, len(flagged_all) - steady


def remeasured(study) -> dict[int, dict[str, Any]]:
    """The figures measured again after a run (``remeasure_noisy``), by trial number."""
    return {
        int(key[len(REMEASURED_PREFIX) :]): value
        for key, value in study.user_attrs.items()
        if key.startswith(REMEASURED_PREFIX)
    }


def study_rows(study, objective: Objective) -> list[dict[str, Any]]:
    """A row (``row_of``) per completed trial; a trial whose flagged figure was measured again
    steady (its own, or for a repeat its original's) carries the steady figure, its
    ``latency_noisy`` empty, ``latency_remeasured`` saying what it was, and its feasibility
    judged again on it."""
    again = remeasured(study)
    rows = []
    for trial in completed(study):
        row = row_of(trial)
        source = row["duplicate_of"] if row["duplicate_of"] is not None else trial.number
        figures = again.get(int(source))
        if figures is not None:
            row.update({name: figures[name] for name in (*LATENCY_NAMES, names.SPEEDUP)})
            row["latency_noisy"] = ""
            row["latency_remeasured"] = (
                f"measured again after the run: was {figures['was_speedup']:.2f}x, flagged "
                f"({figures['was']})"
            )
            row["feasible"] = all(v <= 0 for v in objective.constraints(row).values())
        rows.append(row)
    return rows


def _reuse(trial: Trial, previous: FrozenTrial, objective: Objective) -> list[float]:
    """Copy an earlier trial's measurements instead of evaluating the same plan again."""
    trial.set_user_attr(DUPLICATE_ATTR, previous.number)
    for name in (*names.METRICS, NOISY_ATTR):  # the same figures, flagged the same
        if name in previous.user_attrs and name != names.TRIAL_SECONDS:
            trial.set_user_attr(name, previous.user_attrs[name])
    trial.set_user_attr(names.TRIAL_SECONDS, 0.0)
    for name, value in previous.constraints.items():
        trial.set_constraint(name, value)
    values = list(previous.values)
    if any(math.isnan(v) for v in values):  # pragma: no cover - completed trials have values
        raise TrialFailed("the earlier trial has no values")
    return values


__all__ = [
    "DENSE_MS_ATTR",
    "adopt_dense_ms",
    "LoopOutcome",
    "TrialFailed",
    "plan_summary",
    "remeasure_noisy",
    "remeasured",
    "row_of",
    "study_rows",
    "run_trials",
    "trial_line",
]
