"""Baseline weights for built-in models: trained once per (model, width, data set) and cached."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError, ModelError
from ..train import loops
from .checkpoint import load_checkpoint

BATCH_SIZE = 64


@dataclass(frozen=True)
class Recipe:
    """How a built-in model is trained from scratch: SGD (nesterov), cosine-decayed ``lr``.

    ``steps`` is the target number of optimizer steps; epochs are derived from it and the size
    of the train split (at least one epoch).
    """

    lr: float
    steps: int


RECIPES: dict[str, Recipe] = {
    "resnet20": Recipe(lr=0.1, steps=200),
    "resnet56": Recipe(lr=0.1, steps=200),
    "mobilenetv2": Recipe(lr=0.1, steps=200),
    "cnn": Recipe(lr=0.05, steps=150),
    "mlp": Recipe(lr=0.05, steps=150),
}
DEFAULT_RECIPE = Recipe(lr=0.05, steps=200)


def cache_dir() -> Path:
    """``$PRUNA_SEARCH_CACHE`` or ``~/.cache/pruna_search``."""
    root = os.environ.get("PRUNA_SEARCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "pruna_search"


def default_epochs(name: str, train_size: int) -> int:
    """Epochs that give the model's recipe its target number of steps on ``train_size`` images."""
    recipe = RECIPES.get(name, DEFAULT_RECIPE)
    steps_per_epoch = max(1, math.ceil(train_size / BATCH_SIZE))
    return max(1, math.ceil(recipe.steps / steps_per_epoch))


def checkpoint_path(name: str, data: Any, width: float, epochs: int) -> Path:
    """Where the baseline of ``name`` at ``width`` trained ``epochs`` epochs on ``data`` lives."""
    return (
        cache_dir()
        / "baselines"
        / f"{name}-w{float(width)}-{data.name}-{data.fingerprint}-e{epochs}.pt"
    )


def _save_atomic(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pretrained(
    model: nn.Module, name: str, data: Any, width: float, epochs: int | None = None
) -> nn.Module:
    """Give ``model`` trained weights: load the cached baseline, or train it and cache it.

    Training is deterministic (seed 0, SGD, cosine schedule, batch 64) and its result is written
    atomically, so a killed run never leaves a half-written file. A cache file that cannot be
    loaded is reported with a warning and replaced.

    Args:
        model: a freshly built model (modified in place).
        name: the built-in model name (selects the recipe and names the cache file).
        data: a DataSplits (``train``, ``val``, ``name``, ``fingerprint``).
        width: the model's width (part of the cache key).
        epochs: training epochs; None picks ``default_epochs``.
    """
    if epochs is None:
        epochs = default_epochs(name, len(data.train))
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ModelError(f"model.train_epochs: {epochs!r} must be an integer >= 1")
    path = checkpoint_path(name, data, width, epochs)
    if path.exists():
        try:
            return load_checkpoint(model, path).eval()
        except CheckpointError as exc:
            warnings.warn(f"{exc}; retraining the baseline", RuntimeWarning, stacklevel=2)
    recipe = RECIPES.get(name, DEFAULT_RECIPE)
    steps = epochs * max(1, math.ceil(len(data.train) / BATCH_SIZE))
    start = time.perf_counter()
    loops.train(
        model,
        data.train,
        loops.TrainSettings(
            steps=steps,
            lr=recipe.lr,
            optimizer="sgd",
            batch_size=BATCH_SIZE,
            seed=0,
            desc=f"baseline {name}",
        ),
    )
    seconds = time.perf_counter() - start
    acc = loops.accuracy(model, data.val)
    print(
        f"baseline {name} (width {float(width)}) on {data.name}: val accuracy {acc:.4f} (torch) "
        f"after {epochs} epochs in {seconds:.1f} s; saved to {path}",
        flush=True,
    )
    _save_atomic(model, path)
    return model.eval()
