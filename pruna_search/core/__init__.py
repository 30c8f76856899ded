"""Plain types and small services shared by every package: Plan, Precision, Target, analysis
results, errors. Imports nothing else of pruna_search, and no module here imports torch (the
training loops and ``Compute`` are in ``pruna_search.train``; ``CPU`` here is the Target)."""

from __future__ import annotations

from .errors import (
    CheckpointError,
    CompressionError,
    ConfigError,
    DataError,
    ExportError,
    MeasurementError,
    ModelError,
    PlanError,
    PrunaSearchError,
    TargetError,
)
from .model_info import GroupInfo, LayerInfo, ModelInfo
from .plan import Finetune, Plan
from .precision import Precision
from .target import CPU, TARGETS, Target, get_target

__all__ = [
    "CPU",
    "TARGETS",
    "CheckpointError",
    "CompressionError",
    "ConfigError",
    "DataError",
    "ExportError",
    "Finetune",
    "GroupInfo",
    "LayerInfo",
    "MeasurementError",
    "ModelError",
    "ModelInfo",
    "Plan",
    "PlanError",
    "Precision",
    "PrunaSearchError",
    "Target",
    "TargetError",
    "get_target",
]
