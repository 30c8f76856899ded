"""The Model Analyzer: sensitivity on real exported models, suggestions that are points of the
space, the knapsack, and ``pruna-search-analyze`` end to end (real ORT, no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from pruna_search.analyzer.run import CALIB_IMAGES, analysis_splits, val_subset
from pruna_search.analyzer.sensitivity import Sensitivity, changes
from pruna_search.analyzer.suggest import Choice, knapsack, params_of, prune_choices
from pruna_search.core.plan import DEFAULT_ROUND_TO
from pruna_search.data.subset import per_class
from pruna_search.search.evaluate import Evaluator, EvaluatorOptions
from pruna_search.search.settings import AnalysisSettings
from pruna_search.search.study import FixedTrial
from pruna_search.space import SearchSpace, SpaceOptions


@pytest.fixture(scope="module")
def evaluator(digits, resnet20_trained, tmp_path_factory):
    splits = val_subset(digits, 200, seed=0)
    options = EvaluatorOptions(measure_latency=False)
    folder = tmp_path_factory.mktemp("analyzer")
    return Evaluator(resnet20_trained, splits, "cpu", workdir=folder, options=options)


def test_the_val_subset_is_balanced_seeded_and_in_memory(digits, tmp_path):
    a, b = val_subset(digits, 100, seed=0), val_subset(digits, 100, seed=0)
    assert a.size("val") == 100 and torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert max(per_class(a.val.tensors[1].numpy()).values()) <= 11  # 10 classes, 100 images
    assert val_subset(digits, 10_000, seed=0) is digits  # in memory, no larger: as it is
    # a streamed photo folder: read once into memory, the val subset and the recalibration
    # images (the profile reads them a hundred times)
    from test_user_data import make_folder

    from pruna_search import data

    make_folder(tmp_path / "photos", {"a": (6, 4), "b": (6, 4)}, side=24)
    photos = data.load("imagefolder", root=str(tmp_path / "photos"), size=16, workers=0)
    splits = analysis_splits(photos, AnalysisSettings(val_subset=6))
    assert isinstance(splits.val, TensorDataset) and isinstance(splits.train, TensorDataset)
    assert splits.size("val") == 6 and splits.size("train") == photos.size("train")
    assert isinstance(splits.calib, TensorDataset)
    assert splits.size("calib") == min(CALIB_IMAGES, photos.size("calib"))
    assert splits.val_arrays()[0].shape[1:] == photos.val_arrays()[0].shape[1:]


def test_a_group_pruned_to_nothing_loses_more_than_at_a_quarter(evaluator):
    """The last stage's shortcut group carries every residual of stage 3: pruned to the
    channel multiple it loses far more than at 25 % (measured on the exported model)."""
    group = "layer3.0.shortcut.0"
    listed = changes(evaluator, (0.25, 0.95), DEFAULT_ROUND_TO, 4)
    plans = [c for c in listed if c.kind == "prune" and c.name == group]
    quarter, nothing = (evaluator.score_without_finetune(c.plan) for c in plans)
    assert nothing < quarter - 0.05, (quarter, nothing)


def test_ratios_that_keep_the_same_channels_are_measured_once(evaluator):
    """With fp32 multiples of 8, 0.5, 0.625 and 0.75 of a 16-channel group all keep 8."""
    ratios = (0.25, 0.5, 0.625, 0.75)
    prune = [c for c in changes(evaluator, ratios, DEFAULT_ROUND_TO, 4) if c.kind == "prune"]
    listed = [c.choice for c in prune if c.name == "conv1"]
    assert listed == [0.5]  # 0.25 keeps all 16 channels (rounded up to 16): the dense model


def test_the_knapsack_keeps_the_loss_within_the_budget_and_saves_the_most():
    a = [Choice("a", "prune", 0.0, 0, 0), Choice("a", "prune", 0.5, 3.0, 0.008)]
    b = [Choice("b", "prune", 0.0, 0, 0), Choice("b", "prune", 0.5, 2.0, 0.004)]
    c = [Choice("c", "prune", 0.0, 0, 0), Choice("c", "prune", 0.5, 2.5, 0.005)]
    chosen = knapsack([a, b, c], 0.01)
    assert {x.item for x in chosen} == {"b", "c"}  # 4.5 ms for 0.9 pt beats a alone (3 ms)
    assert sum(x.loss for x in chosen) <= 0.01
    assert knapsack([a, b, c], 0.0) == []


def test_a_suggestion_is_a_point_of_the_space_that_replays(evaluator):
    space = SearchSpace(evaluator.info, "cpu", SpaceOptions(tie="stage", precision_tie="model"))
    dense = 0.99
    prune = {
        g.name: {r: dense - 0.001 for r in (0.25, 0.5, 0.625, 0.75)} for g in space.info.groups
    }
    found = Sensitivity(dense=dense, prune=prune)
    options = prune_choices(space, found, {g.name: 0.1 for g in space.info.groups})
    chosen = knapsack(list(options.values()), 0.02)
    params = params_of(chosen, space)
    plan = space(FixedTrial(dict(params)))
    assert plan.prune and space.params_of(plan) == params


@pytest.mark.slow
def test_pruna_search_analyze_writes_the_report_and_refuses_bad_input(tmp_path):
    """The CLI on ResNet-20/digits: analysis.md/json, the two plots and the HTML; a suggested
    plan per budget, measured; a bad key leaves nothing behind."""
    run = [
        sys.executable,
        "-m",
        "pruna_search.cli.analyze",
        "tracking=none",
        "target.noise_retries=0",
    ]
    bad = subprocess.run(
        [*run, "analysis.budgets=[0.0]", f"hydra.run.dir={tmp_path}/bad"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "analysis.budgets: 0.0 is not an accuracy budget" in bad.stderr
    assert not (tmp_path / "bad").exists()
    done = subprocess.run(
        [*run, "analysis.budgets=[0.01,0.05]", f"hydra.run.dir={tmp_path}/ok"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "ok"
    for name in (
        "analysis.md",
        "analysis.json",
        "sensitivity.png",
        "latency.png",
        "analysis.html",
    ):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "analysis.json").read_text())
    assert [s["budget"] for s in record["suggestions"]] == [0.01, 0.05]
    assert all(s["speedup"] > 1.0 for s in record["suggestions"])
    assert len(record["layers"]) == 22 and record["sensitivity"]["prune"]
    assert "## Suggested plans" in (folder / "analysis.md").read_text()


def test_warm_start_plans_are_found_by_digest_enqueued_once_and_survive_a_resume(
    tmp_path, resnet20_trained
):
    """A search of the same model, data, target and space finds the analysis by digest and
    enqueues its suggestions once, after the references; opening the study again (a resume)
    adds nothing; with warm_start=auto and no analysis nothing is enqueued."""
    import optuna

    from pruna_search.analyzer.job import analysis_digest
    from pruna_search.analyzer.store import save_record, store
    from pruna_search.analyzer.warmstart import warm_start_plans
    from pruna_search.core.keys import WARM_START_ATTR
    from pruna_search.search.job import open_job_study, open_session
    from pruna_search.search.settings import JobSettings

    config = {
        "model": {"name": "resnet20", "pretrained": True},
        "data": {"name": "digits"},
        "space": {"ratios": [0.0, 0.5], "tie": "stage"},
        "study": {"storage": f"sqlite:///{tmp_path}/warm.db", "reference_ratios": [0.5]},
        "finetune": {"trial_steps": 5, "final_steps": 10},
    }
    session = open_session(JobSettings.parse(config))
    digest = analysis_digest(session.settings, session.weights_digest)
    path = store() / f"{digest}.json"
    try:
        path.unlink(missing_ok=True)
        assert warm_start_plans(session) == {}  # auto, and no analysis yet
        first, *rest = session.space.prune_params  # not a uniform reference plan
        params = {first: 0.5, **dict.fromkeys(rest, 0.0)}
        params |= {key: "int8" for key in session.space.bits_params}
        save_record({"digest": digest, "suggestions": [{"budget": 0.02, "params": params}]})
        assert warm_start_plans(session) == {"analysis 2 pt": params}
        for _ in range(2):  # created, then resumed
            study = open_job_study(session, warm_start_plans)
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        warm = [t for t in trials if t.user_attrs.get(WARM_START_ATTR)]
        assert [t.user_attrs[WARM_START_ATTR] for t in warm] == ["analysis 2 pt"]
        assert trials[-1].user_attrs.get(WARM_START_ATTR) == "analysis 2 pt"  # after references
    finally:
        path.unlink(missing_ok=True)
        session.close()
