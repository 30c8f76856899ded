"""Plan: construction, serialization round trips, validation against a model and a target."""

from __future__ import annotations

import pytest
import torch

from pruna_search import Finetune, Plan, PlanError, Precision, analyze, models
from pruna_search.core.errors import TargetError
from pruna_search.core.target import CPU, get_target


@pytest.fixture(scope="module")
def r20_info():
    model = models.build("resnet20", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    return analyze(model, torch.randn(2, 1, 32, 32))


def test_uniform_plan_covers_every_group_and_layer(r20_info):
    plan = Plan.uniform(r20_info, pruning_ratio=0.5, quantization_bits=8)
    assert set(plan.prune) == set(r20_info.group_names)
    assert len(r20_info.groups) == 12
    assert all(r == 0.5 for r in plan.prune.values())
    assert plan.layers_at(Precision.INT8) == tuple(sorted(r20_info.layer_names))
    plan.validate(r20_info, "cpu")


def test_uniform_int4_means_int4_on_linear_and_int8_on_conv(r20_info):
    plan = Plan.uniform(r20_info, quantization_bits=4)
    assert plan.precision["fc"] is Precision.INT4
    assert plan.precision["layer1.0.conv1"] is Precision.INT8
    plan.validate(r20_info, CPU)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix, r20_info):
    plan = Plan(
        prune={"layer1.0.conv1": 0.25, "conv1": 0.5},
        precision={"fc": "int4", "layer1.0.conv1": 8},
        finetune=Finetune(steps=30, lr=0.05, optimizer="adam"),
        round_to=4,
    )
    path = plan.save(tmp_path / f"plan{suffix}")
    again = Plan.load(path)
    assert again == plan
    assert again.precision["layer1.0.conv1"] is Precision.INT8
    assert again.finetune.optimizer == "adam"
    again.validate(r20_info)


def test_channel_multiple_per_precision(tmp_path, r20_info):
    plan = Plan(
        prune={"layer3.0.conv1": 0.625, "layer2.0.conv1": 0.625},
        precision={"layer3.0.conv1": "int8"},
        round_to={"int8": 16, "fp32": 8},
    )
    assert plan.round_to == {"fp32": 8, "int8": 16}
    assert plan.multiple_of(["layer3.0.conv1", "layer3.1.conv2"]) == 16  # one int8 producer
    assert plan.multiple_of(["layer2.0.conv1"]) == 8
    assert plan.kept(64, "layer3.0.conv1") == 32 and plan.kept(32, "layer2.0.conv1") == 16
    assert Plan.load(plan.save(tmp_path / "plan.yaml")) == plan
    assert Plan(round_to={"fp32": 8, "int8": 8}).round_to == 8
    with pytest.raises(PlanError, match="round_to: {'int8': 16} has no fp32 multiple"):
        Plan(round_to={"int8": 16})
    with pytest.raises(PlanError, match=r"round_to\['fp16'\]: 'fp16' is not a precision"):
        Plan(round_to={"fp32": 8, "fp16": 16})
    with pytest.raises(PlanError, match="round_to: 0 must be an integer >= 1"):
        Plan(round_to=0)
    plan.validate(r20_info)


def test_unknown_group_suggests_the_closest(r20_info):
    with pytest.raises(PlanError, match=r"layer1\.0\.conv1"):
        Plan(prune={"layer1.0.conv": 0.5}).validate(r20_info)


def test_unknown_layer_suggests_the_closest(r20_info):
    with pytest.raises(PlanError, match="did you mean 'fc'"):
        Plan(precision={"fcc": "int8"}).validate(r20_info)


@pytest.mark.parametrize("ratio", [-0.1, 0.96, 1.0, "half"])
def test_ratio_out_of_range(ratio):
    with pytest.raises(PlanError, match=r"\[0, 0.95\]"):
        Plan(prune={"conv1": ratio})


def test_precision_the_target_cannot_run(r20_info):
    with pytest.raises(PlanError, match="cannot run int4 on a conv layer; use one of fp32, int8"):
        Plan(precision={"layer1.0.conv1": "int4"}).validate(r20_info, "cpu")


def test_bad_precision_and_keys():
    with pytest.raises(PlanError, match="not a precision"):
        Plan(precision={"fc": "int2"})
    with pytest.raises(PlanError, match="unknown key 'prnue'"):
        Plan.from_dict({"prnue": {}})
    with pytest.raises(PlanError, match="finetune.optimizer"):
        Finetune(optimizer="lion")
    with pytest.raises(PlanError, match="does not exist"):
        Plan.load("/nonexistent/plan.yaml")


def test_validate_needs_an_analysis():
    with pytest.raises(PlanError, match="pruna_search.analyze"):
        Plan().validate(torch.nn.Linear(2, 2))


def test_unknown_target():
    with pytest.raises(TargetError, match="unknown target 'gpu'"):
        get_target("gpu")
