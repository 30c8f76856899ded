"""Apply a Plan: structured pruning, recovery fine-tune, ONNX export, ORT quantization."""

from __future__ import annotations

from .finetune import finetune
from .pipeline import ApplyOptions, Candidate, apply_plan
from .prune import PruneReport, dependency_groups, kept_channels, prune
from .quantize import Int8Settings, quantize

__all__ = [
    "ApplyOptions",
    "Candidate",
    "Int8Settings",
    "PruneReport",
    "apply_plan",
    "dependency_groups",
    "finetune",
    "kept_channels",
    "prune",
    "quantize",
]
