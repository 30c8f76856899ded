"""Recovery after pruning: BatchNorm recalibration and a short fine-tune."""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from ..core.loops import recalibrate_batchnorm, train
from ..core.plan import Finetune


def finetune(
    model: nn.Module,
    train_set: Dataset,
    options: Finetune,
    *,
    teacher: nn.Module | None = None,
    desc: str = "fine-tune",
) -> nn.Module:
    """Recalibrate BatchNorm statistics, then fine-tune for ``options.steps`` steps (in place),
    distilling from ``teacher`` (the dense model) when ``options.distill`` > 0."""
    if options.bn_recalibration > 0:
        recalibrate_batchnorm(
            model,
            train_set,
            batches=options.bn_recalibration,
            batch_size=options.batch_size,
            seed=options.seed,
        )
    if options.steps > 0:
        train(
            model,
            train_set,
            steps=options.steps,
            lr=options.lr,
            optimizer=options.optimizer,
            batch_size=options.batch_size,
            weight_decay=options.weight_decay,
            seed=options.seed,
            desc=desc,
            teacher=teacher,
            distill=options.distill,
        )
    return model.eval()
