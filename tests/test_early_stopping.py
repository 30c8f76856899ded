"""Early stopping of weak trials (``study.pruner``): a real ResNet-20 fine-tuned for real, real
Optuna pruners on a real SQLite storage, real ORT; the weak trial is planted (a learning rate
that wrecks its fine-tune)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from pruna_search.core.errors import ConfigError
from pruna_search.core.keys import PRUNED_ATTR, REFERENCE_ATTR, STOPPED_ATTR, STOPPED_TAG
from pruna_search.core.plan import Finetune
from pruna_search.search.early_stop import StopRules, misses_budget
from pruna_search.search.job import open_job_study, open_session
from pruna_search.search.objectives import make_objective
from pruna_search.search.records import trial_tags
from pruna_search.search.rows import trial_line
from pruna_search.search.runner import LoopSettings, TrialLoop, run_trials
from pruna_search.search.settings import JobSettings
from pruna_search.search.study import (
    PRUNERS,
    StudySettings,
    enqueue_references,
    evaluated,
    make_pruner,
    reference_plans,
)

PLANTED = "test.planted"  # a trial attribute: its plan's fine-tune is wrecked
STEPS = 30  # the trials' fine-tune
EVERY = 10  # steps between reports: at 0 (after recalibration), 10 and 20


def config(tmp_path, **study) -> dict:
    """A study that takes seconds: stage-tied space, 30-step trials, short timing."""
    return {
        "model": {"name": "resnet20", "pretrained": True},
        "data": {"name": "digits"},
        "target": {"name": "cpu", "warmup": 5, "min_runs": 20, "max_runs": 40, "noise_retries": 0},
        "space": {"ratios": [0.0, 0.5], "tie": "stage", "precision_tie": None},
        "objective": {"name": "fastest_within_drop", "max_accuracy_drop": 0.05},
        "sampler": {"name": "random", "seed": 0},
        "study": {
            "storage": f"sqlite:///{tmp_path}/study.db",
            "n_trials": 5,
            "reference_ratios": [],
            "latency_first": False,
            "report_every": EVERY,
            **study,
        },
        "finetune": {"trial_steps": STEPS, "final_steps": 10, "distill": 0.0},
    }


class Planted:
    """A search space whose plan, for a trial enqueued with ``PLANTED``, fine-tunes at a
    learning rate of 50: its accuracy collapses (to ~0.1 by step 10) and stays there."""

    def __init__(self, space):
        self.space = space
        self.info = space.info

    def __call__(self, trial):
        plan = self.space(trial)
        if trial.user_attrs.get(PLANTED):
            return plan.with_finetune(dataclasses.replace(plan.finetune, lr=50.0))
        return plan


@pytest.fixture(scope="module")
def session(tmp_path_factory, resnet20_trained):
    tmp_path = tmp_path_factory.mktemp("early")
    opened = open_session(JobSettings.parse(config(tmp_path)))
    yield opened
    opened.close()


def plans(session) -> dict[str, dict]:
    """Two good plans and the planted plan's params (another model than both: the stem keeps
    its 16 channels, 8 at fp32 in the first)."""
    references = reference_plans(session.space, [0.5])
    good = {k: references[k] for k in ("uniform 0.5 fp32", "uniform 0.5 + int8")}
    return {**good, "planted": {**references["uniform 0.5 fp32"], "prune/conv1": 0.0}}


def test_pruner_names_and_bad_names(tmp_path):
    kinds = {
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "median": optuna.pruners.MedianPruner,
        "none": optuna.pruners.NopPruner,
    }
    assert set(kinds) == set(PRUNERS)
    for name, kind in kinds.items():
        assert isinstance(make_pruner(name), kind)
    with pytest.raises(ConfigError, match=r"study.pruner: 'nope' is unknown .*successive_halving"):
        make_pruner("nope")
    base = {"model": {"name": "resnet20"}, "data": {"name": "digits"}}
    bad = {**base, "study": {"storage": "sqlite:///x.db", "pruner": "nope"}}
    with pytest.raises(ConfigError, match="study.pruner: 'nope' is unknown") as info:
        JobSettings.parse(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="study.report_every: 0 must be an integer >= 1"):
        StudySettings(report_every=0)
    assert StudySettings().pruner == "successive_halving"
    assert LoopSettings.of(StudySettings()).early_stopping
    assert not LoopSettings.of(StudySettings(pruner="none")).early_stopping


def test_reports_come_every_third_of_the_trial_fine_tune_unless_set() -> None:
    for steps, every in ((60, 20), (30, 10), (200, 66), (12, 10), (5, 10)):
        assert LoopSettings.of(StudySettings(), Finetune(steps=steps)).report_every == every
    assert LoopSettings.of(StudySettings(report_every=7), Finetune(steps=30)).report_every == 7


def test_the_budget_rule_judges_the_curve_with_a_shrinking_margin():
    floor = 0.94  # dense 0.99, max_accuracy_drop 0.05
    assert misses_budget([(0, 0.5)], 60, floor) is None  # not fine-tuned yet: never judged
    # within the margin (6 points at step 0, 1 at the end: 4.33 at step 20 of 60)
    assert misses_budget([(0, 0.5), (20, 0.90)], 60, floor) is None
    why = misses_budget([(0, 0.5), (20, 0.89)], 60, floor)
    assert why is not None and "5.0 points below the accuracy budget 0.9400" in why
    assert "more than the 4.3 the rest of a fine-tune is allowed to win back" in why
    # the margin shrinks: 2 points below is too early to say at step 20, not at step 50
    assert misses_budget([(0, 0.5), (20, 0.92)], 60, floor) is None
    assert misses_budget([(0, 0.5), (20, 0.93), (50, 0.92)], 60, floor) is not None


def test_which_rules_apply_and_to_which_trials(session):
    """The pruner judges studies whose one value is accuracy (best_within_latency); the budget
    rule needs fastest_within_drop on top-1 (accuracy is a budget there: the pruner is not
    asked); references, dense plans and pruner none get no callback."""
    drop = make_objective("fastest_within_drop", max_accuracy_drop=0.05)
    sized = make_objective("fastest_within_drop", max_accuracy_drop=0.05, include_size=True)
    pareto = make_objective("pareto")
    pruner = make_pruner("successive_halving")
    study = optuna.create_study(directions=drop.directions, pruner=pruner)
    rules = StopRules.of(study, drop, session.evaluator, EVERY)
    assert rules.pruner is None  # accuracy is a budget: the pruner would rank by it alone
    assert rules.floor == pytest.approx(session.evaluator.dense_proxy - 0.05)
    best = make_objective("best_within_latency", min_speedup=1.5)
    ranked = optuna.create_study(directions=best.directions, pruner=pruner)
    rules = StopRules.of(ranked, best, session.evaluator, EVERY)
    assert rules.pruner == "SuccessiveHalvingPruner" and rules.floor is None
    assert ranked.direction == optuna.study.StudyDirection.MAXIMIZE  # told the accuracy itself
    two = optuna.create_study(directions=sized.directions, pruner=pruner)
    assert StopRules.of(two, sized, session.evaluator, EVERY).pruner is None  # two values
    front = optuna.create_study(directions=pareto.directions, pruner=pruner)
    assert not StopRules.of(front, pareto, session.evaluator, EVERY).active
    loop = TrialLoop(
        study, session.space, session.evaluator, drop, LoopSettings(1, early_stopping=True)
    )
    params = plans(session)
    pruned = session.space(optuna.trial.FixedTrial(params["uniform 0.5 fp32"]))
    dense = session.space(
        optuna.trial.FixedTrial(reference_plans(session.space, [])["dense fp32"])
    )
    searched, reference = study.ask(), study.ask()
    reference.set_user_attr(REFERENCE_ATTR, "uniform 0.5 fp32")
    assert loop.reporter(searched, pruned) is not None
    assert loop.reporter(reference, pruned) is None and loop.reporter(searched, dense) is None
    off = TrialLoop(study, session.space, session.evaluator, drop, LoopSettings(1))
    assert off.reporter(searched, pruned) is None


def test_a_stopped_trial_is_neither_a_repeat_nor_a_failure(session):
    """It breaks a row of failures, leaves the row of repeats alone, and ``max_stopped`` of
    them without an evaluated plan end the loop; a plan ruled out on latency stays idle."""
    study = optuna.create_study()
    objective = make_objective("fastest_within_drop")
    settings = LoopSettings(10, early_stopping=True, max_stopped=2)
    loop = TrialLoop(study, session.space, session.evaluator, objective, settings)
    loop.failures, loop.idle = 3, 4
    attrs = {STOPPED_ATTR: "at fine-tune step 20 of 60: ...", "trial_seconds": 2.5}
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=attrs)
    )
    stopped = study.trials[-1]
    loop._count(stopped)
    assert (loop.failures, loop.idle, loop.stopped) == (0, 4, 1)
    assert not loop.should_stop(stopped)
    loop._count(stopped)
    assert loop.should_stop(stopped) and loop.outcome.all_stopped
    outcome = loop.outcome
    assert (outcome.stopped_early, outcome.stopped_seconds, outcome.pruned) == (2, 5.0, 0)
    attrs = {PRUNED_ATTR: "slower than trial 0"}
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=attrs)
    )
    loop._count(study.trials[-1])
    assert (loop.idle, loop.outcome.pruned, loop.outcome.stopped_early) == (5, 1, 2)


def test_a_pruner_stops_a_trial_planted_to_fail(session, tmp_path):
    """Successive halving (the default) compares a trial with the trials before it at the same
    step, where accuracy is what the study maximizes: two good trials complete, the planted one
    is stopped at step 10 of 30 (best_within_latency: no budget rule on accuracy)."""
    assert isinstance(open_job_study(session).pruner, optuna.pruners.SuccessiveHalvingPruner)
    objective = make_objective("best_within_latency", min_speedup=0.5)
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/planted.db",
        directions=objective.directions,
        pruner=make_pruner("successive_halving"),
    )
    references = reference_plans(session.space, [])
    enqueue_references(study, {k: references[k] for k in ("dense fp32", "uniform int8")})
    for label, params in plans(session).items():
        study.enqueue_trial(params, user_attrs={PLANTED: True} if label == "planted" else None)
    settings = dataclasses.replace(LoopSettings.of(session.settings.study), max_stopped=1)
    assert settings.early_stopping and settings.report_every == EVERY
    outcome = run_trials(study, Planted(session.space), session.evaluator, objective, settings)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 + ["PRUNED"]
    references, good, planted = trials[:2], trials[2:4], trials[4]
    assert all(REFERENCE_ATTR in t.user_attrs and not t.intermediate_values for t in references)
    # the good trials reported after recalibration and at steps 10 and 20 (not at the last)
    assert all(sorted(t.intermediate_values) == [0, EVERY, 2 * EVERY] for t in good)
    reason = planted.user_attrs[STOPPED_ATTR]
    assert reason.startswith(f"at fine-tune step {EVERY} of {STEPS}: accuracy ")
    assert "below the trials before it at that step (SuccessiveHalvingPruner)" in reason
    # it ran 10 of its 30 steps: no report after step 10, no export, no timing
    assert sorted(planted.intermediate_values) == [0, EVERY]
    assert "accuracy" not in planted.user_attrs and "speedup" not in planted.user_attrs
    assert planted.user_attrs["trial_seconds"] < min(t.user_attrs["trial_seconds"] for t in good)
    # accuracy is maximized: the pruner is told the proxy, which fell
    assert planted.intermediate_values[EVERY] < min(t.intermediate_values[EVERY] for t in good)
    # it does not count as evaluated; max_stopped=1 ended the run after it
    assert len(evaluated(study)) == 4 and outcome.evaluated == 4
    assert (outcome.stopped_early, outcome.pruned, outcome.all_stopped) == (1, 0, True)
    assert outcome.stopped_seconds == pytest.approx(planted.user_attrs["trial_seconds"])
    assert f"stopped early at fine-tune step {EVERY} of {STEPS}" in trial_line(planted, objective)
    assert trial_tags(planted)[STOPPED_TAG] == reason


def run_planted(session, tmp_path, pruner: str):
    """The planted trial alone, under ``pruner``, with a 5-point budget."""
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/{pruner}.db",
        directions=session.settings.objective.directions,
        pruner=make_pruner(pruner),
    )
    study.enqueue_trial(plans(session)["planted"], user_attrs={PLANTED: True})
    study_settings = dataclasses.replace(session.settings.study, pruner=pruner, n_trials=1)
    settings = dataclasses.replace(LoopSettings.of(study_settings), max_stopped=1)
    objective = make_objective("fastest_within_drop", max_accuracy_drop=0.05)
    outcome = run_trials(study, Planted(session.space), session.evaluator, objective, settings)
    return study.get_trials(), outcome


def test_the_budget_rule_stops_a_trial_that_cannot_reach_the_budget(session, tmp_path):
    """The median pruner waits for 5 finished trials: the planted trial, the first, is stopped
    by the budget rule alone, on its curve."""
    trials, outcome = run_planted(session, tmp_path, "median")
    assert [t.state.name for t in trials] == ["PRUNED"]
    reason = trials[0].user_attrs[STOPPED_ATTR]
    assert reason.startswith(f"at fine-tune step {EVERY} of {STEPS}: accuracy ")
    assert "points below the accuracy budget" in reason and "win back" in reason
    assert outcome.stopped_early == 1 and outcome.evaluated == 0


def test_pruner_none_never_stops_a_trial(session, tmp_path):
    trials, outcome = run_planted(session, tmp_path, "none")
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert STOPPED_ATTR not in trials[0].user_attrs and not trials[0].intermediate_values
    assert trials[0].user_attrs["accuracy"] < 0.5, "the planted fine-tune did fail"
    assert outcome.stopped_early == 0 and outcome.evaluated == 1
