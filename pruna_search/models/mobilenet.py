"""A small MobileNetV2 (Sandler et al. 2018) for 32x32 inputs.

The stem keeps stride 1 and the 24-, 32- and 64-channel stages start with stride 2, so a 32x32
image ends at 4x4. (Keeping the 24-channel stage at 32x32, as CIFAR ports of MobileNetV2 do,
costs 5x the training time on a CPU for no gain on small data sets.)

Module names: ``stem.0`` (conv), ``blocks.3.expand.0``, ``blocks.3.depthwise.0``,
``blocks.3.project.0``, ``head.0``, ``fc`` (classifier).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import init_weights, scaled

# (expansion t, output channels c, repeats n, first stride s)
CONFIG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 2),
    (6, 96, 1, 1),
)
HEAD_CHANNELS = 320


def _conv_bn(
    in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_c, out_c, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_c),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when t=1) -> depthwise 3x3 -> linear project 1x1 (+ input when the
    stride is 1 and channels match)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand: nn.Module = (
            _conv_bn(in_channels, hidden, 1) if expansion != 1 else nn.Identity()
        )
        self.depthwise = _conv_bn(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, 1, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 sized for 32x32 images (about 0.22M parameters and 12M MACs at 32x32, width 1).

    Args:
        num_classes: classifier outputs.
        in_channels: input image channels.
        width: channel multiplier (widths rounded to multiples of 8 unless 1).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        channels = scaled(32, width)
        self.stem = _conv_bn(in_channels, channels, 3)
        blocks = []
        for t, c, n, s in CONFIG:
            out = scaled(c, width)
            for i in range(n):
                blocks.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        head = scaled(HEAD_CHANNELS, width)
        self.head = _conv_bn(channels, head, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def mobilenetv2(
    num_classes: int, in_channels: int, input_shape: tuple | None = None, width: float = 1.0
) -> MobileNetV2:
    """The small MobileNetV2 above."""
    return MobileNetV2(num_classes, in_channels, width)
