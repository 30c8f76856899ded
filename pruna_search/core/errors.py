"""One root exception; every message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class PrunaSearchError(Exception):
    """Root of every error pruna_search raises on purpose.

    Raised in a data loader's worker process, torch re-raises it in the main process with the
    worker's traceback as its message; the message is then the original one line again.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and "Original Traceback" in args[0]:
            last = args[0].rstrip().splitlines()[-1]
            args = (last.split(f"{type(self).__name__}: ", 1)[-1],)
        super().__init__(*args)


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


class StoppedEarly(Exception):
    """A fine-tune's progress callback stops the plan's build: its trial is weak (see
    ``search.early_stop``). Not an error, so not a ``PrunaSearchError``: ``apply_plan`` and the
    evaluator let it through unchanged, and the trial loop makes the trial PRUNED.

    Attributes:
        step: the fine-tune step it stopped at.
        steps: the fine-tune's steps in all.
        accuracy: the proxy accuracy it was judged on.
        reason: the whole reason, in words (names the step, the accuracy and the rule).
    """

    def __init__(self, step: int, steps: int, accuracy: float, reason: str) -> None:
        super().__init__(reason)
        self.step, self.steps, self.accuracy, self.reason = step, steps, accuracy, reason
