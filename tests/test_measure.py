"""Latency (separate process, alternating with the baseline), its cache, and ORT accuracy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pruna_search import MeasurementError, models
from pruna_search.core.target import CPU
from pruna_search.export import export_onnx
from pruna_search.measure import LatencyCache, compare_latency, hardware, onnx_accuracy

QUICK = dataclasses.replace(CPU, warmup=5, repeats=40)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lat")
    torch.manual_seed(0)
    small = models.build("cnn", num_classes=10, in_channels=1, input_shape=(1, 32, 32), width=0.25)
    big = models.build("resnet20", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    x = torch.randn(2, 1, 32, 32)
    return export_onnx(small, x, folder / "small.onnx"), export_onnx(big, x, folder / "big.onnx")


def test_alternating_measurement_ranks_models(two_models, tmp_path):
    small, big = two_models
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    result = compare_latency(small, big, x, QUICK)
    assert result.candidate.runs == result.baseline.runs == 40
    assert result.candidate.p10 <= result.candidate.p50 <= result.candidate.p90
    assert result.speedup > 1.5  # a quarter-width CNN against a ResNet-20
    assert result.load >= 0


def test_cache_hits_on_same_content(two_models, tmp_path):
    small, big = two_models
    cache = LatencyCache(tmp_path / "cache")
    x = np.zeros((1, 1, 32, 32), np.float32)
    first = compare_latency(small, big, x, QUICK, cache=cache)
    second = compare_latency(small, big, x, QUICK, cache=cache)
    assert not first.cached and second.cached
    assert second.candidate == first.candidate
    other = compare_latency(small, big, x, dataclasses.replace(QUICK, repeats=41), cache=cache)
    assert not other.cached and other.candidate.runs == 41
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_broken_model_gives_measurement_error(tmp_path, two_models):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(MeasurementError, match="measuring process failed"):
        compare_latency(bad, two_models[1], np.zeros((1, 1, 32, 32), np.float32), QUICK)
    with pytest.raises(MeasurementError, match="cannot load"):
        onnx_accuracy(bad, np.zeros((2, 1, 32, 32), np.float32), np.zeros(2, np.int64))


def test_accuracy_counts_argmax(two_models):
    from pruna_search.core import runtime

    x = np.random.default_rng(1).standard_normal((50, 1, 32, 32)).astype(np.float32)
    y = runtime.run(runtime.session(two_models[0]), x).argmax(1)
    assert onnx_accuracy(two_models[0], x, y) == 1.0
    assert onnx_accuracy(two_models[0], x, (y + 1) % 10) == 0.0


def test_hardware_fingerprint():
    fp = hardware.fingerprint()
    assert fp["cores"] >= 1 and fp["onnxruntime"]
    assert isinstance(hardware.has_vnni(), bool)
