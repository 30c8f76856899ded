"""The device agent on loopback: a real ``pruna-search-agent`` process, real HTTP, real ORT."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_models import failing_model, hanging_model, small_and_big

from pruna_search import MeasurementError, TargetError
from pruna_search.core import hardware
from pruna_search.core.target import CPU
from pruna_search.measure import (
    AgentClient,
    LocalRunner,
    Measurer,
    RemoteRunner,
    compare_latency,
    floors,
)
from pruna_search.measure.remote import _multipart

ROOT = Path(__file__).resolve().parents[1]
AGENT = str(Path(sys.executable).with_name("pruna-search-agent"))
TOKEN = "test-token-7f3a"
QUICK = {"warmup": 2, "min_runs": 10, "max_runs": 20, "time_budget_s": 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp: Path, *args: str, token: str | None = TOKEN):
    """The agent with its cwd and TMPDIR in ``tmp`` (to see what it writes)."""
    port = free_port()
    (tmp / "cwd").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp / "tmp"))
    env.pop("PRUNA_AGENT_TOKEN", None)
    if token:
        env["PRUNA_AGENT_TOKEN"] = token
    proc = subprocess.Popen(
        [AGENT, "--port", str(port), *args],
        cwd=tmp / "cwd",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # 401: it answers
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read()) from None
            time.sleep(0.05)
    return proc, url


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


def post(url: str, files: dict[str, Path], settings: dict | None = None, token=TOKEN):
    body, kind = _multipart({"settings": json.dumps(settings or QUICK)}, files)
    headers = {"Content-Type": kind}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/measure", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agent_models")
    small, big = small_and_big(folder)
    return {
        "small": small,
        "big": big,
        "hang": hanging_model(folder / "hang.onnx"),
        "fails": failing_model(folder / "fails.onnx"),
    }


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    proc, url = start_agent(tmp, "--max-model-mb", "2", "--timeout-s", "5", "--max-input-mb", "50")
    yield url, tmp
    stop(proc)


def test_health_needs_the_token(agent):
    url, _ = agent
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/health", timeout=5)
    assert info.value.code == 401
    bad = AgentClient(url, "wrong", retries=1)
    with pytest.raises(TargetError, match="refused the token"):
        bad.health()
    health = AgentClient(url, TOKEN).health()
    assert health["status"] == "ok"
    # the search without its token: the line names the variable to set
    import dataclasses

    unset = dataclasses.replace(CPU, runner="remote", url=url, token_env="PRUNA_TEST_UNSET_TOKEN")
    with pytest.raises(TargetError, match="PRUNA_TEST_UNSET_TOKEN is not set") as info:
        RemoteRunner(unset)
    assert str(info.value).startswith("target.token_env: ")
    assert "CPUExecutionProvider" in health["providers"]
    assert health["fingerprint"]["cores"] >= 1 and health["fingerprint"]["onnxruntime"]


def test_real_measurement_with_baseline(agent, onnx_files):
    url, _ = agent
    status, reply = post(url, {"model": onnx_files["small"], "baseline": onnx_files["big"]})
    assert status == 200, reply
    assert (
        10 <= reply["model"]["runs"] <= 20 and reply["baseline"]["runs"] == reply["model"]["runs"]
    )
    assert reply["model"]["p10"] <= reply["model"]["p50"] <= reply["model"]["p90"]
    assert reply["speedup"] > 1.5
    assert reply["input_shape"] == [1, 1, 32, 32]
    assert reply["fingerprint"]["threads"] == 1
    assert reply["reference"] is None
    # the same fields as before, plus how the models took turns and the window's halves
    assert reply["interleave"] == "block" and len(reply["halves"]) == 2
    assert reply["providers"] == ["CPUExecutionProvider"] * 2
    status, reply = post(
        url,
        {"model": onnx_files["small"], "baseline": onnx_files["big"]},
        settings={**QUICK, "interleave": "run"},
    )
    assert status == 200 and reply["interleave"] == "run", reply
    status, _ = post(url, {"model": onnx_files["small"]}, token=None)
    assert status == 401
    status, reply = post(url, {"model": onnx_files["small"], "reference": onnx_files["big"]})
    assert status == 400 and "reference: sent without a baseline" in reply["detail"]


def test_bad_files_are_refused_with_a_reason(agent, onnx_files, tmp_path):
    url, _ = agent
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(Path(onnx_files["big"]).read_bytes()[:40000])
    oversized = tmp_path / "big.onnx"  # 3.3 MB > the 2 MB limit: refused after the upload
    oversized.write_bytes(Path(onnx_files["big"]).read_bytes() * 3)
    huge = tmp_path / "huge.onnx"  # 5.5 MB: refused from its Content-Length, never stored
    huge.write_bytes(Path(onnx_files["big"]).read_bytes() * 5)
    cases = [
        (garbage, 400, "not an ONNX model"),
        (truncated, 400, "not an ONNX model"),
        (onnx_files["fails"], 422, "fails at run time"),
        (onnx_files["hang"], 422, "did not finish within 5 s"),
        (oversized, 413, "model: 3.3 MB is over this agent's limit of 2.0 MB"),
        (huge, 413, "over this agent's limit of 2.0 MB"),
    ]
    for path, code, reason in cases:
        status, reply = post(url, {"model": path})
        assert status == code and reason in reply["detail"], (path.name, status, reply)
    status, reply = post(url, {"model": onnx_files["small"]}, settings={"bogus": 1})
    assert status == 400 and "bogus: unknown setting" in reply["detail"]
    # settings the protocol or this ONNX Runtime cannot honour: 400 naming the setting
    for bad, reason in (
        ({"graph_optimization": "max"}, "graph_optimization: 'max' is unknown; use one of"),
        ({"provider": "cuda"}, "provider: 'cuda' is not in this ONNX Runtime"),
    ):
        status, reply = post(url, {"model": onnx_files["small"]}, settings={**QUICK, **bad})
        assert status == 400 and reason in reply["detail"], (bad, status, reply)
    # what would hold the one measurement slot for hours: 400 naming the setting and limit
    for bad, reason in (
        ({"warmup": 10**9}, "settings.warmup: 1000000000 is over this agent's limit of 10000"),
        ({"batch_size": 100000}, "settings.batch_size: 100000 is over this agent's limit"),
        ({"time_budget_s": 1e9}, "settings.time_budget_s: 1000000000.0 is over this agent's"),
    ):
        status, reply = post(url, {"model": onnx_files["small"]}, settings={**QUICK, **bad})
        assert status == 400 and reply["detail"].startswith(reason), (bad, status, reply)
    # the scheme is case-insensitive (RFC 7235): a lower-case bearer is accepted
    body, kind = _multipart({"settings": json.dumps(QUICK)}, {"model": onnx_files["small"]})
    request = urllib.request.Request(
        url + "/measure",
        data=body,
        headers={"Content-Type": kind, "Authorization": f"bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    # it still measures afterwards
    assert post(url, {"model": onnx_files["small"]})[0] == 200


def test_concurrent_clients_are_served_one_at_a_time(agent, onnx_files):
    url, tmp = agent

    def client(i: int) -> list[dict]:
        return [post(url, {"model": onnx_files["small"]})[1] for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        replies = [r for batch in pool.map(client, range(8)) for r in batch]
    assert len(replies) == 80 and all("model" in r for r in replies)
    windows = sorted((r["started"], r["finished"]) for r in replies)
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start >= end  # never two measurements at once
    assert max(r["queued_s"] for r in replies) > 0
    # nothing written outside the agent's own temporary folder
    assert list((tmp / "cwd").iterdir()) == []
    folders = list((tmp / "tmp").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("pruna-agent-")
    assert list(folders[0].iterdir()) == []  # uploads are deleted after their measurement


def test_agent_refuses_unsafe_or_bad_options(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PRUNA_AGENT_TOKEN"}
    run = subprocess.run(
        [AGENT, "--host", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: --host 0.0.0.0: refusing to listen beyond")
    assert len(run.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [AGENT, "--port", str(port)], capture_output=True, text=True, env=env, timeout=60
        )
    assert run.returncode == 2 and f"--port {port}: cannot listen" in run.stderr


def test_the_banner_brackets_an_ipv6_host():
    from pruna_search.core.hosts import url_host

    assert (url_host("::1"), url_host("127.0.0.1"), url_host("[::1]")) == (
        "[::1]",
        "127.0.0.1",
        "[::1]",
    )


def test_agent_imports_no_torch():
    """What the agent loads: onnxruntime, numpy and the web library, never the search's."""
    code = (
        "import sys\n"
        "for name in ('torch', 'torch_pruning', 'optuna', 'mlflow', 'hydra', 'onnx', 'yaml'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "import pruna_search.agent, pruna_search.agent.cli, pruna_search.measure._worker\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_remote_runner_measures_through_the_agent(agent, onnx_files):
    url, _ = agent
    import dataclasses

    target = dataclasses.replace(
        CPU, runner="remote", url=url, warmup=2, min_runs=10, max_runs=20, noise_retries=0
    )
    os.environ["PRUNA_AGENT_TOKEN"] = TOKEN
    try:
        runner = RemoteRunner(target)
        result = compare_latency(
            onnx_files["small"],
            onnx_files["big"],
            np.zeros((1, 1, 32, 32), np.float32),
            target,
            reference=onnx_files["big"],  # a probe timed in the same window
            measurer=Measurer(runner=runner),
        )
    finally:
        os.environ.pop("PRUNA_AGENT_TOKEN")
    assert result.runner == f"remote {url}" and result.speedup > 1.5
    assert result.fingerprint["cores"] >= 1
    assert result.reference is not None and result.reference.runs == result.candidate.runs
    # the probe is the big model again: within 30 % of the baseline timed alternately with it
    assert abs(result.reference.p10 / result.baseline.p10 - 1) < 0.3
    # a loopback agent is this machine: its floors are the local runner's (not keyed by URL)
    local = dataclasses.replace(target, runner="local", url=None)
    shape = (1, 1, 32, 32)
    assert floors.floor_settings(target, runner, shape) == floors.floor_settings(
        local, LocalRunner(local), shape
    )
    assert result.fingerprint["host"] == hardware.fingerprint()["host"]


def test_remote_runner_down_is_one_clear_error():
    import dataclasses

    url = f"http://127.0.0.1:{free_port()}"
    target = dataclasses.replace(CPU, runner="remote", url=url, retries=2)
    start = time.perf_counter()
    with pytest.raises(TargetError, match=f"the agent at {url} is not answering") as info:
        RemoteRunner(target)
    assert "after 2 tries" in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - start < 10
    client = AgentClient(url, None, retries=2)
    client.backoff_s = 0.1
    with pytest.raises(MeasurementError, match="not answering"):
        client.measure([Path(__file__)], {}, timeout_s=5)


def declared_input_model(path: Path, shape: list) -> Path:
    """A tiny ONNX file (one Identity) whose input ``x`` declares ``shape``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "declared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_huge_declared_input_is_refused_before_it_is_made(agent, onnx_files, tmp_path):
    url, _ = agent  # started with --max-input-mb 50
    fix = (
        "export the model with a smaller fixed input size or use a smaller batch_size, or "
        "start the agent with a larger --max-input-mb"
    )
    # a dynamic batch axis counts as the batch size asked for: 4.2 MB at 1, 67.1 MB at 16
    dynamic = declared_input_model(tmp_path / "dynamic.onnx", ["n", 1, 1024, 1024])
    status, reply = post(url, {"model": dynamic}, settings={**QUICK, "batch_size": 16})
    assert status == 413, reply
    assert reply["detail"] == (
        "model: input 'x' of model has shape [16, 1, 1024, 1024] (batch 16): 67.1 MB of "
        f"float32, over the limit of 50.0 MB per input; {fix}"
    )
    status, reply = post(url, {"model": dynamic})
    assert status == 200 and reply["input_shape"] == [1, 1, 1024, 1024], reply
    # ~100 bytes declaring 1.6 GB per batch item: refused from the shape, named by its field
    huge = declared_input_model(tmp_path / "huge.onnx", [1, 1, 20000, 20000])
    assert huge.stat().st_size < 200
    start = time.perf_counter()
    status, reply = post(url, {"model": onnx_files["small"], "baseline": huge})
    assert status == 413, reply
    assert reply["detail"] == (
        "baseline: input 'x' of baseline has shape [1, 1, 20000, 20000] (batch 1): 1600.0 MB "
        f"of float32, over the limit of 50.0 MB per input; {fix}"
    )
    assert time.perf_counter() - start < 5  # nothing was allocated, nothing timed
    health = AgentClient(url, TOKEN).health()
    assert health["max_input_mb"] == 50.0
    assert post(url, {"model": onnx_files["small"]})[0] == 200
    # without the option: 512 MB per input
    from pruna_search.agent.app import MAX_INPUT_BYTES, AgentConfig
    from pruna_search.agent.cli import parse

    assert parse([]).max_input_mb * 1e6 == MAX_INPUT_BYTES == 512_000_000
    assert AgentConfig(workdir=tmp_path).max_input_bytes == MAX_INPUT_BYTES


def test_errors_name_the_upload_not_the_agents_paths(agent, onnx_files, tmp_path):
    url, tmp = agent
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(1).bytes(5000))
    for files, field in (
        ({"model": garbage}, "model"),
        ({"model": onnx_files["small"], "baseline": garbage}, "baseline"),
        (
            {"model": onnx_files["small"], "baseline": onnx_files["big"], "reference": garbage},
            "reference",
        ),
    ):
        status, reply = post(url, files)
        detail = reply["detail"]
        assert status == 400 and detail.startswith(f"{field}: not an ONNX model"), reply
        assert f"from {field} failed" in detail, detail  # ONNX Runtime's "Load model from ..."
        for leak in (str(tmp), "pruna-agent-", "request-", ".onnx", "/"):
            assert leak not in detail, (leak, detail)
    # one place scrubs every reply: an upload's path becomes its field, any other path in the
    # agent's folder is named as such (POSIX and Windows separators)
    from pruna_search.agent.app import AgentConfig, scrub

    config = AgentConfig(workdir=Path("/tmp/pruna-agent-x1"))
    text = (
        "Load model from /tmp/pruna-agent-x1/request-7/baseline.onnx failed; "
        "/tmp/pruna-agent-x1/request-7\\reference.onnx; (/tmp/pruna-agent-x1/tmpab/in.npy)"
    )
    assert scrub(text, config) == (
        "Load model from baseline failed; reference; (the agent's temporary folder)"
    )


def test_request_validation_errors_are_one_line(agent, onnx_files):
    url, _ = agent
    fix = (
        "send the ONNX files as multipart/form-data file fields model (and optional baseline, "
        "reference) and the settings JSON as the text field settings"
    )

    def send(body: bytes, kind: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            url + "/measure",
            data=body,
            headers={"Content-Type": kind, "Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    # no model field
    status, reply = send(*_multipart({"settings": json.dumps(QUICK)}, {}))
    assert (status, reply) == (422, {"detail": f"model: field required; {fix}"})
    # the model as a text field instead of a file
    status, reply = send(*_multipart({"model": "not a file"}, {}))
    assert status == 422 and isinstance(reply["detail"], str), reply
    assert reply["detail"].startswith("model: ") and reply["detail"].endswith(fix)
    # not multipart at all
    status, reply = send(b'{"model": 1}', "application/json")
    assert status == 422 and reply["detail"] == f"model: field required; {fix}", reply
    assert "\n" not in reply["detail"]
    # it still measures afterwards
    assert post(url, {"model": onnx_files["small"]})[0] == 200
