"""CIFAR-style ResNet (He et al. 2016, section 4.2) with 1x1-conv projection shortcuts (option B).

Module names follow the usual layout: ``conv1``, ``bn1``, ``layer2.0.conv1``,
``layer2.0.shortcut.0`` (projection conv), ``fc`` (classifier).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights, scaled


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut (identity or 1x1 conv + BN), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: 3 stages of ``n`` BasicBlocks (16w, 32w, 64w channels).

    Args:
        depth_n: blocks per stage (3 for ResNet-20, 9 for ResNet-56).
        num_classes: classifier outputs.
        in_channels: input image channels.
        width: channel multiplier (widths rounded to multiples of 8 unless 1).
    """

    def __init__(
        self, depth_n: int, num_classes: int, in_channels: int = 3, width: float = 1.0
    ) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        channels = widths[0]
        stages = []
        for i, out in enumerate(widths):
            blocks = []
            for j in range(depth_n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(channels, out, stride))
                channels = out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def resnet20(
    num_classes: int, in_channels: int, input_shape: tuple | None = None, width: float = 1.0
) -> CifarResNet:
    """ResNet-20 (0.27M parameters at width 1, about 41M MACs at 32x32)."""
    return CifarResNet(3, num_classes, in_channels, width)


def resnet56(
    num_classes: int, in_channels: int, input_shape: tuple | None = None, width: float = 1.0
) -> CifarResNet:
    """ResNet-56 (0.86M parameters at width 1, about 125M MACs at 32x32)."""
    return CifarResNet(9, num_classes, in_channels, width)
