"""Helpers shared by the built-in architectures."""

from __future__ import annotations

from torch import nn


def scaled(channels: int, width: float) -> int:
    """``channels`` scaled by ``width``; rounded to a multiple of 8 (at least 8) unless width is 1.

    Multiples of 8 keep CPU kernels fast; width 1 keeps the published channel counts.
    """
    if width == 1:
        return channels
    return max(8, round(channels * width / 8) * 8)


def init_weights(model: nn.Module) -> None:
    """He-normal convs, unit BatchNorm, default Linear (the usual CIFAR recipe)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
