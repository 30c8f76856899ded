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
