"""Recovery after pruning: BatchNorm recalibration and a short fine-tune, where the compute is."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from ..core.plan import Finetune
from ..train import (
    CPU,
    BatchDraw,
    Compute,
    Progress,
    Recalibration,
    TrainSettings,
    recalibrate_batchnorm,
    release_memory,
    train,
)


def finetune(
    model: nn.Module,
    train_set: Dataset,
    options: Finetune,
    *,
    teacher: nn.Module | None = None,
    compute: Compute = CPU,
    on_progress: Progress | None = None,
) -> nn.Module:
    """Recalibrate BatchNorm statistics, then fine-tune for ``options.steps`` steps (in place),
    distilling from ``teacher`` (the dense model, already on ``compute.device``) when
    ``options.distill`` > 0. The model runs on ``compute.device`` meanwhile and is back on
    the CPU when this returns (export, quantization and measurements run as the target does).

    With ``options.bn_recalibration`` batches, the BatchNorm statistics are recalibrated before
    the fine-tune and again after it, for the weights it trained (train-mode BatchNorm
    normalizes with each batch's own statistics: the running ones are read only in eval mode).

    ``on_progress(step, model)``: called once after the recalibration (step 0) and every
    ``on_progress.every`` fine-tune steps before the last (see ``train``), the model's
    statistics recalibrated for its weights at that step, when there is a fine-tune; what it
    raises (``StoppedEarly``) stops the fine-tune and passes through, the model back on the CPU.
    """
    model.to(compute.device)
    try:
        recalibration = None
        if options.bn_recalibration > 0:
            recalibration = recalibrate_batchnorm(
                model,
                train_set,
                BatchDraw(options.bn_recalibration, options.batch_size, options.seed),
                compute=compute,
                reference=teacher,
            )
        if options.steps > 0:
            if on_progress is not None:
                on_progress(0, model)
                on_progress = _Recalibrated(on_progress, recalibration, options.steps)
            settings = _train_settings(options)
            train(
                model,
                train_set,
                settings,
                teacher=teacher,
                compute=compute,
                on_progress=on_progress,
            )
            if recalibration is not None:
                recalibration.apply(model)
    finally:
        model.to("cpu")
        if options.steps > 0:
            release_memory()  # the fine-tune's activations and optimizer state
    return model.eval()


def _train_settings(options: Finetune) -> TrainSettings:
    return TrainSettings(
        steps=options.steps,
        lr=options.lr,
        optimizer=options.optimizer,
        batch_size=options.batch_size,
        weight_decay=options.weight_decay,
        seed=options.seed,
        desc="fine-tune",
        distill=options.distill,
    )


@dataclass(frozen=True)
class _Recalibrated:
    """``on_progress`` told the model with its BatchNorm statistics recalibrated for the
    weights at that step (in place: the fine-tune does not read them), and not told the last
    step (the fine-tuned model is recalibrated, then measured, by the caller)."""

    inner: Progress
    recalibration: Recalibration | None
    steps: int

    @property
    def every(self) -> int:
        return self.inner.every

    def __call__(self, step: int, model: nn.Module) -> None:
        if step >= self.steps:
            return
        if self.recalibration is not None:
            self.recalibration.apply(model)
        self.inner(step, model)
