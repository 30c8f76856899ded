"""One root exception; every message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class PrunaSearchError(Exception):
    """Root of every error pruna_search raises on purpose."""


class ConfigError(PrunaSearchError, ValueError):
    """A configuration value is invalid (wrong type, out of range, unknown name)."""


class ModelError(PrunaSearchError):
    """A model cannot be built (unknown name, bad class path, shape mismatch with the data)."""


class CheckpointError(ModelError):
    """A checkpoint is missing, corrupt, or its keys do not match the model."""


class DataError(PrunaSearchError):
    """A data set cannot be loaded (unknown name, missing root, bad files, empty split)."""


class PlanError(PrunaSearchError, ValueError):
    """A plan names unknown layers, has a ratio out of range, or a precision the target lacks."""


class TargetError(PrunaSearchError):
    """An unknown target or a target setting that cannot be honoured."""


class CompressionError(PrunaSearchError):
    """Pruning, fine-tuning, export or quantization failed for a plan."""


class ExportError(CompressionError):
    """The ONNX export failed or the exported model disagrees with torch."""


class MeasurementError(PrunaSearchError):
    """Accuracy or latency could not be measured."""
