"""Re-ranking at a higher fidelity (``study.rerank_top``): a real ResNet-20 fine-tuned again for
real, a real Optuna study in SQLite, real ORT. The misleading trial accuracy is planted: a trial
told with an accuracy far below what its plan reaches after a longer fine-tune."""

from __future__ import annotations

import optuna
import pytest

from pruna_search.core import names
from pruna_search.core.errors import ConfigError
from pruna_search.core.keys import RERANKED_PREFIX
from pruna_search.search.job import open_session
from pruna_search.search.objectives import DROP_BUDGET, make_objective
from pruna_search.search.rerank import Reranker, candidates, record
from pruna_search.search.rows import at_trial_fidelity, choice, study_rows
from pruna_search.search.runner import LoopSettings
from pruna_search.search.settings import JobSettings
from pruna_search.search.study import StudySettings, reference_plans

BUDGET = 0.10  # ten points: a 50 % pruned ResNet-20 on digits is 8 under dense after 60 steps
TRIAL_STEPS, RERANK_STEPS = 10, 60


def config(tmp_path, **study) -> dict:
    return {
        "model": {"name": "resnet20", "pretrained": True},
        "data": {"name": "digits"},
        "target": {"name": "cpu", "warmup": 5, "min_runs": 20, "max_runs": 40, "noise_retries": 0},
        "space": {"ratios": [0.0, 0.5], "tie": "stage", "precision_tie": None},
        "objective": {"name": "fastest_within_drop", "max_accuracy_drop": BUDGET},
        "sampler": {"name": "random", "seed": 0},
        "study": {"storage": f"sqlite:///{tmp_path}/study.db", "n_trials": 2, **study},
        "finetune": {"trial_steps": TRIAL_STEPS, "final_steps": RERANK_STEPS, "distill": 0.0},
    }


@pytest.fixture(scope="module")
def session(tmp_path_factory, resnet20_trained):
    opened = open_session(JobSettings.parse(config(tmp_path_factory.mktemp("rerank"))))
    yield opened
    opened.close()


def tell(study, space, params: dict, *, accuracy: float, speedup: float, dense: float) -> int:
    """A completed trial of ``params`` (through the real space) with the figures given."""
    study.enqueue_trial(params)
    trial = study.ask()
    space(trial)
    drop = dense - accuracy
    figures = {
        names.ACCURACY: accuracy,
        names.ACCURACY_DROP: drop,
        names.LATENCY: 1.0 / speedup,
        names.LATENCY_P10: 1.0 / speedup,
        names.SPEEDUP: speedup,
    }
    for name, value in figures.items():
        trial.set_user_attr(name, value)
    trial.set_constraint(DROP_BUDGET, drop - BUDGET)
    study.tell(trial, [1.0 / speedup])
    return trial.number


def row(number, accuracy, speedup, *, feasible=True, duplicate_of=None) -> dict:
    return {
        "number": number,
        names.ACCURACY: accuracy,
        names.ACCURACY_DROP: 0.99 - accuracy,
        names.SPEEDUP: speedup,
        names.LATENCY: 1.0 / speedup,
        "feasible": feasible,
        "duplicate_of": duplicate_of,
    }


def test_candidates_are_the_choice_then_the_faster_front_nearest_the_budget():
    drop = make_objective("fastest_within_drop", max_accuracy_drop=0.01)
    rows = [
        row(0, 0.985, 2.0),  # the choice: fastest within the budget
        row(1, 0.97, 2.5, feasible=False),  # 2 points over: nearest the budget
        row(2, 0.90, 3.0, feasible=False),
        row(3, 0.96, 2.4, feasible=False),  # dominated by trial 1: left out
        row(4, 0.99, 1.5),  # slower than the choice: it cannot be shipped instead
        row(5, 0.97, 2.5, feasible=False, duplicate_of=1),
    ]
    assert [r["number"] for r in candidates(rows, drop)] == [0, 1, 2]
    # within a latency budget, accuracy is what is ranked: the most accurate feasible first
    best = make_objective("best_within_latency", min_speedup=1.8)
    rows = [
        row(0, 0.98, 2.0),
        row(1, 0.985, 1.9),
        row(2, 0.9, 3.0),
        row(3, 0.99, 1.2, feasible=False),
    ]
    assert [r["number"] for r in candidates(rows, best)] == [1, 0, 2]


def test_reranking_changes_the_choice_when_the_trial_accuracy_misleads(session, tmp_path):
    """Trial 0 (uniform int8, nothing to fine-tune) is the choice on trial figures; trial 1
    (half the channels + int8) was told an accuracy of 0.5, far over the budget. Re-ranked at
    60 steps it is within the budget and faster: it becomes the choice, and the figure is
    stored on the study so a second run re-ranks nothing."""
    objective = session.settings.objective
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/planted.db", directions=objective.directions
    )
    plans = reference_plans(session.space, [0.5])
    dense = session.evaluator.baseline[names.ACCURACY]
    int8 = tell(
        study, session.space, plans["uniform int8"], accuracy=dense, speedup=1.5, dense=dense
    )
    half = tell(
        study, session.space, plans["uniform 0.5 + int8"], accuracy=0.5, speedup=3.0, dense=dense
    )
    rows = study_rows(study, objective)
    assert choice(rows, objective)["number"] == int8
    settings = LoopSettings.of(
        session.settings.study, session.settings.trial_finetune, session.settings.final_finetune
    )
    assert settings.rerank is not None and settings.rerank.steps == RERANK_STEPS
    reranker = Reranker(study, session.space, session.evaluator, objective, settings.rerank)
    outcome = reranker.run(top=2, deadline=None)
    # uniform int8 prunes nothing: its trial figure is final; only trial 1 was fine-tuned again
    assert outcome.plans == 1  # the choice it moves from trial 0 to trial 1: asserted below
    assert list(outcome.models) == [half]
    assert f"{RERANKED_PREFIX}{half}.{RERANK_STEPS}" in study.user_attrs
    rows = {r["number"]: r for r in study_rows(study, objective)}
    reranked = rows[half]
    assert reranked["trial_accuracy"] == 0.5 and reranked["rerank_steps"] == RERANK_STEPS
    assert reranked[names.ACCURACY] > dense - BUDGET and reranked["feasible"]
    assert not reranked["trial_feasible"]
    assert rows[int8]["rerank_steps"] is None
    assert choice(list(rows.values()), objective)["number"] == half
    # the trials' own figures still choose trial 0
    assert choice(at_trial_fidelity(list(rows.values())), objective)["number"] == int8
    # the re-ranked model is the one shipped: scored again, the same accuracy
    model = outcome.models[half]
    assert session.evaluator.score(model.onnx_path) == pytest.approx(reranked[names.ACCURACY])
    # stored on the study: a second run re-ranks nothing, a deadline passed re-ranks nothing
    again = Reranker(study, session.space, session.evaluator, objective, settings.rerank)
    assert again.run(top=2, deadline=None).plans == 0
    assert again.run(top=5, deadline=0.0).plans == 0
    assert again.run(top=5, deadline=None, stop=lambda: True).plans == 0


def test_rerank_settings_and_bad_input(tmp_path):
    study = StudySettings()
    assert (study.rerank_top, study.rerank_steps) == (3, None)
    base = config(tmp_path)
    settings = JobSettings.parse(base)
    loop = LoopSettings.of(settings.study, settings.trial_finetune, settings.final_finetune)
    assert loop.rerank.steps == RERANK_STEPS and loop.rerank_top == 3
    off = JobSettings.parse(config(tmp_path, rerank_top=None))
    assert LoopSettings.of(off.study, off.trial_finetune, off.final_finetune).rerank is None
    # a final fine-tune no longer than the trials': nothing to re-rank at, so none
    short = JobSettings.parse({**base, "finetune": {"trial_steps": 30, "final_steps": 30}})
    assert LoopSettings.of(short.study, short.trial_finetune, short.final_finetune).rerank is None
    assert LoopSettings.of(study).rerank is None  # no fine-tune given (tests, the API)
    for value in (0, -1, "x", True, 1.5):
        with pytest.raises(ConfigError, match=r"study.rerank_top: .* must be an integer >= 1"):
            StudySettings(rerank_top=value)
    with pytest.raises(ConfigError, match=r"study.rerank_steps: 0 must be an integer >= 1"):
        StudySettings(rerank_steps=0)
    with pytest.raises(ConfigError) as info:
        JobSettings.parse(config(tmp_path, rerank_steps=TRIAL_STEPS))
    message = str(info.value)
    assert message.startswith("study.rerank_steps: 10 must exceed finetune.trial_steps (10)")
    assert "study.rerank_top=null" in message and "\n" not in message


class Planted(Reranker):
    """A re-ranker told each plan's re-ranked accuracy (``planted``, by trial number) instead
    of fine-tuning it: the rounds' rule on its own."""

    planted: dict[int, float] = {}

    def one(self, row) -> None:
        number = int(row["number"])
        dense = self.evaluator.baseline[names.ACCURACY]
        accuracy = self.planted[number]
        record(self.study, number, self.recipe.steps, accuracy, dense - accuracy, 0.0)
        self.outcome.plans += 1


@pytest.mark.parametrize("moves", [False, True])
def test_another_round_only_when_the_choice_moved(session, tmp_path, moves):
    """Trial 0 ships (nothing to fine-tune); trials 1 and 2 are faster but over the budget.
    Re-ranked, trial 1 either stays over it (the choice holds: re-ranking ends, trial 2 is not
    fine-tuned, although it is now the nearest candidate) or comes within it (the choice moves
    to trial 1: another round takes trial 2)."""
    objective = session.settings.objective
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/rounds.db", directions=objective.directions
    )
    plans = reference_plans(session.space, [0.5])
    dense = session.evaluator.baseline[names.ACCURACY]
    over = dense - 2 * BUDGET
    tell(study, session.space, plans["uniform int8"], accuracy=dense, speedup=1.5, dense=dense)
    first = tell(
        study, session.space, plans["uniform 0.5 fp32"], accuracy=over, speedup=2.0, dense=dense
    )
    second = tell(
        study,
        session.space,
        plans["uniform 0.5 + int8"],
        accuracy=over - 0.05,
        speedup=3.0,
        dense=dense,
    )
    settings = LoopSettings.of(
        session.settings.study, session.settings.trial_finetune, session.settings.final_finetune
    )
    reranker = Planted(study, session.space, session.evaluator, objective, settings.rerank)
    # held: trial 1 re-ranked below trial 2's trial figure, so trial 2 dominates it and is next
    # on the front; the round did not move the choice, so it is not re-ranked all the same
    reranker.planted = {first: dense - (0.5 if moves else 3.0) * BUDGET, second: over}
    assert reranker.run(top=2, deadline=None).plans == (2 if moves else 1)
    assert reranker.choice() == (first if moves else 0)
