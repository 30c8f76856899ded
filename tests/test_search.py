"""The study end to end on a real (cached) ResNet-20, real SQLite storage, real ORT."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from pruna_search.core.errors import ConfigError
from pruna_search.core.keys import (
    DENSE_MS_ATTR,
    DUPLICATE_ATTR,
    FAIL_ATTR,
    IDENTITY_ATTR,
    NOISY_ATTR,
    PRUNED_ATTR,
    REFERENCE_ATTR,
)
from pruna_search.core.plan import Plan
from pruna_search.core.precision import Precision
from pruna_search.measure import latency, onnx_accuracy
from pruna_search.report.front import write_csv
from pruna_search.search.job import export_from_study, open_session, run_job
from pruna_search.search.rows import is_feasible, remeasured, row_of, study_rows
from pruna_search.search.runner import LoopHooks, LoopSettings, run_trials
from pruna_search.search.settings import JobSettings
from pruna_search.search.study import FixedTrial, enqueue_references, reference_plans

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def tiny(tmp_path, **study) -> dict:
    """A study that takes seconds: stage-tied space, 5-step trials, short timing."""
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
            "reference_ratios": [0.5],
            # plans ruled out on latency before fine-tuning depend on the host's noise; the
            # resume counts below must not (latency_first has its own test)
            "latency_first": False,
            **study,
        },
        "finetune": {"trial_steps": 5, "final_steps": 10, "distill": 0.0},
    }


def storage_trials(tmp_path, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/study.db")
    return study.get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, resnet20_trained):
    tmp_path = tmp_path_factory.mktemp("study")
    result = run_job(tiny(tmp_path), tmp_path / "out")
    return tmp_path, result


def test_outputs_and_choice(first_run, digits):
    tmp_path, result = first_run
    out = result.output_dir
    assert result.status == "ok"
    assert {"best.onnx", "plan.yaml", "pareto.csv", "report.md", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    front = list(csv.DictReader((out / "pareto.csv").open()))
    chosen = [r for r in front if r["chosen"] == "True"]
    assert len(chosen) == 1, "the chosen trial is on the front"
    assert chosen[0]["feasible"] == "True"
    assert float(chosen[0]["accuracy_drop"]) <= 0.05
    # no front row dominates the chosen one in (accuracy, latency)
    acc, ms = float(chosen[0]["accuracy"]), float(chosen[0]["latency_ms"])
    assert not any(float(r["accuracy"]) >= acc and float(r["latency_ms"]) < ms for r in front)
    summary = json.loads((out / "summary.json").read_text())
    # every trial's latency_ms is the study's one dense reference over its same-window speedup
    dense_ms = summary["dense_latency_ms"]
    study = optuna.load_study(
        study_name=result.study_name, storage=f"sqlite:///{tmp_path}/study.db"
    )
    assert dense_ms > 0 and study.user_attrs[DENSE_MS_ATTR] == dense_ms
    for r in front:
        assert float(r["latency_ms"]) * float(r["speedup"]) == pytest.approx(dense_ms, rel=1e-4)
    assert summary["evaluated"] == 5 and summary["chosen_trial"] == int(chosen[0]["number"])
    x, y = digits.val_arrays()
    assert onnx_accuracy(out / "best.onnx", x, y) == pytest.approx(summary["accuracy"])
    report = (out / "report.md").read_text()
    assert f"Chosen: trial {summary['chosen_trial']}" in report
    assert "uniform int8" in report and "Pareto front" in report
    # re-ranked at the final fine-tune (study.rerank_top): the shipped model's accuracy is the
    # one the choice was made on, and the report shows both accuracies
    assert summary["chosen_accuracy"] == pytest.approx(summary["accuracy"])
    assert summary["reranked"] >= 1 and summary["reranked_now"] == summary["reranked"]
    assert "## Re-ranked at a higher fidelity" in report and "(10 steps)" in report
    assert f"Trial {summary['chosen_trial']} ships, chosen on" in report
    assert {"trial_accuracy", "rerank_steps"} <= set(front[0])


def test_exported_plan_is_the_replayed_plan(first_run, resnet20_trained):
    tmp_path, result = first_run
    trials = storage_trials(tmp_path, result.study_name)
    best = trials[result.summary["chosen_trial"]]
    settings = JobSettings.parse(tiny(tmp_path))
    session = open_session(settings)
    try:
        replayed = session.space(FixedTrial(best.params)).with_finetune(settings.final_finetune)
    finally:
        session.close()
    exported = Plan.load(result.output_dir / "plan.yaml")
    assert exported == replayed
    assert exported.finetune.steps == 10


def test_references_first_and_resume_adds_only_missing(first_run):
    tmp_path, result = first_run
    before = storage_trials(tmp_path, result.study_name)
    labels = [t.user_attrs.get(REFERENCE_ATTR) for t in before[:4]]
    assert labels == ["dense fp32", "uniform int8", "uniform 0.5 + int8", "uniform 0.5 fp32"]
    # a resumed run scales latency_ms by the dense reference the study stored, not its own
    study = optuna.load_study(
        study_name=result.study_name, storage=f"sqlite:///{tmp_path}/study.db"
    )
    study.set_user_attr(DENSE_MS_ATTR, 1.2345)
    again = run_job(tiny(tmp_path, n_trials=7), tmp_path / "out2")
    after = storage_trials(tmp_path, result.study_name)
    for trial in after[len(before) :]:
        if trial.state.name == "COMPLETE" and DUPLICATE_ATTR not in trial.user_attrs:
            attrs = trial.user_attrs
            assert attrs["latency_ms"] * attrs["speedup"] == pytest.approx(1.2345)
    assert again.summary["dense_latency_ms"] == 1.2345
    evaluated = [
        t for t in after if t.state.name == "COMPLETE" and DUPLICATE_ATTR not in t.user_attrs
    ]
    assert len(evaluated) == 7, "n_trials counts distinct evaluated plans"
    assert again.summary["evaluated"] == 7
    assert again.summary["evaluated_now"] == 2
    for old, new in zip(before, after[: len(before)], strict=True):  # never redone
        assert (old.number, old.values, old.params) == (new.number, new.values, new.params)
    # a third run with the same n_trials evaluates nothing
    third = run_job(tiny(tmp_path, n_trials=7), tmp_path / "out3")
    assert third.summary["evaluated_now"] == 0
    assert len(storage_trials(tmp_path, result.study_name)) == len(after)


def test_resuming_with_other_settings_is_refused(first_run):
    tmp_path, result = first_run
    config = tiny(tmp_path, name=result.study_name)
    config["finetune"]["trial_steps"] = 6
    with pytest.raises(
        ConfigError,
        match=r"study.name: .* was created with other settings \(finetune.trial_steps: 5 then",
    ):
        run_job(config, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_study_made_by_an_older_version_is_refused(first_run):
    tmp_path, result = first_run
    study = optuna.load_study(
        study_name=result.study_name, storage=f"sqlite:///{tmp_path}/study.db"
    )
    kept = study.user_attrs[IDENTITY_ATTR]
    older = {k: v for k, v in json.loads(kept).items() if k != "measured_by"}
    study.set_user_attr(IDENTITY_ATTR, json.dumps(older, sort_keys=True))
    try:
        with pytest.raises(ConfigError, match=r"study.name: .* was made by an older pruna_search"):
            run_job(tiny(tmp_path, name=result.study_name), tmp_path / "older")
    finally:
        study.set_user_attr(IDENTITY_ATTR, kept)
    assert not (tmp_path / "older").exists()


def test_export_cli_path_replays_a_trial(first_run, tmp_path):
    study_dir, result = first_run
    evaluation = export_from_study(
        f"sqlite:///{study_dir}/study.db", result.study_name, tmp_path, trial=1
    )
    plan = Plan.load(tmp_path / "plan.yaml")
    assert plan.layers_at(Precision.INT8), "trial 1 is the uniform int8 reference"
    assert plan.is_dense
    assert evaluation.metrics["speedup"] > 1.0
    with pytest.raises(ConfigError, match="trial: 999 is not a completed trial"):
        export_from_study(
            f"sqlite:///{study_dir}/study.db", result.study_name, tmp_path, trial=999
        )
    with pytest.raises(ConfigError, match="no study 'nope'"):
        export_from_study(f"sqlite:///{study_dir}/study.db", "nope", tmp_path)


class BreaksOnInt8Stage1:
    """A search space whose plans put int4 on conv layers of stage 1 when its bits choice is
    int8 — a plan the CPU target cannot run, so applying it fails for real (PlanError)."""

    def __init__(self, space):
        self.space = space
        self.info = space.info

    def __call__(self, trial):
        plan = self.space(trial)
        if trial.params.get("bits/layer1") == "int8":
            layers = [n for n, p in plan.precision.items() if n.startswith("layer1")]
            precision = {**plan.precision, **{n: Precision.INT4 for n in layers}}
            return Plan(plan.prune, precision, plan.finetune, plan.round_to)
        return plan


def test_failing_plan_is_a_fail_trial_and_duplicates_are_reused(tmp_path, resnet20_trained):
    settings = JobSettings.parse(tiny(tmp_path))
    session = open_session(settings)
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp_path}/fail.db", directions=settings.objective.directions
        )
        references = reference_plans(session.space, [0.5])
        enqueue_references(study, {k: references[k] for k in ("dense fp32", "uniform int8")})
        # the dense reference again: same params, must not be evaluated twice
        study.enqueue_trial(references["dense fp32"])
        study.enqueue_trial(references["uniform 0.5 fp32"])
        outcome = run_trials(
            study,
            BreaksOnInt8Stage1(session.space),
            session.evaluator,
            settings.objective,
            LoopSettings(n_trials=2),
        )
    finally:
        session.close()
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert "int4" in trials[1].user_attrs[FAIL_ATTR]
    assert trials[2].user_attrs[DUPLICATE_ATTR] == 0
    assert trials[2].values == trials[0].values
    assert (outcome.evaluated, outcome.duplicates, outcome.failed) == (2, 1, 1)


def test_params_that_build_the_same_model_are_evaluated_once(tmp_path, resnet20_trained):
    """With round_to {fp32: 8, int8: 16}, pruning half of stage 1's 16 channels keeps all 16
    when they run int8: that plan is the uniform int8 model, so it is reused, not re-evaluated
    (at fp32 it keeps 8 channels: another model, evaluated)."""
    settings = JobSettings.parse(tiny(tmp_path))
    assert settings.space.round_to == {"fp32": 8, "int8": 16}
    session = open_session(settings)
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp_path}/same.db", directions=settings.objective.directions
        )
        references = reference_plans(session.space, [0.5])
        int8 = dict(references["uniform int8"])
        study.enqueue_trial(int8)
        study.enqueue_trial({**int8, "prune/layer1": 0.5})  # the same model
        fp32 = {k: "fp32" for k in int8 if k.startswith("bits/")}
        study.enqueue_trial({**int8, "prune/layer1": 0.5, **fp32})  # 8 channels: another model
        outcome = run_trials(
            study, session.space, session.evaluator, settings.objective, LoopSettings(n_trials=2)
        )
    finally:
        session.close()
    trials = study.get_trials()
    assert trials[1].params != trials[0].params
    assert trials[1].user_attrs[DUPLICATE_ATTR] == 0 and trials[1].values == trials[0].values
    assert DUPLICATE_ATTR not in trials[2].user_attrs
    assert (outcome.evaluated, outcome.duplicates) == (2, 1)


def _slow_phase(*args, **kwargs) -> str:
    """In place of ``latency.ratio_risk``: every window's speedup is at risk."""
    return "the speedup moved 20.0 % between the halves of the window (a slow phase planted here)"


@pytest.mark.parametrize("slow_host", [False, True])
def test_latency_first_skips_the_fine_tune_of_a_plan_that_cannot_win(
    tmp_path, resnet20_trained, monkeypatch, slow_host
):
    """A plan slower than a feasible trial is not fine-tuned, unless its figure is flagged (its
    speedup at risk in every window): then it is fine-tuned and measured again."""
    config = tiny(tmp_path)
    if slow_host:
        # every window flagged (and not cached: the other case's figures would be hits)
        config["target"] = dict(config["target"], cache=False)
        monkeypatch.setattr(latency, "ratio_risk", _slow_phase)
    settings = JobSettings.parse(config)
    session = open_session(settings)
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp_path}/lat.db", directions=settings.objective.directions
        )
        references = reference_plans(session.space, [0.5])
        # uniform int8 is lossless (0 points, within any budget) and ~1.5x faster than dense
        enqueue_references(study, {"uniform int8": references["uniform int8"]})
        slow = dict(references["dense fp32"])  # fp32 with only the stem pruned: ~dense speed
        slow["prune/conv1"] = 0.5
        study.enqueue_trial(slow)
        outcome = run_trials(
            study,
            session.space,
            session.evaluator,
            settings.objective,
            # stop at the first plan ruled out
            LoopSettings(n_trials=2, latency_first=True, max_consecutive_duplicates=1),
        )
    finally:
        session.close()
    trials = study.get_trials()
    if slow_host:
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        assert "slow phase" in trials[1].user_attrs[NOISY_ATTR]
        assert "accuracy" in trials[1].user_attrs, "fine-tuned and scored"
        # the front says which figures were flagged (pareto.csv's latency_noisy)
        assert "slow phase" in row_of(trials[1])["latency_noisy"]
        return
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    pruned = trials[1]
    assert "slower than trial 0" in pruned.user_attrs[PRUNED_ATTR]
    assert pruned.user_attrs["latency_ms"] > trials[0].user_attrs["latency_ms"]
    assert "accuracy" not in pruned.user_attrs, "not fine-tuned, not scored"
    assert outcome.pruned == 1 and outcome.evaluated == 1


@pytest.fixture
def slow_phase(tmp_path, resnet20_trained, monkeypatch):
    """A session whose every latency window is flagged (its speedup at risk: planted) until the
    test ends the slow phase (``end()``), and a study with two uniform references enqueued.
    Nothing is cached; the risk checks are off after ``end()`` (no floors, a loose window),
    so the host's own slow phases do not decide these tests."""
    config = tiny(tmp_path, n_trials=2)
    config["target"] = dict(
        config["target"], cache=False, floor_max_age_h=None, max_baseline_drift=None
    )
    monkeypatch.setattr(latency, "ratio_risk", _slow_phase)
    settings = JobSettings.parse(config)
    session = open_session(settings)
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/slow.db", directions=settings.objective.directions
    )
    references = reference_plans(session.space, [0.5])
    enqueue_references(study, {k: references[k] for k in ("uniform int8", "uniform 0.5 fp32")})

    def run(on_trial=None):
        return run_trials(
            study,
            session.space,
            session.evaluator,
            settings.objective,
            LoopSettings(n_trials=2),
            LoopHooks(on_trial),
        )

    def end():
        monkeypatch.setattr(latency, "ratio_risk", lambda window, *args, **kwargs: "")

    yield SimpleNamespace(settings=settings, study=study, run=run, end=end)
    session.close()


def test_flagged_latency_is_measured_again_after_the_run(slow_phase, tmp_path):
    """A slow phase flags every window of the run; it ends before the run does: the flagged
    trials are timed again after the loop, and their steady figures replace the flagged ones
    in the rows the front and the choice are made from (and in pareto.csv)."""
    seen = []

    def slow_phase_ends_after_the_last_trial(trial):
        seen.append(trial.number)
        if len(seen) == 2:
            slow_phase.end()

    outcome = slow_phase.run(on_trial=slow_phase_ends_after_the_last_trial)
    study = slow_phase.study
    trials = study.get_trials()
    assert all("slow phase" in t.user_attrs[NOISY_ATTR] for t in trials), "flagged in the run"
    assert (outcome.remeasured, outcome.still_noisy) == (2, 0)
    again = remeasured(study)
    rows = {r["number"]: r for r in study_rows(study, slow_phase.settings.objective)}
    for trial in trials:
        figures, row = again[trial.number], rows[trial.number]
        assert "slow phase" in figures["was"]
        assert figures["was_speedup"] == trial.user_attrs["speedup"]
        assert row["speedup"] == figures["speedup"] and row["latency_ms"] == figures["latency_ms"]
        assert (
            row["latency_noisy"] == ""
            and "measured again after the run" in (row["latency_remeasured"])
        )
        # judged again on the steady figure: the budget is on accuracy, so unchanged
        assert row["feasible"] == is_feasible(trial)
    write_csv(list(rows.values()), tmp_path / "pareto.csv")
    read = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert all(r["latency_remeasured"].startswith("measured again") for r in read)


def test_flagged_figures_of_an_earlier_run_are_measured_again_by_the_next(slow_phase):
    """A slow phase lasts through a whole run, its re-measurement included: the figures stay
    flagged. The same study run again once it has ended (nothing left to evaluate) rebuilds
    those plans without fine-tune and measures them again, steady."""
    study, objective = slow_phase.study, slow_phase.settings.objective
    first = slow_phase.run()
    assert (first.evaluated, first.remeasured, first.still_noisy) == (2, 0, 2)
    assert remeasured(study) == {}
    assert all("slow phase" in r["latency_noisy"] for r in study_rows(study, objective))
    slow_phase.end()
    again = slow_phase.run()
    assert (again.evaluated, again.remeasured, again.still_noisy) == (0, 2, 0)
    assert len(study.trials) == 2, "no trial evaluated again"
    rows = study_rows(study, objective)
    assert all(r["latency_noisy"] == "" and r["latency_remeasured"] for r in rows)
    assert {r["number"]: r["speedup"] for r in rows} == {
        n: figures["speedup"] for n, figures in remeasured(study).items()
    }


def test_unreachable_latency_budget_is_refused_before_the_study(tmp_path, resnet20_trained):
    config = tiny(tmp_path)
    config["objective"] = {"name": "best_within_latency", "max_latency_ms": 0.001}
    with pytest.raises(ConfigError, match="objective.max_latency_ms: 0.001 ms cannot be met"):
        run_job(config, tmp_path / "out")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/study.db")
    assert storage.get_all_studies() == []
    assert np.isfinite(0.0)


class HangsOnSecondMeasurement:
    """The real local runner, except that the second model it is given to time is a real ONNX
    model that hangs ONNX Runtime (what a broken candidate does to the search)."""

    def __init__(self, runner, hang):
        self.runner, self.hang, self.calls = runner, hang, 0
        self.name = runner.name

    def identity(self):
        return self.runner.identity()

    def fingerprint(self):
        return self.runner.fingerprint()

    def measure(self, models, x):
        self.calls += 1
        if self.calls == 2:
            models = [models[0], self.hang]
        return self.runner.measure(models, x)


def test_hanging_model_is_a_fail_trial_and_the_study_finishes(tmp_path, resnet20_trained):
    import dataclasses

    from onnx_models import hanging_model

    settings = JobSettings.parse(tiny(tmp_path))
    session = open_session(settings)
    try:
        evaluator = session.evaluator
        evaluator.target = dataclasses.replace(evaluator.target, timeout_s=3, cache=False)
        evaluator.runner.target = evaluator.target
        evaluator.runner = HangsOnSecondMeasurement(
            evaluator.runner, hanging_model(tmp_path / "hang.onnx")
        )
        study = optuna.create_study(
            storage=f"sqlite:///{tmp_path}/hang.db", directions=settings.objective.directions
        )
        references = reference_plans(session.space, [0.5])
        enqueue_references(study, references)
        outcome = run_trials(
            study, session.space, evaluator, settings.objective, LoopSettings(n_trials=3)
        )
    finally:
        session.close()
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert "did not finish within 3 s" in trials[1].user_attrs[FAIL_ATTR]
    assert (outcome.evaluated, outcome.failed) == (3, 1)
    latency = trials[2].user_attrs["pruna.latency"]
    assert (
        latency["runner"] == "local" and latency["runs"] >= 20 and "cpu" in latency["fingerprint"]
    )
