"""Load a user's state dict into a model, strictly, with errors that say how to fix a mismatch."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..core.errors import CheckpointError

# Keys under which training scripts commonly nest the state dict, in order of preference.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
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


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: object, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: the object itself, or the dict found under
    ``state_dict``, ``model_state_dict`` or ``model``."""
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
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
    expected = set(own)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        fix = _prefix_hint(state, expected) or "check model_kwargs/width, or set strip_prefix"
        raise CheckpointError(
            f"checkpoint: '{source}' does not match the model: {' and '.join(parts)}; {fix}"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"checkpoint: '{source}': {key} has shape {tuple(state[key].shape)} in the "
                f"checkpoint but {tuple(value.shape)} in the model; check model_kwargs/width"
            )
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], *, strip_prefix: str | None = None
) -> nn.Module:
    """Load the weights saved at ``path`` into ``model`` (in place) and return it.

    Accepts a plain state dict or a dict holding one under ``state_dict``, ``model_state_dict``
    or ``model``. ``strip_prefix`` is removed from the keys that start with it; ``module.``
    (DataParallel) and ``_orig_mod.`` (torch.compile) are removed when every key has them.
    Keys and shapes must match exactly.

    Raises:
        CheckpointError: the file is missing or unreadable, or its keys or shapes differ.
    """
    path = Path(path).expanduser()
    state = extract_state_dict(_read(path), path)
    return load_state_dict(model, state, strip_prefix=strip_prefix, source=path)
