"""A user-defined model for tests/test_models.py (imported by class path)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv-BN-ReLU, global pool, ``fc``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, hidden: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.bn(self.conv(x))))))


NOT_A_CLASS = 42


def tiny_factory(num_classes: int = 10, in_channels: int = 1, width: int = 8) -> nn.Module:
    """A factory function with keyword arguments (random weights)."""
    return TinyNet(num_classes=num_classes, in_channels=in_channels, hidden=width)


def raising_factory(**kwargs) -> nn.Module:
    raise ValueError("weights server unreachable")


def not_a_model() -> int:
    return 3


class Output(dict):
    """Like a Hugging Face ``ModelOutput``: a dict whose entries are also attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class MultiOutputNet(TinyNet):
    """TinyNet whose forward returns more than logits: a dict, a tuple or an ``Output``."""

    def __init__(self, kind: str = "dict", **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def forward(self, x: torch.Tensor):
        features = self.flatten(self.pool(self.relu(self.bn(self.conv(x)))))
        logits = self.fc(features)
        if self.kind == "dict":
            return {"features": features, "logits": logits}
        if self.kind == "tuple":
            return (features, logits)
        return Output(logits=logits, features=features)
