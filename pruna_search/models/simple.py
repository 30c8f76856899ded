"""Two small baselines: ``cnn`` (4 conv blocks) and ``mlp`` (2 hidden layers).

Module names: ``block1.conv`` ... ``block4.conv``, ``fc`` (cnn); ``fc1``, ``fc2``, ``fc`` (mlp).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.errors import ModelError
from ._common import init_weights, scaled

CNN_CHANNELS = (32, 64, 128, 128)
CNN_POOL_AFTER = (True, True, True, False)
MLP_HIDDEN = 256


class ConvBlock(nn.Module):
    """conv3x3-BN-ReLU, optionally followed by a 2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.pool: nn.Module = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class SimpleCNN(nn.Module):
    """Four conv blocks (32, 64, 128, 128 channels times width), global pool, ``fc``.

    About 12M MACs at 32x32 (max-pools after the first three blocks); needs inputs of at least
    8x8.
    """

    # registered by name in __init__ (one per entry of CNN_CHANNELS)
    block1: ConvBlock
    block2: ConvBlock
    block3: ConvBlock
    block4: ConvBlock

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        channels = in_channels
        for i, (c, pool) in enumerate(zip(CNN_CHANNELS, CNN_POOL_AFTER, strict=True), start=1):
            out = scaled(c, width)
            self.add_module(f"block{i}", ConvBlock(channels, out, pool))
            channels = out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


class MLP(nn.Module):
    """Flatten -> Linear(in, 256w) -> ReLU -> Linear(256w, 256w) -> ReLU -> ``fc``."""

    def __init__(self, num_classes: int, in_features: int, width: float = 1.0) -> None:
        super().__init__()
        hidden = scaled(MLP_HIDDEN, width)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        return self.fc(self.relu2(self.fc2(x)))


def cnn(
    num_classes: int, in_channels: int, input_shape: tuple | None = None, width: float = 1.0
) -> SimpleCNN:
    """The small CNN above."""
    return SimpleCNN(num_classes, in_channels, width)


def mlp(
    num_classes: int, in_channels: int, input_shape: tuple | None = None, width: float = 1.0
) -> MLP:
    """The MLP above; its first layer's size comes from ``input_shape``."""
    if not input_shape:
        raise ModelError(
            "model 'mlp': the input shape is unknown; pass data or input_shape=(C, H, W)"
        )
    return MLP(num_classes, math.prod(int(d) for d in input_shape), width)
