"""The installed console scripts, run as a user runs them (subprocesses, real files)."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from pruna_search.core.plan import Plan

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
TINY = [
    "space.ratios=[0.0,0.5]",
    "space.tie=stage",
    "study.reference_ratios=[0.5]",
    "sampler=random",
    "target.warmup=5",
    "target.min_runs=20",
    "target.max_runs=40",
    "target.noise_retries=0",
    "finetune.trial_steps=5",
    "finetune.final_steps=10",
    "finetune.distill=0.0",
]


def cli(tmp_path: Path, *args: str, script: str = "pruna-search", timeout: int = 600):
    return subprocess.run(
        [str(BIN / script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0", "PYTHONPATH": str(TESTS)},
    )


USER_MODEL = "model=custom model.name=fixtures_models:tiny_factory"
BAD_INPUT = [
    ("modle=cnn", "error: modle: no config group or key of that name; did you mean 'model'?"),
    (
        "sampler=annealing",
        "error: sampler=annealing: no such option; choose one of: gp, nsga2",
    ),
    ("objective=fastest", "error: objective=fastest: no such option; did you mean"),
    ("experiment=nope", "error: experiment=nope: no such option; choose one of: digits_stage"),
    ("study.n_trials=0", "error: study.n_trials: 0 must be >= 1"),
    ("study.rerank_top=0", "error: study.rerank_top: 0 must be an integer >= 1, or null"),
    ("study.rerank_steps=30", "error: study.rerank_steps: 30 must exceed finetune.trial_steps"),
    ("study.pruner=halving", "error: study.pruner: 'halving' is unknown"),
    # a multirun checks every job before the first runs: nothing ran, no multirun/ folder
    ("-m study.n_trials=3,0", "error: study.n_trials: 0 must be >= 1"),
    ("-m sampler=tpe,annealing", "error: sampler=annealing: no such option"),
    ("study.storage=sqlite:///missing/dir/s.db", "error: study.storage: folder 'missing/dir'"),
    ("objective.max_accuracy_drop=-0.5", "error: objective.max_accuracy_drop: -0.5 must be"),
    ("tracking.uri=./mlruns", "error: tracking.uri: './mlruns' is not a tracking store"),
    ("tracking=mlfow", "error: tracking=mlfow: no such option; did you mean 'mlflow'?"),
    (
        "target=gpu",
        "error: target=gpu: no such option; did you mean 'cpu'?",
    ),
    ("target.provider=cuda", "error: target.provider: 'cuda' is not in this ONNX Runtime"),
    ("target.min_runs=0", "error: target.min_runs: 0 must be an integer >= 1"),
    (
        "space.round_to={fp32:8,int8:0}",
        "error: space.round_to['int8']: 0 must be an integer >= 1; e.g. 8, or {fp32: 8, int8: 16}",
    ),
    (
        "target=remote",
        "error: target.url: the agent at http://127.0.0.1:8765 is not answering",
    ),
    (
        "target=remote target.url=notaurl",
        "error: target.url: 'notaurl' is not an agent's address; use http://host:port",
    ),
    (
        "target.url=http://device:8765",
        "error: target.url: 'http://device:8765' is set but target.runner is local",
    ),
    ("seed=abc", "error: seed: 'abc' must be an integer"),
    ("hydra.run.dir=/proc/nope/run", "error: hydra.run.dir: '/proc/nope/run' cannot be created"),
    # your own model and data (several overrides per case; {placeholders} are test files)
    (
        "model=custom model.name=fixtures_models:NOT_A_CLASS",
        "error: model.name: 'fixtures_models:NOT_A_CLASS' is a int, not a class or factory",
    ),
    (
        "model=custom model.name=fixtures_models:raising_factory",
        "error: model.name: 'fixtures_models:raising_factory'() raised ValueError: weights",
    ),
    (
        f"{USER_MODEL} +model.model_kwargs.depth=3",
        "error: model.model_kwargs: 'fixtures_models:tiny_factory' could not be created with",
    ),
    (f"{USER_MODEL} model.checkpoint={{other_checkpoint}}", "error: checkpoint: '"),
    (
        "model=custom model.name=fixtures_models:MultiOutputNet model.output_key=nope",
        "error: model.output_key: 'nope' is not in the output, a dict with keys",
    ),
    ("finetune.device=cuda", "error: finetune.device: 'cuda' but torch"),
    ("finetune.amp=fp8", "error: finetune.amp: 'fp8' is unknown; use bf16 or fp16"),
    ("data=imagefolder data.root={images} data.size=0", "error: data.size: 0 must be positive"),
    (
        "data=imagefolder data.root={images} data.mean=imagenett",
        "error: data.mean: 'imagenett' is not a preset; use one of imagenet, half, train",
    ),
    (
        "data=imagefolder data.root={images} data.val_subset=5000",
        "error: data.val_subset: 5000 but the split has 6 images; give at most 6",
    ),
    (
        "data=imagefolder data.root={wolves}",
        "error: data.root: val class 'wolf' has no folder in",
    ),
    (
        "data=imagefolder data.root={images}",
        "error: objective.max_accuracy_drop: 0.01 cannot be judged on 6 val images",
    ),
    ("objective.metric=top3", "error: objective.metric: 'top3' is unknown; use top1, top5"),
    (
        f"{USER_MODEL} +model.model_kwargs.in_channels=3 +model.model_kwargs.num_classes=3"
        " data=imagefolder data.root={images} data.size=16 objective.allow_small_val=true"
        " objective.metric=top5",
        "error: objective.metric: top5 needs more than 5 classes but the data has 3",
    ),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Every bad override run through ``pruna-search``'s entry point in one process (one import
    of torch and friends instead of one per case), each in its own folder with its own stderr."""
    base = tmp_path_factory.mktemp("bad_input")
    files = user_files(base / "files")
    driver = Path(__file__).with_name("bad_input_driver.py")
    overrides = [_fill(override, files) for override, _ in BAD_INPUT]
    proc = subprocess.run(
        [sys.executable, str(driver), str(base), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0", "PYTHONPATH": str(TESTS)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads(proc.stdout.splitlines()[-1])
    return {override: run for (override, _), run in zip(BAD_INPUT, runs, strict=True)}


def _fill(override: str, files: dict[str, str]) -> str:
    for key, path in files.items():
        override = override.replace("{" + key + "}", path)
    return override


def user_files(root: Path) -> dict[str, str]:
    """A small photo folder (3 classes, 4 train and 2 val images each), one whose val has a
    class train lacks, and a checkpoint of another architecture."""
    sys.path.insert(0, str(TESTS))
    from test_user_data import make_folder

    from pruna_search import models

    images = make_folder(root / "images", {"a": (4, 2), "b": (4, 2), "c": (4, 2)}, side=24)
    wolves = make_folder(root / "wolves", {"a": (2, 1), "b": (2, 1)}, side=24)
    make_folder(root / "wolves" / "val_only", {"wolf": (0, 1)}, side=24)
    (root / "wolves" / "val_only" / "val" / "wolf").rename(wolves / "val" / "wolf")
    other = root / "other.pt"
    torch.save(models.build("cnn", num_classes=10, in_channels=1).state_dict(), other)
    return {"images": str(images), "wolves": str(wolves), "other_checkpoint": str(other)}


@pytest.mark.parametrize("override, message", BAD_INPUT)
def test_bad_input_is_one_line_and_leaves_nothing(bad_input_runs, override, message):
    run = bad_input_runs[override]
    assert run["code"] == 2, run["stderr"]
    lines = [line for line in run["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1, run["stderr"]
    assert lines[0].startswith(message), lines[0]
    # no half-written run directory, nothing in the tracker, no study storage: at most an
    # empty outputs/ folder is left
    assert run["left"] in ([], ["outputs"]), run["left"]


def test_version(tmp_path):
    import pruna_search

    for script in ("pruna-search", "pruna-search-export"):
        proc = cli(tmp_path, "--version", script=script, timeout=120)
        assert (
            proc.returncode == 0
            and proc.stdout.strip() == f"pruna_search {pruna_search.__version__}"
        )


def test_bad_input_through_the_console_script(tmp_path):
    """The installed ``pruna-search`` script itself: exit code 2 and one line."""
    proc = cli(tmp_path, "modle=cnn", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: modle: no config group or key of that name; did you mean 'model'?"]
    assert not list(tmp_path.glob("outputs/*")), "no half-written run directory"


@pytest.mark.slow
@pytest.mark.integration
def test_your_own_model_and_photos(tmp_path):
    """A factory with keyword arguments and a folder of JPEGs, as a user types it: every data
    key is in conf/data/imagefolder.yaml, so no `+` is needed. The search runs on a subset;
    the shipped model is measured on the whole data."""
    files = user_files(tmp_path / "files")
    proc = cli(
        tmp_path,
        *TINY,
        "study.n_trials=3",
        *USER_MODEL.split(),
        "+model.model_kwargs.in_channels=3",
        "+model.model_kwargs.num_classes=3",
        "data=imagefolder",
        f"data.root={files['images']}",
        "data.size=32",
        "data.workers=1",
        "data.mean=imagenet",
        "data.std=imagenet",
        "data.train_subset=6",
        "data.val_subset=0.5",
        "objective.allow_small_val=true",
        "finetune.device=auto",
        "tracking=none",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cannot be judged on 3 val images" in proc.stdout + proc.stderr  # the warning
    assert "data     imagefolder: 6 train / 6 calib / 3 val, input (3, 32, 32)" in proc.stdout
    assert "whole data imagefolder: 12 train / 12 calib / 6 val" in proc.stdout
    import onnx

    model = onnx.load(str(tmp_path / "run" / "best.onnx"))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 32, 32] and len(model.graph.output) == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok"


@pytest.mark.slow
@pytest.mark.integration
def test_search_then_export(tmp_path, resnet20_trained):
    proc = cli(tmp_path, *TINY, "study.n_trials=4", "hydra.run.dir=run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    for name in ("best.onnx", "plan.yaml", "pareto.csv", "report.md", "search.log"):
        assert (run / name).is_file(), name
    assert proc.stdout.count("trial ") >= 4  # one line per trial
    assert "dense fp32" in proc.stdout and "x faster" in proc.stdout
    # the suite's latency cache has no floor at the start of a test (conftest)
    assert "floor    no dense p10 stored in the last 24 h" in proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    # tracked by default in ./mlflow.db: the study's parent run and one child per trial
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        tags = db.execute("select key, value from tags where key = 'pruna.run'").fetchall()
    assert tags.count(("pruna.run", "study")) == 1
    assert tags.count(("pruna.run", "trial")) >= 4
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    proc = cli(
        tmp_path,
        f"study.name={summary['study']}",
        "trial=0",
        "hydra.run.dir=exported",
        script="pruna-search-export",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "exported" / "best.onnx").is_file()
    plan = Plan.load(tmp_path / "exported" / "plan.yaml")  # trial 0: the dense fp32 reference
    assert plan.is_dense and plan.is_fp32 and plan.finetune.steps == 10
    proc = cli(tmp_path, script="pruna-search-export")
    assert proc.returncode == 2
    assert f"study.name: required; studies in sqlite:///pruna_search.db: {summary['study']}" in (
        proc.stderr
    )


@pytest.mark.slow
@pytest.mark.integration
def test_multirun_writes_a_sweep_summary(tmp_path, resnet20_trained):
    proc = cli(
        tmp_path,
        "-m",
        *TINY,
        "study.n_trials=3",
        "objective.max_accuracy_drop=0.03,0.05",
        "hydra.sweep.dir=sweep",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep_summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["study"] != rows[1]["study"], "one study per job"
    assert all(float(r["speedup"]) > 0 and float(r["accuracy"]) > 0.5 for r in rows)
    # both studies' runs carry the sweep's id, so the MLflow UI can filter one sweep
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        sweeps = db.execute("select value from tags where key = 'pruna.sweep'").fetchall()
    assert sweeps == [("sweep",), ("sweep",)]
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "best.onnx").is_file()
    assert (tmp_path / "sweep" / "sweep_summary.md").is_file()


def _running_trial(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute(
                "SELECT number FROM trials WHERE state='RUNNING' AND number >= 2"
            ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def start_search(tmp_path: Path, args: list[str], **popen) -> subprocess.Popen:
    """pruna-search in the background, its output piped (``popen`` adds or overrides)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [str(BIN / "pruna-search"), *args],
        cwd=tmp_path,
        text=True,
        env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0"},
        **options,
    )


def start_until_trial_2_runs(tmp_path: Path, args: list[str], **popen) -> subprocess.Popen:
    """Start pruna-search in the background and return once trial 2 is running."""
    proc = start_search(tmp_path, args, **popen)
    deadline = time.time() + 300
    while _running_trial(tmp_path / "pruna_search.db") is None:
        assert proc.poll() is None and time.time() < deadline, "no trial 2 started"
        time.sleep(0.5)
    return proc


@pytest.mark.slow
@pytest.mark.integration
def test_killed_trial_is_retried_with_its_params(tmp_path, resnet20_trained):
    args = [
        *TINY,
        "finetune.trial_steps=80",  # the pruned reference (trial 2) runs long enough to kill
        "study.n_trials=4",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "study.name=killed",
    ]
    proc = start_until_trial_2_runs(tmp_path, args, start_new_session=True)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, like an OOM kill
    proc.communicate()
    time.sleep(3)  # past the grace period
    done = cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(
        study_name="killed", storage=f"sqlite:///{tmp_path}/pruna_search.db"
    ).get_trials()
    assert trials[2].state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert retry.state.name == "COMPLETE"
    assert retry.params == trials[2].params
    assert retry.user_attrs["pruna.reference"] == "uniform 0.5 + int8"
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4


def leave_child_half_logged(tmp_path: Path, trial: int) -> None:
    """What a kill while trial ``trial``'s child run was being logged leaves: a RUNNING child
    with no metrics (the finished one is deleted)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`pruna.trial` = '{trial}'",
    )
    (logged,) = runs
    client.delete_run(logged.info.run_id)
    client.create_run(
        logged.info.experiment_id,
        tags={k: v for k, v in logged.data.tags.items() if not k.startswith("mlflow.user")},
    )


@pytest.mark.slow
@pytest.mark.integration
def test_a_trial_killed_within_the_grace_period_is_not_lost(tmp_path, resnet20_trained):
    """Kill -9 during a reference trial, run again at once: the new run meets n_trials
    without it, then waits for it to go stale and evaluates its retry; every reference is
    COMPLETE once, nothing stays RUNNING, the half-logged MLflow child is logged again."""
    args = [
        *TINY,
        "finetune.trial_steps=80",
        "study.n_trials=3",
        "study.heartbeat_interval=1",
        "study.grace_period=30",  # outlasts the rerun's start and its trial 3
        "study.name=killed_now",
    ]
    proc = start_until_trial_2_runs(
        tmp_path, [*args, "hydra.run.dir=first"], start_new_session=True
    )
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    leave_child_half_logged(tmp_path, trial=1)
    done = cli(tmp_path, *args, "hydra.run.dir=second")  # at once: trial 2 is not stale yet
    assert done.returncode == 0, done.stderr[-2000:]
    assert "waiting for trial 2" in done.stdout + done.stderr
    trials = optuna.load_study(
        study_name="killed_now", storage=f"sqlite:///{tmp_path}/pruna_search.db"
    ).get_trials()
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    labels = [t.user_attrs.get("pruna.reference") for t in trials if t.state.name == "COMPLETE"]
    for label in ("dense fp32", "uniform int8", "uniform 0.5 + int8", "uniform 0.5 fp32"):
        assert labels.count(label) == 1, (label, labels)
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert retry.state.name == "COMPLETE" and retry.params == trials[2].params
    assert (tmp_path / "second" / "best.onnx").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    children = [
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("pruna.run") == "trial"
    ]
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)
    (one,) = [r for r in children if r.data.tags["pruna.trial"] == "1"]
    assert one.info.status == "FINISHED" and "accuracy" in one.data.metrics


def kill_at_line(tmp_path: Path, args: list[str], marker: str) -> None:
    """Run pruna-search until a line starting with ``marker`` is printed, then kill -9 its
    whole process group at once."""
    proc = start_search(tmp_path, args, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(marker):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    else:
        raise AssertionError(f"no line starting with {marker!r}; exit {proc.wait()}")
    proc.wait()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    ("marker", "wait_s"),
    [("trial    1 ", 0), ("trial    1 ", 4), ("final    ", 0), ("final    ", 4)],
    ids=[
        "between_trials",
        "between_trials_after_the_grace_period",
        "after_the_final_line",
        "after_the_final_line_after_the_grace_period",
    ],
)
def test_a_kill_between_trials_or_after_the_final_line_loses_nothing(
    tmp_path, resnet20_trained, marker, wait_s
):
    """Kill -9 just after a trial's line (its MLflow child being logged) or just after the
    final line (best.onnx being written), then the same command, at once or after the grace
    period (3 s here): every plan COMPLETE once, every MLflow child FINISHED with metrics,
    best.onnx in the new run folder."""
    args = [*TINY, "study.n_trials=3", "study.name=killed_at_line"]
    if wait_s:
        args += ["study.heartbeat_interval=1", "study.grace_period=3"]
    kill_at_line(tmp_path, [*args, "hydra.run.dir=first"], marker)
    time.sleep(wait_s)
    done = cli(tmp_path, *args, "hydra.run.dir=second")
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(
        study_name="killed_at_line", storage=f"sqlite:///{tmp_path}/pruna_search.db"
    ).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) >= 3 and not [t for t in trials if t.state.name == "RUNNING"]
    evaluated = [t for t in complete if "pruna.duplicate_of" not in t.user_attrs]
    params = [tuple(sorted(t.params.items())) for t in evaluated]
    assert len(set(params)) == len(params), "no plan evaluated twice"
    assert (tmp_path / "second" / "best.onnx").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    children = [
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("pruna.run") == "trial"
    ]
    assert sorted(int(r.data.tags["pruna.trial"]) for r in children) == [
        t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")
    ]
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children)
    assert all("accuracy" in r.data.metrics for r in children if r.info.status == "FINISHED")


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_finishes_the_running_trial_and_the_study_resumes(tmp_path, resnet20_trained):
    args = [*TINY, "finetune.trial_steps=60", "study.n_trials=4", "study.name=interrupted"]
    proc = start_until_trial_2_runs(tmp_path, [*args, "hydra.run.dir=first"])
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "stopping after the running trial" in out
    storage = f"sqlite:///{tmp_path}/pruna_search.db"
    trials = optuna.load_study(study_name="interrupted", storage=storage).get_trials()
    assert [t.state.name for t in trials[:3]] == ["COMPLETE"] * 3, "the running trial finished"
    assert (tmp_path / "first" / "pareto.csv").is_file()
    assert "Interrupted" in (tmp_path / "first" / "report.md").read_text()
    assert not (tmp_path / "first" / "best.onnx").exists()
    done = cli(tmp_path, *args, "hydra.run.dir=second")
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(study_name="interrupted", storage=storage).get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4
    assert (tmp_path / "second" / "best.onnx").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_search_measures_through_a_loopback_agent(tmp_path, resnet20_trained):
    """target=remote: every latency figure comes from a pruna-search-agent over HTTP."""
    from test_agent import TOKEN, start_agent, stop

    agent, url = start_agent(tmp_path, "--quiet")
    try:
        proc = subprocess.run(
            [
                str(BIN / "pruna-search"),
                *TINY,
                "study.n_trials=3",
                "hydra.run.dir=run",
                "target=remote",
                f"target.url={url}",
                "tracking=none",
                "--no-cache",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0", "PRUNA_AGENT_TOKEN": TOKEN},
        )
    finally:
        stop(agent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["evaluated"] == 3 and summary["speedup"] > 0
    study = optuna.load_study(
        study_name=summary["study"],
        storage="sqlite:///pruna_search.db".replace(
            "pruna_search.db", str(tmp_path / "pruna_search.db")
        ),
    )
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert done and all(t.user_attrs["pruna.latency"]["runner"] == f"remote {url}" for t in done)
    assert all(not t.user_attrs["pruna.latency"]["cached"] for t in done)
