"""Recovery after pruning: BatchNorm recalibration and a short fine-tune, where the compute is."""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from ..core.plan import Finetune
from ..train import (
    CPU,
    Compute,
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
    desc: str = "fine-tune",
    compute: Compute = CPU,
) -> nn.Module:
    """Recalibrate BatchNorm statistics, then fine-tune for ``options.steps`` steps (in place),
    distilling from ``teacher`` (the dense model, already on ``compute.device``) when
    ``options.distill`` > 0. The model runs on ``compute.device`` meanwhile and is back on
    the CPU when this returns (export, quantization and measurements run as the target does)."""
    model.to(compute.device)
    try:
        if options.bn_recalibration > 0:
            recalibrate_batchnorm(
                model,
                train_set,
                batches=options.bn_recalibration,
                batch_size=options.batch_size,
                seed=options.seed,
                compute=compute,
            )
        if options.steps > 0:
            train(
                model,
                train_set,
                TrainSettings(
                    steps=options.steps,
                    lr=options.lr,
                    optimizer=options.optimizer,
                    batch_size=options.batch_size,
                    weight_decay=options.weight_decay,
                    seed=options.seed,
                    desc=desc,
                    distill=options.distill,
                ),
                teacher=teacher,
                compute=compute,
            )
    finally:
        model.to("cpu")
        if options.steps > 0:
            release_memory()  # the fine-tune's activations and optimizer state
    return model.eval()
