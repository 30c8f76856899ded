"""Training loops: a short fine-tune (with optional distillation), BatchNorm recalibration,
and where they run (``Compute``). Shared by baseline training (models/) and recovery
fine-tuning (compress/); imports torch and, of the package, ``core`` only."""

from __future__ import annotations

from .batchnorm import BatchDraw, Recalibration, recalibrate_batchnorm
from .loops import (
    AMP_DTYPES,
    CPU,
    Compute,
    Progress,
    TrainSettings,
    accuracy,
    make_optimizer,
    proxy_accuracy,
    release_memory,
    train,
)

__all__ = [
    "AMP_DTYPES",
    "BatchDraw",
    "CPU",
    "Compute",
    "Progress",
    "Recalibration",
    "TrainSettings",
    "accuracy",
    "make_optimizer",
    "proxy_accuracy",
    "recalibrate_batchnorm",
    "release_memory",
    "train",
]
