"""Load a user's state dict into a model, strictly, with errors that say how to fix a mismatch."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

import torch
from torch import nn

from ..core.errors import CheckpointError

log = logging.getLogger("pruna_search")

# Keys under which training scripts commonly nest the state dict, in order of preference.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "state_dict_ema")
# BatchNorm's step counter: older PyTorch versions (< 0.4.1) saved no such buffer
BN_COUNTER = ".num_batches_tracked"
# Prefixes removed automatically when every key carries them (DataParallel, torch.compile).
AUTO_PREFIXES = ("module.", "_orig_mod.")
SHOWN = 5
RESAVE = "re-save it with torch.save(model.state_dict(), path)"


def _read(path: Path) -> object:
    if not path.exists():
        raise CheckpointError(f"checkpoint: '{path}' does not exist; check the path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint: '{path}' is a directory; give the path of a .pt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(
                f"checkpoint: '{path}' holds pickled objects other than tensors (a whole model?) "
                f"and is not loaded for safety; {RESAVE}"
            ) from None
        raise CheckpointError(
            f"checkpoint: '{path}' could not be read ({exc}); {RESAVE}"
        ) from None
    except Exception as exc:  # the weights-only unpickler raises anything on garbage bytes
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint: '{path}' could not be read ({reason}); {RESAVE}"
        ) from None


def _is_state_dict(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: object, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: the object itself, or the dict found under one
    of ``NESTED_KEYS`` (``state_dict``, ``model_state_dict``, ``model``, ``net``, ``ema``)."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = ", ".join(repr(k) for k in list(obj)[:SHOWN])
        raise CheckpointError(
            f"checkpoint: '{path}' is a dict (keys {keys}) with no state dict of tensors at the "
            f"top or under {', '.join(NESTED_KEYS)}; {RESAVE}"
        )
    raise CheckpointError(
        f"checkpoint: '{path}' holds a {type(obj).__name__}, not a state dict; {RESAVE}"
    )


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (", ..." if len(keys) > SHOWN else "")


def _prefix_hint(state: Mapping[str, torch.Tensor], expected: set[str]) -> str:
    """``set strip_prefix='x.'`` when every key starts with ``x.`` and stripping it would match."""
    first = next(iter(state))
    if "." not in first:
        return ""
    prefix = first.split(".", 1)[0] + "."
    if all(k.startswith(prefix) for k in state) and set(_strip(dict(state), prefix)) == expected:
        return f"set strip_prefix={prefix!r}"
    return ""


def _first_shape_differences(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> list[str]:
    return [
        f"{k} has shape {tuple(state[k].shape)} in the checkpoint but {tuple(v.shape)} in the "
        "model"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]


def _mismatch(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str | Path
) -> CheckpointError | None:
    """The error for keys or shapes that differ (None when they match)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = _first_shape_differences(state, own)
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
    if shapes:
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        parts.append(shapes[0] + more)
    fix = _prefix_hint(state, set(own)) or (
        "the checkpoint holds another architecture or size: check model.name and "
        "model.model_kwargs (or width), or set strip_prefix"
    )
    return CheckpointError(
        f"checkpoint: '{source}' does not match the model: {'; '.join(parts)}; {fix}"
    )


def _fill_bn_counters(
    state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str | Path
) -> None:
    """Take the model's own BatchNorm step counters where the checkpoint has none (saved by
    an older PyTorch): they only matter when training with ``momentum=None``."""
    absent = [
        k
        for k in own
        if k.endswith(BN_COUNTER)
        and k not in state
        and k.removesuffix(BN_COUNTER) + ".running_mean" in state  # the layer is there
    ]
    if not absent:
        return
    for key in absent:
        state[key] = own[key]
    log.info(
        f"checkpoint '{source}' has no num_batches_tracked for {len(absent)} BatchNorm layers "
        "(saved by an older PyTorch); the model's own counters are kept"
    )


def load_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    strip_prefix: str | None = None,
    source: str | Path = "<state dict>",
) -> nn.Module:
    """Strictly load ``state`` into ``model`` after stripping prefixes (see load_checkpoint)."""
    state = dict(state)
    if strip_prefix:
        state = _strip(state, strip_prefix)
    for prefix in AUTO_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = _strip(state, prefix)
    own = model.state_dict()
    _fill_bn_counters(state, own, source)
    error = _mismatch(state, own, source)
    if error is not None:
        raise error
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], *, strip_prefix: str | None = None
) -> nn.Module:
    """Load the weights saved at ``path`` into ``model`` (in place) and return it.

    Accepts a plain state dict or a dict holding one under ``state_dict``, ``model_state_dict``,
    ``model``, ``net`` or ``ema`` (other entries, e.g. ``epoch`` or ``best_prec1``, are ignored).
    ``strip_prefix`` is removed from the keys that start with it; ``module.`` (DataParallel) and
    ``_orig_mod.`` (torch.compile) are removed when every key has them. Keys and shapes must
    match exactly, except BatchNorm's ``num_batches_tracked``, which checkpoints saved by an
    older PyTorch lack (the model's own are kept, with one info line). Only tensors are
    unpickled (``weights_only``): a whole pickled model is refused.

    Raises:
        CheckpointError: the file is missing or unreadable, or its keys or shapes differ.
    """
    path = Path(path).expanduser()
    state = extract_state_dict(_read(path), path)
    return load_state_dict(model, state, strip_prefix=strip_prefix, source=path)
