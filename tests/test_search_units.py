"""Objectives, fronts, settings and study helpers: no training, real Optuna storage."""

from __future__ import annotations

import csv

import pytest

from pruna_search.core.errors import ConfigError
from pruna_search.report.front import hypervolume, pareto_front, write_csv
from pruna_search.search.objectives import DROP_BUDGET, make_objective
from pruna_search.search.settings import JobSettings
from pruna_search.search.study import StudySettings, make_sampler, open_storage, study_name


def row(number, acc, ms, speedup, drop, feasible=True):
    return {
        "number": number,
        "accuracy": acc,
        "latency_ms": ms,
        "latency_ms_p10": ms,
        "speedup": speedup,
        "accuracy_drop": drop,
        "size_mb": 1.0,
        "feasible": feasible,
        "reference": "",
        "plan": "p",
    }


def test_objective_constraints_and_choice():
    objective = make_objective("fastest_within_drop", max_accuracy_drop=0.01)
    # a budgeted objective is one value: the sampler's good trials are the fast feasible ones
    assert objective.value_names == ("latency_ms",) and objective.directions == ["minimize"]
    assert objective.front_names == ("accuracy", "latency_ms")
    assert objective.constraints({"accuracy_drop": 0.02}) == pytest.approx({DROP_BUDGET: 0.01})
    rows = [
        row(0, 0.99, 1.0, 1.0, 0.0),
        row(1, 0.985, 0.5, 2.0, 0.005),
        row(2, 0.9, 0.3, 3, 0.09, False),
    ]
    assert objective.choose(rows)["number"] == 1
    latency = make_objective("best_within_latency", max_accuracy_drop=None, min_speedup=1.5)
    assert latency.directions == ["maximize"]
    assert latency.constraints({"speedup": 2.0}) == {"speedup_budget": -0.5}
    assert latency.choose(rows)["number"] == 0  # the most accurate feasible
    pareto = make_objective("pareto", select_max_drop=0.001)
    assert pareto.choose(rows)["number"] == 0
    assert make_objective("pareto", include_size=True).directions == [
        "maximize",
        "minimize",
        "minimize",
    ]
    assert objective.choose([row(2, 0.9, 0.3, 3, 0.09, False)]) is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "fastest"}, "objective: 'fastest'"),
        ({"max_accuracy_drop": -0.1}, "objective.max_accuracy_drop"),
        ({"max_accuracy_drop": 5}, "objective.max_accuracy_drop"),
        ({"name": "best_within_latency", "max_accuracy_drop": None}, "exactly one"),
        ({"name": "best_within_latency", "max_latency_ms": 0}, "objective.max_latency_ms"),
    ],
)
def test_objective_rejects_bad_budgets(kwargs, field):
    with pytest.raises(ConfigError, match=field.replace("(", r"\(")):
        make_objective(**kwargs)


def test_pareto_front_and_hypervolume(tmp_path):
    rows = [
        row(0, 0.99, 1.0, 1.0, 0.0),
        row(1, 0.98, 0.5, 2.0, 0.01),
        row(2, 0.97, 0.6, 1.7, 0.02),  # dominated by 1
        row(3, 0.95, 0.4, 2.5, 0.04),
    ]
    front = pareto_front(rows, ("accuracy", "latency_ms"))
    assert [r["number"] for r in front] == [3, 1, 0]
    # (drop, 1/speedup): (0.01, 0.5) and (0.04, 0.4) against the reference point (0.05, 1)
    assert hypervolume(rows) == pytest.approx(0.04 * 0.5 + 0.01 * 0.1)
    assert hypervolume([row(0, 0.99, 1.0, 1.0, 0.0)]) == 0.0
    path = write_csv(front, tmp_path / "front.csv")
    parsed = list(csv.DictReader(path.open()))
    assert [int(r["number"]) for r in parsed] == [3, 1, 0]
    assert float(parsed[1]["speedup"]) == 2.0


BASE = {
    "model": {"name": "resnet20"},
    "data": {"name": "digits"},
    "study": {"storage": "sqlite:///x.db"},
}


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"model": {"name": "resnet20", "widht": 1}},
            "model.widht: unknown option; did you mean 'width'",
        ),
        ({"study": {"n_trials": 0}}, "study.n_trials: 0 must be >= 1"),
        ({"study": {"n_trials": -3}}, "study.n_trials"),
        ({"study": {"heartbeat_interval": 60, "grace_period": 30}}, "study.grace_period"),
        ({"study": {"storage": "nowhere"}}, "study.storage: 'nowhere' is not a storage URL"),
        ({"space": {"ratios": [0.0, 1.5]}}, "space.ratios: 1.5 is out of range"),
        ({"seed": "abc"}, "seed: 'abc' must be an integer"),
        ({"finetune": {"trial_steps": -1}}, "finetune.trial_steps"),
        ({"target": {"name": "cpu", "repeats": 0}}, "target.repeats"),
        ({"target": {"name": "tpu"}}, "unknown target 'tpu'"),
        ({"objective": {"name": "pareto", "budget": 1}}, "objective.budget: unknown option"),
        ({"samplr": {}}, "samplr: unknown config section; did you mean 'sampler'"),
    ],
)
def test_settings_reject_bad_input(patch, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(")) as info:
        JobSettings.parse({**BASE, **patch})
    assert "\n" not in str(info.value)


def test_settings_identity_and_name():
    settings = JobSettings.parse(BASE)
    identity = settings.identity("abc")
    assert identity["space"]["ratios"] == [0.0, 0.25, 0.5, 0.625, 0.75]
    other = JobSettings.parse({**BASE, "finetune": {"trial_steps": 7}}).identity("abc")
    name = study_name(["resnet20", "digits"], identity)
    assert name.startswith("resnet20-digits-")
    assert study_name(["resnet20", "digits"], other) != name


def test_sampler_and_storage_errors(tmp_path):
    with pytest.raises(ConfigError, match="sampler: 'tpee' is unknown; did you mean 'tpe'"):
        make_sampler("tpee", 0)
    with pytest.raises(ConfigError, match="sampler.random: bad option"):
        make_sampler("random", 0, {"population_size": 3})
    for name in ("tpe", "nsga2", "random", "gp"):
        assert make_sampler(name, 1) is not None
    missing = StudySettings(storage=f"sqlite:///{tmp_path}/no/such/dir.db")
    with pytest.raises(ConfigError, match="does not exist"):
        open_storage(missing)
    with pytest.raises(ConfigError, match="study.storage: cannot open 'postgresql://"):
        open_storage(StudySettings(storage="postgresql://nobody@127.0.0.1:1/none"))
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("noisy", [False, True])
def test_final_table_says_when_its_latency_is_noisy(noisy):
    """The chosen model's figure is the headline: a flagged one says so under the table."""
    from types import SimpleNamespace

    from pruna_search.core import names
    from pruna_search.measure import Latency, LatencyComparison
    from pruna_search.report.summary import comparison_table

    reason = "dense p10 1.126 ms stayed 41.3 % above the 0.797 ms measured before, in 3 windows"
    latency = LatencyComparison(
        candidate=Latency(p10=0.734, p50=0.74, p90=0.8, runs=200),
        baseline=Latency(p10=1.126, p50=1.13, p90=1.2, runs=200),
        noisy=noisy,
        noise=reason if noisy else "",
    )
    metrics = {
        names.ACCURACY: 0.9861,
        names.ACCURACY_DROP: 0.0,
        names.LATENCY_P10: 0.734,
        names.SPEEDUP: latency.speedup,
        names.SIZE_MB: 0.232,
        names.COMPRESSION: 4.72,
        names.MACS: 31.08e6,
    }
    baseline = {names.ACCURACY: 0.9861, names.SIZE_MB: 1.094, names.MACS: 40.52e6}
    table = comparison_table(baseline, SimpleNamespace(metrics=metrics, latency=latency))
    assert "1.53x faster" in table
    assert ("latency flagged noisy: " + reason in table) is noisy


def test_front_marks_noisy_latency(tmp_path):
    """pareto.csv carries why a figure was flagged, and report.md's front marks its speedup."""
    from pruna_search.core import names
    from pruna_search.report.summary import _row_cells

    reason = "dense p10 0.835 ms stayed 4.7 % above the 0.797 ms measured before, in 3 windows"
    base = {
        names.ACCURACY: 0.98,
        names.ACCURACY_DROP: 0.005,
        names.LATENCY: 0.3,
        names.LATENCY_P10: 0.3,
        names.SPEEDUP: 2.4,
        names.SIZE_MB: 0.2,
        "feasible": True,
        "plan": "dense | int8 22/22",
    }
    rows = [dict(base, number=1, latency_noisy=reason), dict(base, number=2, latency_noisy="")]
    write_csv(rows, tmp_path / "pareto.csv")
    read = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert [r["latency_noisy"] for r in read] == [reason, ""]
    assert _row_cells(rows[0])[7] == "2.40x (noisy)" and _row_cells(rows[1])[7] == "2.40x"


def test_latency_first_compares_same_window_speedups_not_milliseconds():
    """A window in which the whole host ran 6 % slower moves a plan's ms and its dense model's
    alike: judged by speedup it is not ruled out; a plan with a lower speedup is."""
    objective = make_objective("fastest_within_drop", max_accuracy_drop=0.01)
    fastest = {"number": 3, "latency_ms": 0.241, "speedup": 2.97}
    # 6 % more ms in its window (latency_ms_p10 0.256), the same ratio to dense
    slow_window = {"latency_ms": 0.242, "latency_ms_p10": 0.256, "speedup": 2.96}
    assert objective.rules_out(slow_window, fastest) is None
    slower_plan = {"latency_ms": 0.256, "latency_ms_p10": 0.245, "speedup": 2.80}
    reason = objective.rules_out(slower_plan, fastest)
    assert reason is not None and "2.80x" in reason and "trial 3" in reason
    # the trial shipped is the fastest by speedup
    rows = [row(0, 0.99, 0.256, 2.96, 0.005), row(1, 0.99, 0.250, 2.90, 0.005)]
    assert objective.choose(rows)["number"] == 0


def test_figures_measured_again_replace_flagged_ones_in_the_rows():
    """study_rows: a trial (and a repeat of it) whose flagged figure came back steady carries
    the steady one, and a latency budget is judged again on it; other trials are unchanged."""
    import optuna

    from pruna_search.core.keys import DUPLICATE_ATTR, REMEASURED_PREFIX
    from pruna_search.search.rows import study_rows

    objective = make_objective("best_within_latency", max_accuracy_drop=None, max_latency_ms=0.3)
    study = optuna.create_study(directions=objective.directions)

    def add(attrs: dict, latency_ms: float) -> None:
        metrics = {
            "accuracy": 0.98,
            "accuracy_drop": 0.004,
            "latency_ms": latency_ms,
            "latency_ms_p10": latency_ms * 1.2,
            "latency_ms_p50": latency_ms * 1.3,
            "latency_ms_p90": latency_ms * 1.4,
            "speedup": 0.8 / latency_ms,
        }
        study.add_trial(
            optuna.trial.create_trial(
                values=[metrics["accuracy"]],
                user_attrs={**metrics, **attrs},
                constraints=objective.constraints(metrics),
            )
        )

    add({"pruna.noisy": "dense p10 stayed 9 % above its floor"}, 0.4)  # over budget, flagged
    add({"pruna.noisy": "dense p10 stayed 9 % above its floor", DUPLICATE_ATTR: 0}, 0.4)
    add({}, 0.35)  # over budget, steady
    steady = {"latency_ms": 0.25, "latency_ms_p10": 0.26, "latency_ms_p50": 0.27}
    steady |= {"latency_ms_p90": 0.3, "speedup": 3.2, "was_speedup": 2.0, "was": "9 % above"}
    study.set_user_attr(f"{REMEASURED_PREFIX}0", steady)
    rows = study_rows(study, objective)
    assert [r["feasible"] for r in rows] == [True, True, False]
    assert [r["speedup"] for r in rows] == [3.2, 3.2, pytest.approx(0.8 / 0.35)]
    assert [r["latency_noisy"] for r in rows] == ["", "", ""]
    assert "was 2.00x" in rows[0]["latency_remeasured"] and "latency_remeasured" not in rows[2]
