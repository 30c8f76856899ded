"""The one-shot API on a real trained baseline: accuracy from the exported ONNX model in ORT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pruna_search as ps
from pruna_search.core import names, runtime
from pruna_search.measure import onnx_accuracy


@pytest.mark.slow
def test_int8_resnet20_on_digits_stays_within_1_5_points(resnet20_trained, digits, tmp_path):
    result = ps.optimize(
        resnet20_trained, ps.Config(quantization_bits=8), data=digits, measure_latency=False
    )
    assert result.baseline[names.ACCURACY] >= 0.95
    assert result.metrics[names.ACCURACY_DROP] <= 0.015
    assert result.metrics[names.SIZE_MB] < 0.5 * result.baseline[names.SIZE_MB]


@pytest.mark.slow
def test_exported_model_reproduces_the_reported_accuracy(resnet20_trained, digits, tmp_path):
    config = ps.Config(pruning_ratio=0.5, quantization_bits=8, finetune_steps=20)
    result = ps.optimize(resnet20_trained, config, data=digits)
    path = result.export(tmp_path / "out" / "model.onnx")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
    x, y = digits.val_arrays()
    # a fresh session, one thread, batch by batch: the same accuracy as reported
    assert onnx_accuracy(path, x, y, threads=1, batch_size=17) == result.metrics[names.ACCURACY]
    sess = runtime.session(path)
    assert runtime.run(sess, x[:3]).shape == (3, 10)
    for key in (
        names.ACCURACY,
        names.ACCURACY_DROP,
        names.LATENCY_P10,
        names.LATENCY_P50,
        names.LATENCY_P90,
        names.SPEEDUP,
        names.SIZE_MB,
        names.MACS,
        names.PARAMS,
    ):
        assert np.isfinite(result.metrics[key]), key
    assert result.metrics[names.LATENCY_P10] <= result.metrics[names.LATENCY_P90]
    # int8 layers keep multiples of 16 channels (the default round_to): half of stages 2-3 go,
    # the 16-channel stage 1 stays whole
    assert result.metrics[names.MACS] <= 0.55 * result.baseline[names.MACS]
    assert result.metrics[names.SPEEDUP] > 1.2  # half the MACs and int8 must show
    assert "dense fp32" in result.table()


def test_a_plan_gives_per_layer_control(digits):
    torch.manual_seed(0)
    model = ps.models.build("cnn", data=digits)
    info = ps.analyze(model, digits)
    first = info.groups[0].name
    plan = ps.Plan(prune={first: 0.5}, precision={info.layers[-1].name: "int8"})
    result = ps.optimize(model, plan, data=digits, measure_latency=False)
    assert result.plan == plan
    before, after = result.prune_report.channels[first]
    assert after == before // 2
    assert names.SPEEDUP not in result.metrics


def test_config_keep_fp32_names_layers(digits):
    model = ps.models.build("cnn", data=digits)
    info = ps.analyze(model, digits)
    plan = ps.Config(quantization_bits=8, keep_fp32=("first", "last")).to_plan(info)
    assert info.layers[0].name not in plan.precision
    assert info.layers[-1].name not in plan.precision
    assert len(plan.precision) == len(info.layers) - 2
    with pytest.raises(ps.ConfigError, match="keep_fp32: 'nope'"):
        ps.Config(keep_fp32=("nope",)).to_plan(info)


def test_model_that_disagrees_with_the_data(digits):
    model = ps.models.build("cnn", num_classes=5, in_channels=1, input_shape=(1, 32, 32))
    with pytest.raises(ps.ModelError, match="num_classes=10"):
        ps.optimize(model, ps.Config(), data=digits)


def test_bad_inputs(digits):
    with pytest.raises(ps.DataError, match="did you mean 'digits'"):
        ps.optimize("cnn", ps.Config(), data="digitz")
    with pytest.raises(ps.ModelError, match="did you mean 'resnet20'"):
        ps.optimize("resnet21", ps.Config(), data=digits)
    with pytest.raises(ps.ConfigError, match="expected pruna_search.Config or Plan"):
        ps.optimize(ps.models.build("cnn", data=digits), {"pruning_ratio": 0.5}, data=digits)
    with pytest.raises(ps.PlanError, match=r"pruning_ratio: ratio 0.99 is out of range"):
        ps.optimize(
            ps.models.build("cnn", data=digits), ps.Config(pruning_ratio=0.99), data=digits
        )
    with pytest.raises(ps.PlanError, match="quantization_bits"):
        ps.optimize(
            ps.models.build("cnn", data=digits), ps.Config(quantization_bits=2), data=digits
        )
    with pytest.raises(ps.TargetError, match="unknown target"):
        ps.optimize(
            ps.models.build("cnn", data=digits), ps.Config(target_device="tpu"), data=digits
        )
    with pytest.raises(ps.PlanError, match="cannot run int4 on a conv"):
        model = ps.models.build("cnn", data=digits)
        conv = ps.analyze(model, digits).layers[0].name
        ps.optimize(model, ps.Plan(precision={conv: "int4"}), data=digits)


def test_errors_share_one_root():
    for cls in (
        ps.ConfigError,
        ps.DataError,
        ps.ModelError,
        ps.CheckpointError,
        ps.PlanError,
        ps.TargetError,
        ps.CompressionError,
        ps.ExportError,
        ps.MeasurementError,
    ):
        assert issubclass(cls, ps.PrunaSearchError)
