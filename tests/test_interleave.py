"""The latency window as the device sees it: block interleaving (warm caches), windows that scale
with the models' speed, and flags on the ranked speedup rather than on the host's drift.
Real ONNX Runtime sessions throughout; slowdowns are planted by delaying a real session's runs."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_models import small_and_big
from torch import nn

from pruna_search.core import runtime
from pruna_search.core.target import CPU
from pruna_search.core.timing import TimingSettings
from pruna_search.export import export_onnx
from pruna_search.measure import latency
from pruna_search.measure.latency import LatencyComparison, ratio_risk
from pruna_search.measure.timing import measure, measure_sessions

X = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """ResNet-20 (~1 MB of weights), a tiny CNN, and a model with 64 MB of weights that
    pushes them out of the caches on every run (all on 1x32x32 inputs)."""
    folder = tmp_path_factory.mktemp("interleave")
    small, resnet = small_and_big(folder)
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1024, 16384)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((16384, 10)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([-1, 1024], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w1"], ["h"]),
            helper.make_node("MatMul", ["h", "w2"], ["logits"]),
        ],
        "wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        inits,
    )
    wide = folder / "wide.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), wide)
    return {"resnet": resnet, "small": small, "wide": wide}


def test_block_interleaving_agrees_with_the_model_timed_alone(models):
    """Run by run, every ResNet-20 run follows a run that streamed 64 MB of other weights
    through the caches (measured here: 0.714 ms alone, 0.854 ms run by run); in blocks its
    runs find their own weights warm, as on a device running it on a stream of inputs."""
    alone = measure([models["resnet"]], TimingSettings(), X)["models"][0]["p10"]
    by_mode = {}
    for mode in ("block", "run"):
        reply = measure([models["resnet"], models["wide"]], TimingSettings(interleave=mode), X)
        assert reply["interleave"] == mode
        by_mode[mode] = reply["models"][0]["p10"]
    off = {mode: abs(p10 / alone - 1) for mode, p10 in by_mode.items()}
    assert off["block"] < off["run"], (alone, by_mode)
    assert off["block"] < 0.05, (alone, by_mode)


def test_block_length_and_runs_follow_the_models_speed(models):
    """A fast model gets blocks of 20 runs and the full min_runs; a block of a model lasts
    about 100 ms, at least 2 runs."""
    reply = measure([models["resnet"], models["small"]], TimingSettings(), X)
    scaled = reply["scaled"]
    assert scaled["block"] == [20, 20] and scaled["min_runs"] == 100
    assert scaled["budget"] == pytest.approx(10.0)
    assert min(m["runs"] for m in reply["models"]) >= 100


def _slow_net(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, 10),
    ).eval()


@pytest.mark.slow
def test_a_slow_model_settles(tmp_path):
    """Convolutions at 224x224 made slow on purpose (~40-70 ms a run here): the window needs
    fewer runs of them, allows itself more time, and settles within the time it allows."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    dense = export_onnx(_slow_net(64), x, tmp_path / "slow64.onnx")
    pruned = export_onnx(_slow_net(48), x, tmp_path / "slow48.onnx")
    start = time.perf_counter()
    reply = measure([dense, pruned], TimingSettings(), x[:1].numpy())
    seconds = time.perf_counter() - start
    scaled = reply["scaled"]
    assert reply["converged"] and reply["stopped_by"] == "ci", reply["attempts"]
    assert 40 <= scaled["min_runs"] < 100 and scaled["block"][0] >= 2
    assert reply["window_s"] <= scaled["budget"] <= 60
    assert seconds < 60 and reply["models"][1]["p10"] < reply["models"][0]["p10"]


class Delayed:
    """A real ONNX Runtime session whose runs take ``factor`` times as long from its
    ``after``-th run on (the extra time is spun, not slept, to be exact at a millisecond)."""

    def __init__(self, session, factor: float, after: int = 0) -> None:
        self.session = session
        self.factor = factor
        self.after = after
        self.calls = 0

    def run(self, *args):
        start = time.perf_counter()
        out = self.session.run(*args)
        self.calls += 1
        if self.calls > self.after:
            until = start + (time.perf_counter() - start) * self.factor
            while time.perf_counter() < until:
                pass
        return out

    def get_providers(self):
        return self.session.get_providers()


# fixed windows: 20 rounds of 20-run blocks (both models run ~0.03-0.7 ms), never converged
# early, so the halves are 10 rounds each; warm-up 5 runs, then 21 calls a round
FIXED = TimingSettings(warmup=5, min_runs=400, max_runs=400, time_budget_s=60.0)
HALF_WAY = 5 + 10 * 21
TARGET = dataclasses.replace(CPU, max_other_load=1e9)


def _window(models, settings, dense_factor=1.0, candidate_factor=1.0, after=0):
    sessions = [
        Delayed(runtime.session(str(models["resnet"])), dense_factor, after),
        Delayed(runtime.session(str(models["small"])), candidate_factor, after),
    ]
    feeds = [{"input": X}, {"input": X}]
    return LatencyComparison.from_reply(measure_sessions(sessions, feeds, settings), "local")


def test_a_host_wide_slowdown_is_drift_not_a_flag(models):
    """Both models 30 % slower for the whole window (a host slower than when its floor was
    measured): the speedup holds, so nothing is flagged; the drift is reported."""
    steady = _window(models, FIXED)
    slow = _window(models, FIXED, dense_factor=1.3, candidate_factor=1.3, after=5)
    floor = steady.baseline.p10
    assert slow.baseline.p10 > 1.2 * floor
    assert slow.speedup == pytest.approx(steady.speedup, rel=0.1)
    assert ratio_risk(slow, [floor], TARGET) == ""
    drift = latency._drift_text(slow, floor, TARGET, "measured before")
    assert drift.startswith("host ") and "slower than the dense floor" in drift


def test_a_slowdown_of_the_candidate_only_is_flagged(models):
    """The candidate 30 % slower in the second half of the window only, and not the dense
    model: its speedup moved between the halves, so the figure is at risk. (The quiet-round
    filter would drop those rounds; it is off here so that the halves are what sees it.)"""
    settings = dataclasses.replace(FIXED, quiet_tolerance=None)
    hit = _window(models, settings, candidate_factor=1.3, after=HALF_WAY)
    assert hit.ratio_moved is not None and hit.ratio_moved > 0.15
    assert "moved" in ratio_risk(hit, [None], TARGET)
    steady = _window(models, settings)
    assert steady.ratio_moved is not None and steady.ratio_moved <= steady.ratio_allowed
    assert ratio_risk(steady, [None], TARGET) == ""


def test_another_provider_than_asked_is_flagged(models):
    window = _window(models, FIXED)
    moved = dataclasses.replace(window, providers=("CPUExecutionProvider", "Other"))
    cuda = dataclasses.replace(TARGET, provider="cuda")
    assert "ran a model on CPUExecutionProvider, not CUDAExecutionProvider" in ratio_risk(
        window, [None], cuda
    )
    assert "ran a model on Other" in ratio_risk(moved, [None], TARGET)
