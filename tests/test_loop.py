"""The trial loop's rules (``search.runner.TrialLoop``), each on its own: a real Optuna study and
a real search space, no fine-tune and no timing (the evaluator these rules consult only holds
the study's dense reference)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import optuna
import pytest
import torch

from pruna_search import analyze, models
from pruna_search.core.keys import DENSE_MS_ATTR, FAIL_ATTR, PRUNED_ATTR, REFERENCE_ATTR
from pruna_search.search.objectives import make_objective
from pruna_search.search.runner import LoopSettings, TrialFailed, TrialLoop
from pruna_search.space import SearchSpace, SpaceOptions, uniform_params

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJECTIVE = make_objective("fastest_within_drop", max_accuracy_drop=0.01)


@pytest.fixture(scope="module")
def space():
    model = models.build("resnet20", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    info = analyze(model, torch.zeros(2, 1, 32, 32))
    return SearchSpace(info, "cpu", SpaceOptions(ratios=(0.0, 0.5, 0.625), tie="stage"))


class NoTiming:
    """An evaluator for rules that must not time anything: it only holds the dense reference;
    measuring raises."""

    def __init__(self, dense_ms=None):
        self.dense_ms = dense_ms

    def measure(self, *args, **kwargs):
        raise AssertionError("this rule must not time anything")

    untuned = measure


def loop(space, study, objective=OBJECTIVE, evaluator=None, **settings) -> TrialLoop:
    settings = LoopSettings(**{"n_trials": 3, **settings})
    return TrialLoop(study, space, evaluator or NoTiming(), objective, settings)


def add_complete(study, params, speedup=2.0, drop=0.0, attrs=None):
    metrics = {"accuracy": 0.99 - drop, "accuracy_drop": drop, "latency_ms": 1 / speedup}
    metrics |= {"latency_ms_p10": 1 / speedup, "speedup": speedup}
    study.add_trial(
        optuna.trial.create_trial(
            params=dict(params),
            distributions={
                k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()
            },
            values=[metrics["latency_ms"]],
            user_attrs={**metrics, **(attrs or {})},
            constraints=OBJECTIVE.constraints(metrics),
        )
    )
    return study.trials[-1]


def test_a_plan_that_builds_an_evaluated_model_is_a_repeat(space):
    """Ratios that round to the same channel counts build one model: the second is a repeat of
    the first, found in the storage even when another worker evaluated it."""
    study = optuna.create_study()
    half = uniform_params(space, 0.5, 8)
    first = add_complete(study, half)
    rules = loop(space, study)
    assert rules.repeat_of(rules.model_key(half)).number == first.number
    dense = uniform_params(space, 0.0, 32)
    assert rules.repeat_of(rules.model_key(dense)) is None
    other = add_complete(study, dense)  # "another worker" finishes it
    assert rules.repeat_of(rules.model_key(dense)).number == other.number


def test_the_loop_stops_on_enough_plans_failures_repeats_and_ctrl_c(space):
    study = optuna.create_study()
    rules = loop(space, study, n_trials=2, max_consecutive_failures=2)
    trial = add_complete(study, uniform_params(space, 0.0, 32))
    assert not rules.should_stop(trial)  # 1 of 2 plans
    trial = add_complete(study, uniform_params(space, 0.5, 8))
    assert rules.should_stop(trial)  # 2 of 2

    rules = loop(space, study, n_trials=10, max_consecutive_failures=2)
    rules.failures = 2
    failed = SimpleNamespace(user_attrs={FAIL_ATTR: "export failed"})
    assert rules.should_stop(failed) and rules.outcome.stopped_for_failures == "export failed"

    rules = loop(space, study, n_trials=10, max_consecutive_duplicates=3)
    rules.idle = 2
    assert not rules.should_stop(trial)
    rules.idle = 3
    assert rules.should_stop(trial) and rules.outcome.exhausted

    rules = loop(space, study, n_trials=10)
    rules.interrupts.requested = True
    assert rules.should_stop(trial) and rules.outcome.interrupted


class FailingSlowly(TrialLoop):
    """Every plan takes 50 ms and fails: the study never has enough plans."""

    calls = 0

    def evaluate(self, trial):
        FailingSlowly.calls += 1
        if FailingSlowly.calls > 40:
            raise RuntimeError("study.timeout did not end the search")
        time.sleep(0.05)
        trial.set_user_attr(FAIL_ATTR, "planted")
        raise TrialFailed("planted")


def test_the_timeout_ends_the_search_with_plans_still_needed(space):
    """``study.timeout`` counts from the first trial across every call to Optuna's optimize (the
    loop calls it again while plans are needed): a first version gave each call the whole
    timeout, so an overnight run with a timeout never ended."""
    settings = LoopSettings(n_trials=10, timeout=0.5, max_consecutive_failures=1000)
    rules = FailingSlowly(optuna.create_study(), space, NoTiming(), OBJECTIVE, settings)
    assert rules.needed()
    start = time.perf_counter()
    rules.search()
    assert time.perf_counter() - start < 1.5
    assert 1 <= FailingSlowly.calls <= 40
    assert rules.time_left() == 0 and not rules.needed()


def test_the_dense_reference_is_stored_once_and_adopted_by_later_runs(space):
    study = optuna.create_study()
    evaluator = NoTiming()
    rules = loop(space, study, evaluator=evaluator)
    rules.record_reference()
    assert DENSE_MS_ATTR not in study.user_attrs  # nothing timed yet
    evaluator.dense_ms = 0.8
    rules.record_reference()
    evaluator.dense_ms = 0.9  # a later window's figure does not replace the study's
    rules.record_reference()
    assert study.user_attrs[DENSE_MS_ATTR] == 0.8
    later = NoTiming()
    loop(space, study, evaluator=later)
    assert later.dense_ms == 0.8


def test_screening_needs_latency_first_a_searched_plan_and_something_to_compare_with(space):
    """Each case returns before timing anything (the evaluator raises if asked to)."""
    study = optuna.create_study()
    trial = study.ask()
    params = uniform_params(space, 0.5, 8)
    plan = space(optuna.trial.FixedTrial(dict(params)))
    assert loop(space, study).screen_out(trial, plan) is None  # latency_first off
    on = loop(space, study, latency_first=True)
    assert on.screen_out(trial, plan) is None  # no feasible trial to compare with yet
    pareto = make_objective("pareto")
    assert loop(space, study, pareto, latency_first=True).screen_out(trial, plan) is None
    reference = study.ask()
    reference.set_user_attr(REFERENCE_ATTR, "uniform 0.5 int8")
    add_complete(study, uniform_params(space, 0.0, 32), speedup=3.0)
    on.done = on.finished()
    assert on.screen_out(reference, plan) is None  # references are evaluated in full
    with pytest.raises(AssertionError, match="must not time"):
        on.screen_out(trial, plan)  # a searched plan, a feasible trial: timed


def test_a_model_ruled_out_on_latency_is_not_timed_again(space):
    """A trial that builds the model an earlier trial was ruled out on latency for is judged
    on that trial's figures (the evaluator raises if asked to time)."""
    study = optuna.create_study()
    add_complete(study, uniform_params(space, 0.0, 32), speedup=3.0)
    params = uniform_params(space, 0.5, 8)
    figures = {"latency_ms": 1 / 1.5, "latency_ms_p10": 0.6, "latency_ms_p50": 0.61}
    figures |= {"latency_ms_p90": 0.62, "speedup": 1.5}
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params=dict(params),
            distributions={
                k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()
            },
            user_attrs={PRUNED_ATTR: "slower than trial 0", **figures},
        )
    )
    on = loop(space, study, latency_first=True)
    on.done = on.finished()
    trial = study.enqueue_trial(dict(params)) or study.ask()
    reason = on.screen_out(trial, space(trial))
    assert reason is not None and reason.endswith("(timed as trial 1)")
    assert trial.user_attrs["speedup"] == 1.5
