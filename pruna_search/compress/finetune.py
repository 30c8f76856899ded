"""Recovery after pruning: BatchNorm recalibration and a short fine-tune, where the compute is."""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from ..core.plan import Finetune
from ..train import (
    CPU,
    BatchDraw,
    Compute,
    Progress,
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

    ``on_progress(step, model)``: called once after the recalibration (step 0) and after every
    fine-tune step (see ``train``) when there is a fine-tune; what it raises (``StoppedEarly``)
    stops the fine-tune and passes through, the model back on the CPU.
    """
    model.to(compute.device)
    try:
        if options.bn_recalibration > 0:
            recalibrate_batchnorm(
                model,
                train_set,
                BatchDraw(options.bn_recalibration, options.batch_size, options.seed),
                compute=compute,
                reference=teacher,
            )
        if options.steps > 0:
            if on_progress is not None:
                on_progress(0, model)
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
                    desc="fine-tune",
                    distill=options.distill,
                ),
                teacher=teacher,
                compute=compute,
                on_progress=on_progress,
            )
    finally:
        model.to("cpu")
        if options.steps > 0:
            release_memory()  # the fine-tune's activations and optimizer state
    return model.eval()
