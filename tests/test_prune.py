"""Structured pruning by dependency group, on the real built-in models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruna_search import Plan, analyze, models
from pruna_search.compress import kept_channels, prune

X = torch.randn(2, 1, 32, 32)


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return models.build(name, num_classes=10, in_channels=1, input_shape=(1, 32, 32))


def test_resnet20_half_pruned_keeps_multiples_of_8_and_cuts_macs():
    model = build("resnet20")
    info = analyze(model, X)
    pruned, report = prune(model, X, {g.name: 0.5 for g in info.groups}, round_to=8)
    after = analyze(pruned, X)
    assert not report.skipped
    assert len(report.channels) == len(info.groups) == 12
    for name, (before, kept) in report.channels.items():
        assert kept % 8 == 0, name
        assert kept == before // 2, name
    for layer in after.layers:
        if not layer.is_classifier:
            assert layer.out_channels % 8 == 0, layer.name
    assert after.macs <= 0.35 * info.macs
    assert pruned(X).shape == (2, 10)
    # the input model is untouched
    assert analyze(model, X).macs == info.macs


def test_channel_multiple_per_group_from_its_layers():
    """round_to as a function of the layers producing a group's channels (Plan.multiple_of):
    the groups run int8 keep multiples of 16, the others multiples of 8."""
    model = build("resnet20")
    info = analyze(model, X)
    int8 = {layer.name: "int8" for layer in info.layers if layer.name.startswith("layer3")}
    plan = Plan(
        prune={g.name: 0.625 for g in info.groups},
        precision=int8,
        round_to={"fp32": 8, "int8": 16},
    )
    _, report = prune(model, X, plan.prune, round_to=plan.multiple_of)
    kept = {name: after for name, (_before, after) in report.channels.items()}
    assert kept["layer3.0.conv1"] == 32  # 64 channels, int8: 24 rounds up to 32
    assert kept["layer2.0.conv1"] == 16  # 32 channels, fp32: 12 rounds to 16
    assert kept["layer1.0.conv1"] == 8  # 16 channels, fp32: 6 rounds to 8
    for group in info.groups:
        assert kept.get(group.name, group.channels) == plan.kept(
            group.channels, group.name, group.members
        ), group.name


def test_classifier_outputs_are_never_pruned():
    model = build("mlp")
    info = analyze(model, X)
    assert "fc" not in info.group_names
    pruned, _ = prune(model, X, {g.name: 0.75 for g in info.groups})
    assert pruned.fc.out_features == 10
    assert pruned(X).shape == (2, 10)


def test_residual_convs_share_one_group():
    info = analyze(build("resnet20"), X)
    stage1 = [
        g for g in info.groups if "layer1.0.conv2" in g.members or g.name == "layer1.0.conv2"
    ]
    assert len(stage1) == 1
    members = set(stage1[0].members) | {stage1[0].name}
    assert {"layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= members


@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2", "cnn"])
def test_every_builtin_model_prunes_and_runs(name):
    model = build(name)
    info = analyze(model, X)
    pruned, report = prune(model, X, {g.name: 0.5 for g in info.groups})
    assert not report.skipped
    assert analyze(pruned, X).macs < 0.6 * info.macs
    assert pruned(X).shape == (2, 10)


@pytest.mark.parametrize(
    ("channels", "ratio", "kept"),
    [
        (16, 0.5, 8),
        (16, 0.75, 8),
        (64, 0.3, 48),
        (64, 0.0, 64),
        (10, 0.5, 8),
        (8, 0.5, 8),
        (24, 0.5, 16),
    ],
)
def test_kept_channels(channels, ratio, kept):
    assert kept_channels(channels, ratio, 8) == kept


class HiddenCoupling(nn.Module):
    """conv1's channels are coupled to a tensor created in forward: invisible to the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x * torch.ones(1, 16, 1, 1)  # a constant shaped for 16 channels
        x = self.conv3(torch.relu(self.conv2(torch.relu(x))))
        return self.fc(self.pool(x).flatten(1))


def test_a_group_that_breaks_the_model_is_reported_and_left_unpruned():
    model = HiddenCoupling().eval()
    info = analyze(model, X)
    assert {"conv1", "conv2", "conv3"} <= set(info.group_names)
    pruned, report = prune(model, X, {g.name: 0.5 for g in info.groups})
    assert set(report.skipped) == {"conv1"}
    assert "RuntimeError" in report.skipped["conv1"]
    assert pruned.conv1.out_channels == 16
    assert pruned.conv2.out_channels == 8
    assert pruned.conv3.out_channels == 8
    assert pruned(X).shape == (2, 10)
