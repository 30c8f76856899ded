"""MLflow tracking on a real SQLite store: parent and child runs, tags, artifacts, the registry,
resume, a server that is down; and a tiny real study tracked end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import optuna
import pytest
from mlflow import MlflowClient
from onnx import TensorProto, helper
from PIL import Image

from pruna_search.core.errors import ConfigError
from pruna_search.core.keys import CHOSEN_TAG, PARETO_TAG, REMEASURED_TAG, STUDY_TAG
from pruna_search.search.job import run_job
from pruna_search.search.records import flatten
from pruna_search.search.settings import JobSettings
from pruna_search.tracking import (
    StudyEnd,
    StudyRecord,
    TrialRecord,
    make_tracker,
)
from pruna_search.tracking.mlflow_tracker import MlflowTracker
from pruna_search.tracking.ui import TRIALS_VIEW, VIEW_TAGS, view_url

METRICS = {"accuracy": 0.98, "accuracy_drop": 0.01, "latency_ms_p50": 0.4, "speedup": 2.0}


def tiny_onnx(path):
    """A real ONNX model (y = x @ W) that ORT runs."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(number: int, state: str = "COMPLETE", **metrics) -> TrialRecord:
    return TrialRecord(
        number=number,
        state=state,
        params={"prune/layer1": 0.5, "bits/all": "int8", "mean_ratio": 0.5},
        metrics={**METRICS, **metrics},
        tags={"pruna.fail_reason": "export failed"} if state == "FAIL" else {},
        plan_yaml="prune:\n  layer1: 0.5\n",
    )


def test_parent_children_end_and_resume(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = make_tracker("mlflow", uri)
    start = StudyRecord(
        study="s-1", experiment="exp", tags={"pruna.model": "m"}, params={"a.b": 1}
    )
    tracker.start_study(start)
    for n in range(3):
        tracker.log_trial(record(n, accuracy=0.9 + n / 100))
    tracker.log_trial(record(3, state="FAIL"))
    model = tiny_onnx(tmp_path / "best.onnx")
    (tmp_path / "report.md").write_text("# report\n")
    tracker.end_study(
        StudyEnd(
            pareto=[1, 2],
            chosen=2,
            metrics=METRICS,
            artifacts=[tmp_path / "report.md"],
            model=model,
            model_name="pruna-tiny-cpu",
            model_tags={"speedup": "2", "pruna.trial": "2"},
            # trial 1's figure was flagged and came back steady after the run
            remeasured={1: {"latency_ms": 0.3, "speedup": 2.5}},
            remeasured_why={1: "measured again after the run: was 2.00x, flagged (slow)"},
        )
    )
    tracker.close()
    assert tracker.summary() is None, tracker.summary()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("exp")
    assert experiment.artifact_location.endswith("mlartifacts/exp")  # beside the db, not ./mlruns
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("pruna.run") == "study"]
    children = {
        r.data.tags["pruna.trial"]: r for r in runs if r.data.tags.get("pruna.run") == "trial"
    }
    assert len(parent) == 1 and parent[0].data.tags[STUDY_TAG] == "s-1"
    assert parent[0].data.params == {"a.b": "1"} and parent[0].info.status == "FINISHED"
    assert parent[0].data.metrics["speedup"] == 2.0
    assert sorted(children) == ["0", "1", "2", "3"]
    assert children["3"].info.status == "FAILED"
    assert children["3"].data.tags["pruna.fail_reason"] == "export failed"
    assert children["0"].info.run_name == "trial-0"
    assert children["0"].data.params["prune/layer1"] == "0.5"
    assert children["1"].data.metrics["accuracy"] == pytest.approx(0.91)
    # the steady figure is the child's latest value, and the tag says what it replaced
    assert children["1"].data.metrics["speedup"] == 2.5
    assert children["1"].data.tags[REMEASURED_TAG].endswith("was 2.00x, flagged (slow)")
    assert children["2"].data.metrics["speedup"] == 2.0 and REMEASURED_TAG not in (
        children["2"].data.tags
    )
    assert {n for n, r in children.items() if r.data.tags[PARETO_TAG] == "true"} == {"1", "2"}
    assert {n for n, r in children.items() if r.data.tags[CHOSEN_TAG] == "true"} == {"2"}
    names = [a.path for a in client.list_artifacts(parent[0].info.run_id)]
    assert "report.md" in names
    plan = client.download_artifacts(children["0"].info.run_id, "plan.yaml", str(tmp_path))
    assert "layer1: 0.5" in Path(plan).read_text()

    version = client.search_model_versions("name = 'pruna-tiny-cpu'")[0]
    assert version.tags["speedup"] == "2"
    import mlflow.onnx

    loaded = mlflow.onnx.load_model(f"models:/pruna-tiny-cpu/{version.version}")
    session = ort.InferenceSession(loaded.SerializeToString())
    assert session.run(None, {"x": np.ones((1, 4), np.float32)})[0].tolist() == [[4.0] * 3]

    # the same study again: the same parent run, only the missing trials are new children
    again = make_tracker("mlflow", uri)
    again.start_study(start)
    assert again.logged_trials() == {0, 1, 2, 3}
    again.log_trial(record(4))
    again.close()
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if r.data.tags.get("pruna.run") == "study"]) == 1
    assert len([r for r in runs if r.data.tags.get("pruna.run") == "trial"]) == 5


def test_a_server_that_is_down_never_breaks_the_study(tmp_path, caplog):
    tracker = make_tracker("mlflow", f"http://127.0.0.1:{free_port()}")
    start = time.perf_counter()
    tracker.start_study(StudyRecord(study="s", experiment="e"))
    for n in range(5):
        tracker.log_trial(record(n))
    for n in range(5):  # the end of the study tries the missing trials again
        tracker.log_trial(record(n))
    tracker.close()
    assert time.perf_counter() - start < 60
    warnings = [r for r in caplog.records if "the search goes on" in r.getMessage()]
    assert len(warnings) == 1, "warned once"
    summary = tracker.summary()
    assert "5 trial runs" in summary and "parent run" in summary, "each trial counted once"
    assert "\n" not in summary and len(summary) < 400, summary


def test_bad_tracking_settings(tmp_path):
    base = {"model": {"name": "cnn"}, "data": {"name": "digits"}}
    with pytest.raises(ConfigError, match="tracking.name: 'mlfow' is unknown; did you mean"):
        JobSettings.parse({**base, "tracking": {"name": "mlfow"}})
    with pytest.raises(ConfigError, match="tracking.uri: './mlruns' is not a tracking store"):
        JobSettings.parse({**base, "tracking": {"name": "mlflow", "uri": "./mlruns"}})
    with pytest.raises(ConfigError, match="tracking.uri: the folder of"):
        JobSettings.parse(
            {**base, "tracking": {"name": "mlflow", "uri": f"sqlite:///{tmp_path}/no/m.db"}}
        )
    with pytest.raises(ConfigError, match="tracking.colour: unknown option"):
        JobSettings.parse({**base, "tracking": {"name": "none", "colour": 1}})
    assert JobSettings.parse(base).tracking.name == "none"  # the Python API tracks nothing
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"}) == {"a.b": 1, "a.c": [1, 2], "d": "x"}


# ---- a real study, tracked ----------------------------------------------------------------


def tracked_config(tmp_path, n_trials: int) -> dict:
    return {
        "model": {"name": "resnet20", "pretrained": True},
        "data": {"name": "digits"},
        "target": {"name": "cpu", "warmup": 5, "min_runs": 20, "max_runs": 40, "noise_retries": 0},
        "space": {"ratios": [0.0, 0.5], "tie": "stage", "precision_tie": "model"},
        "objective": {"name": "pareto", "select_max_drop": 0.05},
        "sampler": {"name": "random", "seed": 0},
        "study": {
            "storage": f"sqlite:///{tmp_path}/study.db",
            "n_trials": n_trials,
            "reference_ratios": [0.5],
        },
        "finetune": {"trial_steps": 5, "final_steps": 10, "distill": 0.0},
        "tracking": {"name": "mlflow", "uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }


@pytest.fixture(scope="module")
def tracked_study(tmp_path_factory, resnet20_trained):
    tmp_path = tmp_path_factory.mktemp("tracked")
    result = run_job(tracked_config(tmp_path, 5), tmp_path / "out", overrides=["a=b"])
    return tmp_path, result


def runs_of(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("resnet20-digits")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("pruna.run") == "study"]
    children = [r for r in runs if r.data.tags.get("pruna.run") == "trial"]
    return client, parents, children


@pytest.mark.slow
@pytest.mark.integration
def test_a_study_is_tracked(tracked_study):
    tmp_path, result = tracked_study
    client, parents, children = runs_of(tmp_path)
    study = optuna.load_study(
        study_name=result.study_name, storage=f"sqlite:///{tmp_path}/study.db"
    )
    assert len(parents) == 1
    parent = parents[0]
    tags = parent.data.tags
    assert tags[STUDY_TAG] == result.study_name
    for key in ("pruna.model", "pruna.target", "pruna.objective", "pruna.overrides"):
        assert tags[key], key
    assert tags["pruna.overrides"] == "a=b"
    # who and what made it, as the UI shows them; the experiment opens on its runs table
    assert tags["mlflow.source.name"] == "pruna-search" and tags["mlflow.user"]
    assert children and all(c.data.tags["mlflow.source.name"] == "pruna-search" for c in children)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert VIEW_TAGS.items() <= experiment.tags.items()  # the UI's trials and studies views
    assert tags["pruna.version.onnxruntime"] == ort.__version__
    assert tags["pruna.hardware.cores"].isdigit()
    assert parent.data.params["space.tie"] == "stage"
    assert parent.data.params["finetune.trial_steps"] == "5"
    # one child per trial, with the names of design decision 8
    assert sorted(int(c.data.tags["pruna.trial"]) for c in children) == [
        t.number for t in study.trials
    ]
    for child in children:
        metrics = child.data.metrics
        for name in (
            "accuracy",
            "accuracy_drop",
            "latency_ms",
            "latency_ms_p10",
            "latency_ms_p50",
            "latency_ms_p90",
            "speedup",
            "size_mb",
            "compression",
            "macs",
            "params",
        ):
            assert name in metrics, name
        params = child.data.params
        assert any(p.startswith("prune/") for p in params) and "bits/all" in params
        assert {"mean_ratio", "int8_layers", "int4_layers"} <= set(params)
    # tags match the study: Pareto front = Optuna's best_trials, chosen = the summary's
    pareto = {
        int(c.data.tags["pruna.trial"]) for c in children if c.data.tags[PARETO_TAG] == "true"
    }
    assert pareto == {t.number for t in study.best_trials}
    chosen = [
        int(c.data.tags["pruna.trial"]) for c in children if c.data.tags[CHOSEN_TAG] == "true"
    ]
    assert chosen == [result.summary["chosen_trial"]]
    assert parent.data.metrics["accuracy"] == pytest.approx(result.summary["accuracy"], rel=1e-5)
    # the plans re-ranked after the trials carry both accuracies on their child run
    reranked = {
        int(c.data.tags["pruna.trial"]): c.data.metrics
        for c in children
        if "accuracy_reranked" in c.data.metrics
    }
    assert len(reranked) == result.summary["reranked"] >= 1
    for metrics in reranked.values():
        assert metrics["rerank_steps"] == 10 and "accuracy" in metrics
    # artifacts on the parent; the PNGs decode
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    for name in (
        "pareto.png",
        "history.png",
        "importance.png",
        "layers.png",
        "plots.html",
        "pareto.csv",
        "report.md",
        "plan.yaml",
    ):
        assert name in artifacts, name
    png = client.download_artifacts(parent.info.run_id, "pareto.png", str(tmp_path))
    with Image.open(png) as image:
        image.load()
        assert image.size[0] > 300 and image.size[1] > 200
    # the chosen model is registered and runs in ORT
    import mlflow.onnx

    version = client.search_model_versions("name = 'pruna-resnet20-cpu'")[0]
    assert float(version.tags["speedup"]) == pytest.approx(result.summary["speedup"], rel=1e-4)
    model = mlflow.onnx.load_model(f"models:/pruna-resnet20-cpu/{version.version}")
    session = ort.InferenceSession(model.SerializeToString())
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 10)
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert "tracking_not_logged" not in summary


@pytest.mark.slow
@pytest.mark.integration
def test_a_resumed_study_logs_into_the_same_parent(tracked_study):
    tmp_path, first = tracked_study
    _, _, before = runs_of(tmp_path)
    result = run_job(tracked_config(tmp_path, 7), tmp_path / "out2")
    assert result.study_name == first.study_name
    _, parents, children = runs_of(tmp_path)
    assert len(parents) == 1
    study = optuna.load_study(
        study_name=result.study_name, storage=f"sqlite:///{tmp_path}/study.db"
    )
    assert len(children) == len(study.trials) > len(before)
    numbers = [int(c.data.tags["pruna.trial"]) for c in children]
    assert len(numbers) == len(set(numbers)), "no trial logged twice"
    uid = study.user_attrs["pruna.study_uid"]
    assert parents[0].data.tags["pruna.study_uid"] == uid


def test_a_study_created_again_under_its_name_gets_a_new_parent(tmp_path):
    """A study deleted and created again (same name, new trials) is another MLflow run: its
    trials are never logged into the old study's parent."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = StudyRecord(study="s-1", experiment="exp", uid="aaaa")
    tracker = make_tracker("mlflow", uri)
    tracker.start_study(first)
    tracker.log_trial(record(0))
    tracker.close()
    again = make_tracker("mlflow", uri)
    again.start_study(dataclasses.replace(first, uid="bbbb"))
    assert again.logged_trials() == set(), "a new study starts with no logged trials"
    again.log_trial(record(0))
    again.close()
    same = make_tracker("mlflow", uri)
    same.start_study(first)  # the first study resumed: its own parent, its own trial
    assert same.logged_trials() == {0}
    same.close()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("exp")
    parents = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("pruna.run") == "study"
    ]
    assert sorted(r.data.tags["pruna.study_uid"] for r in parents) == ["aaaa", "bbbb"]


# ---- the MLflow UI in a real browser --------------------------------------------------------

# the README's picture; the test writes its own screenshot in its temporary folder and copies it
# there only when asked (PRUNA_UPDATE_SCREENSHOT=1), so a test run leaves the checkout clean
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "mlflow-ui.png"


def browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("PRUNA_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium / chromedriver missing; .ci/run installs them with apt-get")
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    return chromium, driver


@contextlib.contextmanager
def mlflow_server(uri: str):
    """``pruna-search-ui``'s command on a free port; stopped by its process id."""
    from pruna_search.tracking.ui import ui_command

    port = free_port()
    command, env = ui_command(uri, "127.0.0.1", port)
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, "the MLflow server exited"
            assert time.time() < deadline, "the MLflow server did not start in 90 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def body_text(browser) -> str:
    return browser.find_element("tag name", "body").text


def wait_for(browser, by, selector, seconds: int = 20):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds).until(
        expected_conditions.presence_of_element_located((by, selector))
    )


@pytest.mark.slow
@pytest.mark.browser
def test_the_mlflow_ui_shows_the_trials(tracked_study):
    chromium, driver_path = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    tmp_path, result = tracked_study
    client, parents, children = runs_of(tmp_path)
    experiment = client.get_experiment_by_name("resnet20-digits").experiment_id
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1600,1000",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(arg)
    with mlflow_server(f"sqlite:///{tmp_path}/mlflow.db") as url:
        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            browser.set_page_load_timeout(60)
            # the trials view pruna-search-ui prints, as it opens: no click, no column picked
            browser.get(view_url(url, experiment, TRIALS_VIEW))
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: "trial-" in body_text(b) and "latency_ms_p50" in body_text(b))
            text = body_text(browser)
            assert "Traces\n0" not in text  # the "Model training" mode, not the GenAI one
            for name in ("accuracy", "speedup", "latency_ms_p50", "size_mb"):
                assert name in text, text[:2000]
            listed = re.findall(r"\btrial-(\d+)\b", text)
            assert {c.data.tags["pruna.trial"] for c in children} <= set(listed)  # flat
            by_number = {c.data.tags["pruna.trial"]: c.data.metrics for c in children}
            top = by_number[listed[0]]  # fastest first, with its figures in the row
            assert top["speedup"] == max(m.get("speedup", 0) for m in by_number.values())
            assert f"{top['accuracy']:.6g}" in text and f"{top['speedup']:.6g}" in text
            shot = tmp_path / "mlflow-ui.png"
            assert browser.save_screenshot(str(shot))
        finally:
            browser.quit()
    with Image.open(shot) as image:
        assert image.size[0] >= 1200
    if os.environ.get("PRUNA_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


@pytest.mark.slow
def test_pruna_search_ui_serves_the_store_and_stops_with_its_server(tmp_path):
    ui = Path(sys.executable).parent / "pruna-search-ui"
    missing = subprocess.run([str(ui)], cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: --uri: 'sqlite:///mlflow.db' has no tracked study")
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db")
    tracker.start_study(StudyRecord(study="s", experiment="e"))
    # the study's closing line says where its trials are
    assert tracker.trials_page() == (
        "pruna-search-ui, then http://127.0.0.1:5000/#/experiments/1/runs"
        "?viewStateShareKey=pruna-trials&workflowType=machine_learning"
    )
    # an experiment made before the views gets them; another tool's experiment is not listed
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for key in VIEW_TAGS:
        client.delete_experiment_tag("1", key)
    client.create_experiment("other", tags={"mlflow.experimentKind": "custom_model_development"})
    port = free_port()
    proc = subprocess.Popen(
        [str(ui), "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    banner = proc.stdout.read() if proc.stdout else ""
    assert f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning" in banner
    assert f"trials of e: {view_url(f'http://127.0.0.1:{port}', '1', TRIALS_VIEW)}" in banner
    assert "of other:" not in banner
    assert VIEW_TAGS.items() <= client.get_experiment("1").tags.items()
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_rerun_shipping_the_same_model_registers_no_new_version(tmp_path):
    """The same best.onnx is registered once (the champion alias stays on it); another file
    becomes the next version and takes the alias."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    model = tiny_onnx(tmp_path / "best.onnx")

    def ship(study: str) -> None:
        tracker = make_tracker("mlflow", uri)
        tracker.start_study(StudyRecord(study=study, experiment="exp"))
        end = StudyEnd(
            pareto=[], chosen=0, metrics={}, artifacts=[], model=model, model_name="pruna-x"
        )
        tracker.end_study(end)
        tracker.close()
        assert tracker.summary() is None, tracker.summary()

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the registry of earlier tests
    ship("s")
    ship("s")  # the same study run again, the same file
    assert [str(v.version) for v in client.search_model_versions("name = 'pruna-x'")] == ["1"]
    assert str(client.get_model_version_by_alias("pruna-x", "champion").version) == "1"
    data = onnx.load(str(model))
    data.graph.initializer[0].float_data[:] = [2.0] * 12
    onnx.save(data, model)
    ship("s")
    assert str(client.get_model_version_by_alias("pruna-x", "champion").version) == "2"
