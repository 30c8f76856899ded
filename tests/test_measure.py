"""Latency (separate process, alternating with the baseline, adaptive runs, noise gate), its
SQLite cache, failures of hanging / crashing / broken models, and ORT accuracy."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_models import failing_model, hanging_model, small_and_big

from pruna_search import MeasurementError, TargetError
from pruna_search.core import hardware
from pruna_search.core.target import CPU, Target
from pruna_search.core.timing import ModelRunError
from pruna_search.measure import (
    Floors,
    LatencyCache,
    Measurer,
    compare_latency,
    floors,
    onnx_accuracy,
)
from pruna_search.measure.timing import p10_confidence, quiet_rounds

QUICK = dataclasses.replace(CPU, warmup=5, min_runs=20, max_runs=40, noise_retries=0)
X = np.zeros((1, 1, 32, 32), np.float32)
# windows that converge (so the baseline-drift check judges them), one retry, the other-load
# gate off (a busy CI host would measure again for another reason)
DRIFT_CHECK = dataclasses.replace(
    QUICK, max_runs=5000, ci_tolerance=0.05, noise_retries=1, noise_wait_s=0.1, max_other_load=1e9
)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    return small_and_big(tmp_path_factory.mktemp("lat"))


def test_alternating_measurement_ranks_models(two_models):
    small, big = two_models
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    result = compare_latency(small, big, x, QUICK)
    assert result.candidate.runs == result.baseline.runs
    assert 20 <= result.candidate.runs <= 40
    assert result.candidate.p10 <= result.candidate.p50 <= result.candidate.p90
    assert result.candidate.iqr >= 0
    assert result.speedup > 1.5  # a quarter-width CNN against a ResNet-20
    assert result.other_load is None or result.other_load >= 0
    for key in ("cpu", "cores", "onnxruntime", "providers", "threads", "provider", "batch"):
        assert key in result.fingerprint
    assert result.fingerprint["threads"] == 1 and result.fingerprint["batch"] == 1


def test_runs_until_the_p10_is_known(two_models):
    """Adaptive protocol: a tight tolerance needs more runs than a loose one, within bounds."""
    small, big = two_models
    # a window the host's slow phase keeps from settling in time is measured again
    loose = dataclasses.replace(QUICK, max_runs=5000, noise_retries=2, noise_wait_s=0.5)
    loose = compare_latency(small, big, X, loose)
    assert loose.converged and loose.candidate.ci <= QUICK.ci_tolerance
    tight = dataclasses.replace(QUICK, ci_tolerance=0.0, max_runs=200, time_budget_s=30)
    capped = compare_latency(small, big, X, tight)
    # max_runs bounds all timed runs; the figures use the quiet rounds' (20 runs each)
    assert not capped.converged and capped.rounds * 20 == 200
    assert capped.candidate.runs == 20 * capped.quiet_rounds > 0
    # stopping at max_runs is the protocol's choice: not a disturbance, not flagged for it (a
    # slow phase of a loaded host may still flag it against the dense floor: another reason)
    assert capped.stopped_by == "max_runs" and not capped.unsettled
    assert "never settled" not in capped.noise
    # running out of time unsettled is: measured again (noise_retries), then flagged noisy
    budget = dataclasses.replace(
        tight, max_runs=10**6, time_budget_s=0.3, noise_retries=1, noise_wait_s=0.1
    )
    timed = compare_latency(small, big, X, budget)
    assert not timed.converged and 0.3 <= timed.window_s < 2.0
    assert timed.stopped_by == "time_budget" and timed.attempts == 2
    assert timed.noisy and "never settled within ±0 % in the window's time budget" in timed.noise


def test_quiet_rounds_leave_out_slow_phases():
    """A round is kept when every model's median is within the tolerance of its best round:
    the slow phase measured on this VM (int8 +40 %, fp32 +10 %) is left out."""
    medians = np.array(
        [[0.330, 0.716], [0.332, 0.721], [0.466, 0.787], [0.331, 0.760], [0.340, 0.730]]
    )
    assert quiet_rounds(medians, 0.05).tolist() == [True, True, False, False, True]
    assert quiet_rounds(medians, 0.01).tolist() == [True, True, False, False, False]
    # one lucky round does not set the level: the 10th percentile of 20 rounds does
    lucky = np.vstack([[[0.300, 0.650]], np.tile([[0.330, 0.716]], (19, 1))])
    assert quiet_rounds(lucky, 0.05).sum() == 20
    assert quiet_rounds(medians, None).all()
    # two models slowed in turn: no round has both at their level, the quietest are kept
    turns = np.array([[0.33, 0.80], [0.40, 0.72], [0.34, 0.79], [0.41, 0.73], [0.36, 0.76]])
    assert quiet_rounds(turns, 0.05).tolist() == [True, False, True, False, True]
    assert quiet_rounds(turns, 0.01).tolist() == [False, False, False, False, True]


def test_a_host_slower_than_its_floor_is_drift_not_a_flag(two_models, tmp_path):
    """A window whose dense p10 stays above the lowest seen before (the whole host slower for
    longer than the window) moves both models alike: the drift is reported, the figure is not
    flagged, not measured again, and cached."""
    small, big = two_models
    target = DRIFT_CHECK
    cache = LatencyCache(tmp_path / "latency.sqlite")
    lows = Floors()  # this test's own floors: none from the other tests
    first = compare_latency(
        small, big, X, dataclasses.replace(target, cache=False), measurer=Measurer(floors=lows)
    )
    assert first.attempts == 1 and first.converged and not first.drift
    assert lows.seen, "the first window sets the floor"
    for key in lows.seen:  # as if an earlier window had seen the dense model twice as fast
        lows.seen[key] = first.baseline.p10 / 2
    slow = compare_latency(small, big, X, target, measurer=Measurer(cache=cache, floors=lows))
    assert not slow.noisy and slow.attempts == 1, slow.noise
    assert "slower than the dense floor" in slow.drift and "measured before" in slow.drift
    assert len(cache) == 1
    off = compare_latency(
        small,
        big,
        X,
        dataclasses.replace(target, max_baseline_drift=None, cache=False),
        measurer=Measurer(floors=lows),
    )
    assert not off.noisy and not off.drift


def test_int8_probe_slower_against_fp32_than_its_floor_is_flagged(two_models):
    """A slow phase that slows one kind of kernel and not the dense model's would understate
    the candidate's speedup: the reference (the search's dense int8 model) is timed in the same
    window and its time relative to the baseline held to a floor of its own."""
    small, big = two_models
    target = dataclasses.replace(DRIFT_CHECK, cache=False)
    lows = Floors()
    held = Measurer(floors=lows)
    first = compare_latency(small, big, X, target, reference=big, measurer=held)
    assert first.converged and not first.noisy, first.noise
    assert first.reference is not None and first.reference.runs == first.candidate.runs
    keys = sorted(lows.seen)
    assert len(keys) == 2, "the baseline and the reference keep a floor each"
    (ref_key,) = [k for k in keys if k.startswith('["reference-ratio"')]
    # the reference is the baseline's own file: relative to the baseline it runs at ~1
    assert lows.seen[ref_key] == pytest.approx(1.0, abs=0.1)
    # the candidate as its own reference: timed once, not twice
    assert compare_latency(small, big, X, target, reference=small, measurer=held).reference is None
    # as if an earlier window had seen the reference twice as fast against the baseline
    lows.seen[ref_key] = 0.5
    slow = compare_latency(small, big, X, target, reference=big, measurer=held)
    assert slow.noisy and slow.attempts == 2
    assert slow.noise.startswith("int8 kernels ran") and "slow phase" in slow.noise
    assert not compare_latency(small, big, X, target, measurer=held).noisy, (
        "without it: not flagged"
    )


def test_floor_outlives_the_process_that_measured_it(two_models, tmp_path):
    """Floors are kept in the latency cache's file (whatever target.cache): a new process that
    starts in a slow phase reports its drift against the p10 an earlier one measured, for
    floor_max_age_h."""
    small, big = two_models
    target = dataclasses.replace(DRIFT_CHECK, cache=False)
    cache = LatencyCache(tmp_path / "latency.sqlite")
    lows = Floors.of(target, cache)
    first = compare_latency(small, big, X, target, measurer=Measurer(cache=cache, floors=lows))
    assert first.converged and not first.noisy, first.noise
    (key,) = lows.seen
    assert cache.floor(key, 3600) == pytest.approx(first.baseline.p10)
    found = floors.stored_floor(big, X, target, cache)  # what a search logs at its start
    assert found is not None and found[0] == pytest.approx(first.baseline.p10)
    per_process = dataclasses.replace(target, floor_max_age_h=None)
    assert floors.stored_floor(big, X, per_process, cache) is None
    assert len(cache) == 0, "figures are not cached with target.cache false"
    # a new process (fresh floors: none of its own); an earlier one had seen the dense model
    # twice as fast
    cache.add_floor(key, first.baseline.p10 / 2, max_age_s=3600)
    slow = compare_latency(small, big, X, target, measurer=Measurer(cache=cache))
    assert not slow.noisy and "measured 0.0 h ago" in slow.drift
    # floors only in the process: the stored one is not read
    assert not compare_latency(small, big, X, per_process, measurer=Measurer(cache=cache)).drift
    # a floor older than floor_max_age_h no longer holds
    stale = LatencyCache(tmp_path / "stale.sqlite")
    stale.add_floor(key, first.baseline.p10 / 2, max_age_s=1e9, measured=time.time() - 25 * 3600)
    assert stale.floor(key, 24 * 3600) is None and stale.floor(key, 26 * 3600) is not None
    assert not compare_latency(small, big, X, target, measurer=Measurer(cache=stale)).drift
    stale.clear_floors()
    assert stale.floor(key, 1e9) is None


def test_p10_confidence_narrows_with_runs():
    rng = np.random.default_rng(0)
    few = p10_confidence(np.sort(rng.gamma(4, 0.1, 50) + 1))
    many = p10_confidence(np.sort(rng.gamma(4, 0.1, 5000) + 1))
    assert 0 < many < few < 0.2
    assert p10_confidence(np.sort(rng.gamma(4, 0.1, 5))) == float("inf")


def test_cache_hits_on_same_content(two_models, tmp_path):
    small, big = two_models
    cache = LatencyCache(tmp_path / "latency.sqlite")
    # the noise gates off: a flagged figure is not cached, and on a busy CI host the 60-run
    # window below once drifted past the dense floor an earlier test had set
    quick = dataclasses.replace(QUICK, max_baseline_drift=None, max_other_load=1e9)
    first = compare_latency(small, big, X, quick, measurer=Measurer(cache=cache))
    second = compare_latency(small, big, X, quick, measurer=Measurer(cache=cache))
    assert not first.cached and second.cached
    assert second.candidate == first.candidate and second.fingerprint == first.fingerprint
    # a copy of the file is the same content: a hit
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(Path(small).read_bytes())
    assert compare_latency(copy, big, X, quick, measurer=Measurer(cache=cache)).cached
    # other settings that change the figure, or caching off: measured
    cached = Measurer(cache=cache)
    other = compare_latency(
        small, big, X, dataclasses.replace(quick, intra_op_threads=2), measurer=cached
    )
    assert not other.cached and other.fingerprint["threads"] == 2
    # a longer protocol is not answered by a short one's figure
    longer = compare_latency(
        small, big, X, dataclasses.replace(quick, max_runs=60), measurer=Measurer(cache=cache)
    )
    assert not longer.cached and longer.candidate.runs <= 60
    off = compare_latency(
        small, big, X, dataclasses.replace(quick, cache=False), measurer=Measurer(cache=cache)
    )
    assert not off.cached
    assert len(cache) == 3


def test_noise_gate_measures_again_and_reports_the_load(two_models, tmp_path):
    """Two busy processes on the machine: the window is measured again, the load is reported
    as drift, and a figure is cached only when its speedup was not at risk."""
    small, big = two_models
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        time.sleep(0.5)
        gate = dataclasses.replace(QUICK, noise_retries=1, noise_wait_s=0.2, max_other_load=0.3)
        gate = dataclasses.replace(gate, max_baseline_drift=None)  # the other-load gate alone
        cache = LatencyCache(tmp_path / "latency.sqlite")
        result = compare_latency(small, big, X, gate, measurer=Measurer(cache=cache))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert result.attempts == 2 and result.other_load > 0.3
    assert "other work used" in result.drift
    assert len(cache) == (0 if result.noisy else 1)


class FakeRunner:
    """A runner whose every window reports ``other_load`` cores of other work and a speedup of
    2 that the halves do not question."""

    name = "local"

    def __init__(self, other_load: float) -> None:
        self.other_load = other_load
        self.windows = 0

    def identity(self) -> dict:
        return {"runner": "fake"}

    def fingerprint(self) -> dict:
        return {"cpu": "fake", "host": "fake", "cores": 2, "onnxruntime": "0"}

    def measure(self, models, x) -> dict:
        self.windows += 1
        dense = {"p10": 1.0, "p50": 1.0, "p90": 1.0, "iqr": 0.0, "runs": 100, "ci": 0.01}
        return {
            "models": [dense, dict(dense, p10=0.5)],
            "other_load": self.other_load,
            "converged": True,
            "stopped_by": "ci",
            "attempts": [{"other_load": self.other_load}],
            "providers": ["CPUExecutionProvider"] * 2,
        }


def test_one_retry_loop_bounds_the_windows(two_models):
    """The noise gate is one loop: a host busy in every window costs ``noise_retries + 1``
    windows in all (not one loop in the worker inside another in the caller), reported as drift
    and not flagged; a quiet host costs one."""
    target = dataclasses.replace(QUICK, noise_retries=2, noise_wait_s=0.0, cache=False)
    busy = FakeRunner(other_load=3.0)
    result = compare_latency(*two_models, X, target, measurer=Measurer(runner=busy))
    assert busy.windows == 3 and result.attempts == 3
    assert not result.noisy and "other work used 3.00 cores" in result.drift
    quiet = FakeRunner(other_load=0.0)
    result = compare_latency(*two_models, X, target, measurer=Measurer(runner=quiet))
    assert quiet.windows == 1 and result.attempts == 1 and not result.drift


def test_hanging_model_times_out(tmp_path, two_models):
    hang = hanging_model(tmp_path / "hang.onnx")
    start = time.perf_counter()
    with pytest.raises(ModelRunError, match="did not finish within 3 s") as info:
        compare_latency(hang, two_models[1], X, dataclasses.replace(QUICK, timeout_s=3))
    assert info.value.stage == "timeout"
    assert time.perf_counter() - start < 20


def test_crashing_worker_is_an_error(tmp_path, two_models):
    """The measuring process dies (as on a segfault or an ONNX Runtime abort): an error that
    names the signal, and the caller goes on."""
    hang = hanging_model(tmp_path / "hang.onnx")

    def kill_worker() -> None:
        for _ in range(200):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"pruna_search.measure._worker" in cmd:
                    time.sleep(0.5)
                    os.kill(int(pid), 11)  # SIGSEGV
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_worker)
    killer.start()
    with pytest.raises(ModelRunError, match="crashed \\(SIGSEGV\\)") as info:
        compare_latency(hang, two_models[1], X, dataclasses.replace(QUICK, timeout_s=60))
    killer.join()
    assert info.value.stage == "crash"


def test_broken_and_failing_models(tmp_path, two_models):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelRunError, match="not an ONNX model") as info:
        compare_latency(bad, two_models[1], X, QUICK)
    assert info.value.stage == "load"
    fails = failing_model(tmp_path / "fails.onnx")
    with pytest.raises(ModelRunError, match="fails at run time") as info:
        compare_latency(fails, two_models[1], X, QUICK)
    assert info.value.stage == "run"
    with pytest.raises(MeasurementError, match="cannot load"):
        onnx_accuracy(bad, np.zeros((2, 1, 32, 32), np.float32), np.zeros(2, np.int64))


def test_providers_beyond_cpu_need_onnxruntime_to_have_them(two_models):
    with pytest.raises(TargetError, match="target.provider: 'cuda' is not in this ONNX Runtime"):
        compare_latency(*two_models, X, dataclasses.replace(QUICK, provider="cuda"))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"name": "cpu", "repeats": 3}, "target.repeats: renamed; use target.min_runs"),
        ({"name": "cpu", "min_runs": 0}, "target.min_runs: 0 must be an integer >= 1"),
        ({"name": "cpu", "min_runs": 50, "max_runs": 10}, "max_runs: 10 is below min_runs 50"),
        ({"name": "cpu", "runner": "ssh"}, "target.runner: 'ssh' is unknown"),
        ({"name": "cpu", "runner": "remote"}, "target.url: missing"),
        ({"name": "cpu", "capabilities": {"conv": ["int2"]}}, "'int2' is not a precision"),
        ({"name": "cpu", "capabilities": {"attention": ["int8"]}}, "unknown layer kind"),
        ({"name": "tpu"}, "unknown target 'tpu' without capabilities"),
        ({"name": "cpu", "int8_probe": "yes"}, "target.int8_probe: 'yes' must be true or false"),
        (
            {"name": "cpu", "floor_max_age_h": 0},
            "target.floor_max_age_h: 0 must be a number of hours > 0, or null",
        ),
    ],
)
def test_target_config_errors(config, message):
    with pytest.raises(TargetError, match=message.replace("(", r"\(")) as info:
        Target.from_config(config)
    assert "\n" not in str(info.value)


def test_target_capabilities_from_config():
    target = Target.from_config(
        {"name": "edge", "capabilities": {"conv": ["int8"], "linear": ["fp32"]}, "batch_size": 4}
    )
    assert [p.value for p in target.choices("conv")] == ["fp32", "int8"]
    assert [p.value for p in target.choices("linear")] == ["fp32"]
    assert target.batch_size == 4 and target.timing().batch_size == 4
    # how long it is measured is not part of what a figure depends on
    assert Target.from_config({"name": "cpu", "min_runs": 7, "cache": False}).identity() == (
        CPU.identity()
    )


def test_accuracy_counts_argmax(two_models):
    from pruna_search.core import runtime

    x = np.random.default_rng(1).standard_normal((50, 1, 32, 32)).astype(np.float32)
    y = runtime.run(runtime.session(two_models[0]), x).argmax(1)
    assert onnx_accuracy(two_models[0], x, y) == 1.0
    assert onnx_accuracy(two_models[0], x, (y + 1) % 10) == 0.0


def test_hardware_fingerprint():
    fp = hardware.fingerprint()
    assert fp["cores"] >= 1 and fp["onnxruntime"]
    assert "CPUExecutionProvider" in fp["providers"]
    assert isinstance(hardware.has_vnni(), bool)
