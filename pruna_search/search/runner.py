"""The trial loop: ``space(trial)`` -> Plan -> Evaluator -> objectives + constraints.

What the loop guarantees:
- a parameter set already evaluated in the study is not evaluated again (its values are reused
  and the trial is marked ``pruna.duplicate_of``);
- a plan that fails to prune, export or quantize becomes a FAIL trial with the reason in its user
  attributes, and the study goes on (until ``max_consecutive_failures`` in a row);
- the first Ctrl-C finishes the running trial and stops; a second one aborts it, marks it FAIL and
  enqueues its parameters again, so the study stays resumable and nothing is lost;
- ``n_trials`` counts evaluated plans (completed trials minus duplicates) in the whole study, so a
  resumed run only adds the missing; a duplicate is answered from the earlier trial at no cost
  (the sampler still learns from it) and does not count;
- with ``study.pruner`` other than none, a searched trial whose fine-tune is weak is stopped
  there (``early_stop``): PRUNED with the step and the proxy accuracy in ``pruna.stopped``,
  it cost only the steps it ran and does not count in ``n_trials``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core import names
from ..core.errors import PrunaSearchError, StoppedEarly
from ..core.keys import (
    BUSY_ATTR,
    CONSTRAINT_PREFIX,
    DENSE_MS_ATTR,
    DUPLICATE_ATTR,
    FAIL_ATTR,
    NOISY_ATTR,
    PLAN_ATTR,
    PRUNED_ATTR,
    REFERENCE_ATTR,
    RETRY_ATTR,
    SECONDS_ATTR,
    STOPPED_ATTR,
    WINDOWS_ATTR,
)
from ..core.plan import Finetune, Plan
from ..core.progress import bar, quiet
from ..space import SearchSpace, model_key
from .early_stop import Reporter, StopRules
from .evaluate import Evaluation, Evaluator
from .objectives import Objective
from .remeasure import Flagged, remeasure_noisy
from .rerank import Reranked, Reranker
from .rows import (
    LATENCY_NAMES,
    is_feasible,
    params_key,
    plan_summary,
    record_latency,
    row_of,
    trial_line,
)
from .study import (
    RERANK_TOP,
    FixedTrial,
    FrozenTrial,
    StudySettings,
    Trial,
    TrialPruned,
    TrialState,
    completed,
    evaluated,
    fail_stale_trials,
    report_interval,
    retries,
    running,
)
from .workers import Workers

log = logging.getLogger("pruna_search")


@dataclass(frozen=True)
class LoopSettings:
    """When the loop stops and whether it screens plans on latency first.

    Attributes:
        n_trials: distinct plans evaluated in the whole study (references included).
        timeout: stop starting trials after this many seconds (None: no limit).
        max_consecutive_failures: stop after this many failed trials in a row.
        max_consecutive_duplicates: stop after this many repeats (or plans ruled out on
            latency) in a row: the sampler has nothing new to offer.
        latency_first: time a searched plan before fine-tuning it, and prune the trial when
            the objective rules it out on latency alone.
        early_stopping: report searched trials' proxy accuracy during their fine-tune and
            stop the weak ones (the study's pruner, the accuracy budget: ``early_stop``).
        report_every: fine-tune steps between two reports (``study.report_interval``).
        max_stopped: stop after this many trials stopped early since the last evaluated plan
            (the sampler offers nothing that reaches the budget).
        rerank: the fine-tune the candidates are re-ranked with after the trials (None: no
            re-ranking; see ``rerank``).
        rerank_top: candidates re-ranked at a time.
        grace_period, heartbeat_interval: the storage's (``study``): how long a trial left
            RUNNING by another process is waited for before the run ends.
    """

    n_trials: int
    timeout: float | None = None
    max_consecutive_failures: int = 5
    max_consecutive_duplicates: int = 25
    latency_first: bool = False
    early_stopping: bool = False
    report_every: int = 20
    max_stopped: int = 25
    rerank: Finetune | None = None
    rerank_top: int = RERANK_TOP
    grace_period: int = StudySettings.grace_period
    heartbeat_interval: int = StudySettings.heartbeat_interval

    @classmethod
    def of(
        cls, study: StudySettings, trial: Finetune | None = None, final: Finetune | None = None
    ) -> LoopSettings:
        """The loop's settings from the ``study`` config section; ``trial`` and ``final``:
        the trials' and the final fine-tune. Re-ranking uses the final one (with
        ``study.rerank_steps`` when set), and is off when that is not longer than the trials'."""
        rerank = None
        if trial is not None and final is not None and study.rerank_top is not None:
            rerank = dataclasses.replace(final, steps=study.rerank_steps or final.steps)
            rerank = rerank if rerank.steps > trial.steps else None
        return cls(
            rerank=rerank,
            rerank_top=study.rerank_top or RERANK_TOP,
            grace_period=study.grace_period,
            heartbeat_interval=study.heartbeat_interval,
            n_trials=study.n_trials,
            timeout=study.timeout,
            max_consecutive_failures=study.max_consecutive_failures,
            latency_first=study.latency_first,
            early_stopping=study.pruner != "none",
            report_every=report_interval(study.report_every, trial.steps if trial else 0),
        )


@dataclass(frozen=True)
class LoopHooks:
    """What the loop is plugged into: ``on_trial`` is told each finished trial; ``workers``:
    the other workers of the study (``search/workers.py``; None: this process alone)."""

    on_trial: Callable[[FrozenTrial], None] | None = None
    workers: Workers | None = None


class TrialFailed(Exception):
    """A plan could not be applied or measured; the trial is FAIL, the study goes on."""


@dataclass
class LoopOutcome:
    """What happened in this run of the loop."""

    evaluated: int = 0
    duplicates: int = 0
    pruned: int = 0  # ruled out on latency before fine-tuning (latency_first)
    stopped_early: int = 0  # fine-tunes stopped early (study.pruner)
    stopped_seconds: float = 0.0  # what the trials stopped early cost
    remeasured: int = 0  # flagged figures measured again after the loop that came back steady
    still_noisy: int = 0  # flagged figures that were noisy again
    failed: int = 0
    busy: int = 0  # skipped: another worker's trial was evaluating the same model
    interrupted: bool = False
    exhausted: bool = False
    all_stopped: bool = False  # max_stopped trials stopped early without an evaluated plan
    stopped_for_failures: str | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, list[float]] = field(default_factory=dict)
    reranked: Reranked | None = None  # what re-ranking did (None: not run)
    # trials other workers were running when this run's trials ended (they finish the study)
    running_elsewhere: list[int] = field(default_factory=list)


class Interrupts:
    """First Ctrl-C: stop after the running trial. Second: abort it (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
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


class TrialLoop:
    """One run of the study's trial loop; its rules are the methods below.

    ``run()`` asks Optuna for trials until the study has evaluated ``n_trials`` distinct plans
    (or timeout, Ctrl-C, too many failures, or the sampler only repeats itself); a trial is
    answered from an earlier one when it builds the same model (``repeat_of``), pruned without
    fine-tuning when its latency alone rules it out (``screen_out``), else evaluated in full.
    """

    def __init__(
        self,
        study,
        space: SearchSpace,
        evaluator: Evaluator,
        objective: Objective,
        settings: LoopSettings,
        hooks: LoopHooks = LoopHooks(),
    ) -> None:
        self.study, self.space, self.evaluator, self.objective = study, space, evaluator, objective
        self.settings = settings
        self.on_trial, self.workers = hooks.on_trial, hooks.workers
        self.outcome = LoopOutcome()
        self._keys: dict[tuple, tuple] = {}  # params -> the model they build (model_key)
        self.done: dict[tuple, FrozenTrial] = {}  # model key -> the trial that evaluated it
        self.kept: dict[int, Flagged] = {}  # trials of this run whose latency was flagged
        self.dense_ms = adopt_dense_ms(study, evaluator)
        self.failures = 0  # in a row
        self.idle = 0  # repeats and plans ruled out on latency, in a row
        self.stopped = 0  # trials stopped early since the last evaluated plan
        self._rules: StopRules | None = None
        self.best: Mapping[str, Any] | None = None
        self.interrupts = Interrupts()
        self.progress: Any = None
        self._started = time.perf_counter()  # of the trials (``search``): timeout counts from it

    # --- the rules ---

    def model_key(self, params: Mapping[str, Any], plan: Plan | None = None) -> tuple:
        """Trials that build the same model (same channels, precisions and fine-tune) are one
        evaluation, whatever their params: ratios that round to the same channel counts."""
        by_params = params_key(params)
        if by_params not in self._keys:
            plan = plan if plan is not None else self.space(FixedTrial(dict(params)))
            self._keys[by_params] = model_key(self.space.info, plan)
        return self._keys[by_params]

    def finished(self) -> dict[tuple, FrozenTrial]:
        """The first completed trial of each model in the study's storage."""
        found: dict[tuple, FrozenTrial] = {}
        for trial in completed(self.study):
            found.setdefault(self.model_key(trial.params), trial)
        return found

    def repeat_of(self, key: tuple) -> FrozenTrial | None:
        """The earlier trial that evaluated this model, if any (another worker may have
        finished it meanwhile: the storage is read again for a model not seen yet)."""
        if key not in self.done:
            for other, trial in self.finished().items():
                self.done.setdefault(other, trial)
        return self.done.get(key)

    def screen_out(self, trial: Trial, plan: Plan) -> str | None:
        """Why the plan cannot be shipped whatever its accuracy, from its latency alone (timed
        without fine-tune: the untuned model times like the tuned one), or None."""
        if not self.settings.latency_first or trial.user_attrs.get(REFERENCE_ATTR):
            return None  # reference trials are always evaluated in full
        if not self.objective.screens:
            return None
        # ``done`` was refreshed from the storage just before (the plan is new)
        feasible = [row_of(t) for t in self.done.values() if is_feasible(t)]
        chosen = self.objective.choose(feasible)  # what the objective would ship now
        if self.objective.screens_against_choice and chosen is None:
            return None  # nothing to compare with yet
        metrics, earlier = self.untuned_latency(trial, plan)
        if metrics is None:
            return None  # a figure the host disturbed rules nothing out: fine-tune, measure again
        reason = self.objective.rules_out(metrics, chosen)
        if reason is not None:
            for name in (*LATENCY_NAMES, names.SPEEDUP):
                trial.set_user_attr(name, float(metrics[name]))
            if earlier is not None:
                reason += f" (timed as trial {earlier})"
        return reason

    def untuned_latency(
        self, trial: Trial, plan: Plan
    ) -> tuple[Mapping[str, float] | None, int | None]:
        """The latency metrics of the plan's model without fine-tune (None when the window was
        flagged), and the earlier trial they come from: a trial ruled out on latency that built
        the same model (its figures are reused, not timed again), or None (timed now)."""
        key = self.model_key(trial.params, plan)
        for earlier in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
            if PRUNED_ATTR in earlier.user_attrs and self.model_key(earlier.params) == key:
                figures = (*LATENCY_NAMES, names.SPEEDUP)
                return {n: float(earlier.user_attrs[n]) for n in figures}, earlier.number
        latency = self.evaluator.measure(self.evaluator.untuned(plan, "probe"), plan)
        metrics = self.evaluator.latency_metrics(latency)
        self.record_reference()
        return (None if latency.noisy else metrics), None

    def record_reference(self) -> None:
        """Store the dense reference of ``latency_ms`` the first time a trial of the study
        fixes it, so every later run and worker scales its trials by the same figure."""
        if self.dense_ms is None and self.evaluator.dense_ms is not None:
            self.dense_ms = self.evaluator.dense_ms
            self.study.set_user_attr(DENSE_MS_ATTR, self.dense_ms)

    def reporter(self, trial: Trial, plan: Plan) -> Reporter | None:
        """The fine-tune progress callback that may stop the trial early (``early_stop``), or
        None: early stopping off, a reference trial, no fine-tune, or no rule applies."""
        if not self.settings.early_stopping or trial.user_attrs.get(REFERENCE_ATTR):
            return None
        if plan.is_dense or plan.finetune.steps <= 0:
            return None
        if self._rules is None:
            self._rules = StopRules.of(
                self.study, self.objective, self.evaluator, self.settings.report_every
            )
        if not self._rules.active:
            return None
        return Reporter(trial, self._rules, self.evaluator, plan.finetune.steps)

    def should_stop(self, trial: FrozenTrial) -> bool:
        """After ``trial``: enough plans evaluated, Ctrl-C, failures, repeats or trials
        stopped early in a row."""
        stop = False
        if self.idle >= self.settings.max_consecutive_duplicates:
            self.outcome.exhausted = stop = True
        if self.stopped >= self.settings.max_stopped:
            self.outcome.all_stopped = stop = True
        if self.failures >= self.settings.max_consecutive_failures:
            self.outcome.stopped_for_failures = trial.user_attrs.get(FAIL_ATTR, "unknown")
            stop = True
        self.outcome.interrupted = self.interrupts.requested
        return stop or not self.needed() or self.interrupts.requested

    def needed(self) -> bool:
        """Plans left to evaluate: fewer than ``n_trials`` evaluated or being evaluated by
        other workers, or the retry of a trial that did not finish (``study.retries``); none
        once ``timeout`` has passed."""
        if self.time_left() == 0:
            return False
        in_flight = len(evaluated(self.study)) + len(running(self.study))
        return in_flight < self.settings.n_trials or bool(retries(self.study))

    def time_left(self) -> float | None:
        """Seconds of ``timeout`` left since the trials began (None: no timeout)."""
        timeout = self.settings.timeout
        if timeout is None:
            return None
        return max(0.0, timeout - (time.perf_counter() - self._started))

    def wait_for_running(self) -> list[int]:
        """Trials another process left RUNNING: wait until they finish, go stale (killed: then
        Optuna marks them FAIL and enqueues their retry, which this run evaluates), or — with
        workers — show a live heartbeat (another worker's: returned, it will finish the
        study); at most ``grace_period`` + 2 heartbeats. So a plan a killed run was evaluating
        is never lost, even when ``n_trials`` is met without it."""
        others = running(self.study)
        if not others:
            return []
        grace, beat = self.settings.grace_period, self.settings.heartbeat_interval
        log.info(
            f"study    waiting for trial {', '.join(str(t.number) for t in others)}: running "
            f"in another process, or killed (retried after {grace} s without heartbeat, "
            "study.grace_period)"
        )
        first = self.workers.beats(others) if self.workers is not None else {}
        deadline = time.monotonic() + grace + 2 * beat
        while running(self.study) and time.monotonic() < deadline:
            fail_stale_trials(self.study)  # a stale trial: FAIL, and its retry enqueued
            if retries(self.study):
                self._optimize()
                if self.outcome.interrupted:
                    return []
                continue
            live = self._live(first)
            if live:
                return live
            time.sleep(min(2.0, beat))
        left = [t.number for t in running(self.study)]
        if left:
            log.warning(
                f"study    trial {', '.join(map(str, left))} still running after "
                f"{grace + 2 * beat} s with a heartbeat: another worker's; not waiting for it"
            )
        return left

    def stay_while_others_run(self) -> None:
        """Other workers' trials are running and no plan is left to start: stay until they end
        (then the last worker to finish chooses, ``job.conclude_once``) or one ends without a
        plan (stopped early, ruled out, failed, its worker killed: retried after the grace
        period), when this worker evaluates more. So the study's last plans are not left to one
        worker. Ctrl-C stops waiting."""
        log.info(
            "study    other workers are evaluating the last plans: waiting for them (this worker "
            "takes over any that end without a plan)"
        )
        try:
            while running(self.study) and not self.needed():
                fail_stale_trials(self.study)  # a killed worker's trial: FAIL, retry enqueued
                time.sleep(2.0)
        except KeyboardInterrupt:
            self.outcome.interrupted = True

    def _live(self, first: Mapping[int, object]) -> list[int]:
        """The running trials, when every one of them has a heartbeat newer than ``first``
        (each is another worker's, alive); else [] (one may be a killed process's)."""
        if self.workers is None:
            return []
        others = running(self.study)
        now = self.workers.beats(others)
        # a heartbeat newer than the first one seen, or a trial started since: a live worker's
        alive = [t.number for t in others if now.get(t.number) not in (None, first.get(t.number))]
        return alive if others and len(alive) == len(others) else []

    # --- one trial ---

    def evaluate(self, trial: Trial) -> list[float]:
        """Optuna's objective function: the trial's values (constraints set on the trial)."""
        start = time.perf_counter()
        plan = self.space(trial)
        trial.set_user_attr(PLAN_ATTR, plan_summary(plan, self.space))
        key = self.model_key(trial.params, plan)
        if self.workers is None:
            previous, busy = self.repeat_of(key), None
        else:
            done = lambda: self.repeat_of(key)  # noqa: E731
            previous, busy = self.workers.claim(self.study, trial, key, done)
        if previous is not None:
            return reuse(trial, previous)
        if busy is not None and self.workers is not None:
            raise TrialPruned(self.workers.skip_busy(self.study, trial, busy))
        windows = self.workers.window_count() if self.workers is not None else 0
        try:
            evaluation = self._guarded(trial, plan, start)
        finally:
            self._record_windows(trial, windows)
        self.record_reference()
        metrics = dict(evaluation.metrics)
        metrics[names.TRIAL_SECONDS] = time.perf_counter() - start
        self._record(trial, evaluation, metrics)
        if evaluation.latency is not None and evaluation.latency.noisy:
            self.kept[trial.number] = Flagged(
                self.evaluator.keep(evaluation.candidate.onnx_path, f"trial-{trial.number}"),
                plan,
                evaluation.latency.noise,
                evaluation.latency.speedup,
            )
        return self.objective.values(metrics)

    def _record_windows(self, trial: Trial, since: int) -> None:
        """The trial's latency windows (start, end, seconds waited for the timing lock)."""
        if self.workers is None:
            return
        windows = self.workers.windows(since)
        if windows:
            trial.set_user_attr(WINDOWS_ATTR, [w.to_list() for w in windows])

    def _guarded(self, trial: Trial, plan: Plan, start: float) -> Evaluation:
        """Screen and evaluate the plan; a failure becomes ``TrialFailed`` with its reason on
        the trial, Ctrl-C enqueues the plan again."""
        try:
            reason = self.screen_out(trial, plan)
            if reason is not None:
                trial.set_user_attr(names.TRIAL_SECONDS, time.perf_counter() - start)
                trial.set_user_attr(PRUNED_ATTR, reason)
                raise TrialPruned(reason)
            return self.evaluator.evaluate(
                plan, name="trial", on_progress=self.reporter(trial, plan)
            )
        except StoppedEarly as exc:
            trial.set_user_attr(names.TRIAL_SECONDS, time.perf_counter() - start)
            trial.set_user_attr(STOPPED_ATTR, exc.reason)
            raise TrialPruned(exc.reason) from exc
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_ATTR, "interrupted (Ctrl-C); enqueued again")
            label = trial.user_attrs.get(REFERENCE_ATTR)
            attrs = {RETRY_ATTR: trial.number, **({REFERENCE_ATTR: label} if label else {})}
            self.study.enqueue_trial(dict(trial.params), user_attrs=attrs)
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

    def _record(self, trial: Trial, evaluation: Evaluation, metrics: Mapping[str, float]) -> None:
        """Metrics, stage seconds, latency protocol and constraints on the trial."""
        for name, value in metrics.items():
            trial.set_user_attr(name, float(value))
        trial.set_user_attr(SECONDS_ATTR, {k: round(v, 4) for k, v in evaluation.seconds.items()})
        if evaluation.latency is not None:
            record_latency(trial, evaluation.latency)
        for stage, value in evaluation.seconds.items():
            self.outcome.stage_seconds.setdefault(stage, []).append(value)
        for name, value in self.objective.constraints(metrics).items():
            set_constraint(trial, name, value)

    def after_trial(self, study, trial: FrozenTrial) -> None:
        """Optuna's callback: count the trial, log its line, stop when a rule says so."""
        self._count(trial)
        log.info(trial_line(trial, self.objective))
        if self.on_trial is not None:
            self.on_trial(trial)
        if self.should_stop(trial):
            study.stop()

    def _count(self, trial: FrozenTrial) -> None:
        if trial.state is TrialState.PRUNED and STOPPED_ATTR in trial.user_attrs:
            self._count_stopped(trial)
            return
        if BUSY_ATTR in trial.user_attrs:  # another worker's plan: nothing new proposed
            self.idle += 1
            self.outcome.busy += 1
            return
        repeat = DUPLICATE_ATTR in trial.user_attrs
        # a repeat or a plan ruled out on latency adds nothing new (a failure leaves the count)
        if trial.state is TrialState.PRUNED or repeat:
            self.idle += 1
        self.outcome.pruned += trial.state is TrialState.PRUNED
        if trial.state is TrialState.FAIL:
            self.failures += 1
            self.outcome.failed += 1
        if trial.state is not TrialState.COMPLETE:
            return
        self.failures = 0
        if repeat:
            self.outcome.duplicates += 1
        else:
            self.idle = self.stopped = 0
            self.progress.update(1)
            self.outcome.evaluated += 1
            self.done.setdefault(self.model_key(trial.params), trial)
        candidates = [r for r in (self.best, row_of(trial)) if r is not None]
        self.best = self.objective.choose(candidates) or self.best
        if self.best is not None:
            self.progress.set_postfix_str(
                f"best #{self.best['number']}: {self.best[names.SPEEDUP]:.2f}x, "
                f"acc {self.best[names.ACCURACY]:.4f}"
            )

    def _count_stopped(self, trial: FrozenTrial) -> None:
        """A trial stopped early was a new plan that ran (neither a repeat nor a failure):
        it breaks a row of failures and counts towards ``max_stopped``."""
        self.failures = 0
        self.stopped += 1
        self.outcome.stopped_early += 1
        self.outcome.stopped_seconds += float(trial.user_attrs.get(names.TRIAL_SECONDS, 0.0))

    # --- the run ---

    def run(self) -> LoopOutcome:
        """Run trials (``search``); then, unless other workers' trials are still running,
        measure flagged figures again and re-rank the candidates (``settle``; also when there
        was nothing to evaluate: the same command run again does what is missing)."""
        self.search()
        if self.may_settle():
            self.settle()
        return self.outcome

    def search(self) -> LoopOutcome:
        """Run trials (see the class) until none is needed, then wait for trials left running
        by other processes (``wait_for_running``)."""
        start = self._started = time.perf_counter()
        self.done = self.finished()
        while True:
            if self.needed():
                self._optimize()
            ended = self.outcome.exhausted or self.outcome.all_stopped
            if self.outcome.interrupted or self.outcome.stopped_for_failures or ended:
                break
            live = self.wait_for_running()
            if live and self.workers is not None:
                self.stay_while_others_run()  # until they end, or a plan is needed again
                live = []
            self.outcome.running_elsewhere = live
            if live or self.outcome.interrupted or not self.needed():
                break  # else another worker's trial ended without a plan: evaluate more
        self.outcome.seconds = time.perf_counter() - start
        self._warn_ended()
        return self.outcome

    def may_settle(self) -> bool:
        """Whether this run chooses: not interrupted, not stopped by failures, and no other
        worker's trial is still running (the last worker to finish chooses)."""
        done = self.outcome
        return not (done.interrupted or done.stopped_for_failures or done.running_elsewhere)

    def settle(self) -> None:
        """Measure flagged figures again and re-rank the candidates (after ``search``)."""
        start = time.perf_counter()
        self.outcome.remeasured, self.outcome.still_noisy = remeasure_noisy(
            self.study, self.space, self.evaluator, self.kept
        )
        self._rerank()
        self.outcome.seconds += time.perf_counter() - start

    def _warn_ended(self) -> None:
        if self.outcome.exhausted:
            log.warning(
                "the sampler proposed only already-evaluated plans (or plans ruled out on "
                f"latency) {self.settings.max_consecutive_duplicates} times in a row: stopping "
                f"with {len(evaluated(self.study))} distinct plans (the space is small or the "
                "sampler has converged; widen the space or change sampler)"
            )
        if self.outcome.all_stopped:
            log.warning(
                f"{self.settings.max_stopped} trials stopped early (study.pruner) since the "
                f"last evaluated plan: stopping with {len(evaluated(self.study))} distinct plans "
                "(the accuracy budget may be out of reach of the space; widen it, loosen the "
                "budget, or study.pruner=none)"
            )

    def _rerank(self) -> None:
        """Re-rank the candidates within what is left of ``timeout``."""
        recipe = self.settings.rerank
        if recipe is None:
            return
        left = self.time_left()
        deadline = None if left is None else time.monotonic() + left
        try:
            with self.interrupts:
                reranker = Reranker(self.study, self.space, self.evaluator, self.objective, recipe)
                self.outcome.reranked = reranker.run(
                    self.settings.rerank_top, deadline, lambda: self.interrupts.requested
                )
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        self.outcome.interrupted |= self.interrupts.requested

    def _optimize(self) -> None:
        n_trials = self.settings.n_trials
        self.progress = bar(total=n_trials, desc="trials", leave=True)
        self.progress.update(min(len(evaluated(self.study)), n_trials))
        try:
            with self.interrupts, quiet():
                self.study.optimize(
                    self.evaluate,
                    n_trials=None,
                    timeout=self.time_left(),  # what is left: this may be a second call
                    catch=(TrialFailed,),
                    callbacks=[self.after_trial],
                    gc_after_trial=False,
                )
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            self.progress.close()


def run_trials(
    study,
    space: SearchSpace,
    evaluator: Evaluator,
    objective: Objective,
    settings: LoopSettings,
    hooks: LoopHooks = LoopHooks(),
) -> LoopOutcome:
    """Run the trial loop once (``TrialLoop``) and say what happened."""
    return TrialLoop(study, space, evaluator, objective, settings, hooks).run()


def adopt_dense_ms(study, evaluator: Evaluator) -> float | None:
    """Give ``evaluator`` the dense reference of ``latency_ms`` the study stored, if any (the
    first trial timed stores it), and return it."""
    stored = study.user_attrs.get(DENSE_MS_ATTR)
    if stored is not None:
        evaluator.dense_ms = float(stored)
    return stored


def set_constraint(trial: Trial, name: str, value: float) -> None:
    """A constraint on the trial (feasible when <= 0), also as a user attribute."""
    trial.set_constraint(name, value)
    trial.set_user_attr(f"{CONSTRAINT_PREFIX}{name}", float(value))


def reuse(trial: Trial, previous: FrozenTrial) -> list[float]:
    """Copy an earlier trial's measurements instead of evaluating the same plan again."""
    trial.set_user_attr(DUPLICATE_ATTR, previous.number)
    for name in (*names.METRICS, NOISY_ATTR):  # the same figures, flagged the same
        if name in previous.user_attrs and name != names.TRIAL_SECONDS:
            trial.set_user_attr(name, previous.user_attrs[name])
    trial.set_user_attr(names.TRIAL_SECONDS, 0.0)
    for name, value in previous.constraints.items():
        set_constraint(trial, name, value)
    values = list(previous.values)
    if any(math.isnan(v) for v in values):  # pragma: no cover - completed trials have values
        raise TrialFailed("the earlier trial has no values")
    return values


__all__ = [
    "LoopHooks",
    "LoopOutcome",
    "LoopSettings",
    "TrialFailed",
    "TrialLoop",
    "adopt_dense_ms",
    "reuse",
    "run_trials",
]
