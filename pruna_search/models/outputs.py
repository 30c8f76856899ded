"""Models whose forward returns more than logits: a dict, a tuple, a Hugging Face
``ModelOutput``. The search scores and exports one tensor, picked by ``model.output_key``.

The model's class is swapped for a subclass whose ``forward`` returns that tensor, so module
names (and so plans, Optuna parameters and checkpoints) stay exactly as the user wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import torch
from torch import nn

from ..core.errors import ModelError

DEFAULT_KEY = "logits"
FIELD = "model.output_key"
# what a tensor is, also while torch.fx traces the forward (BatchNorm folding before export)
TENSOR = (torch.Tensor, torch.fx.Proxy)


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {', '.join(repr(k) for k in out)}"
    if isinstance(out, tuple | list):
        return f"a {type(out).__name__} of {len(out)}"
    return f"a {type(out).__name__}"


def _is_tensor(value: object) -> TypeGuard[torch.Tensor]:
    """A tensor, or the torch.fx Proxy standing for one while a forward is traced (used as
    the tensor it stands for, so typed as one)."""
    return isinstance(value, TENSOR)


def _tensors(out: Any) -> list[tuple[Any, torch.Tensor]]:
    items = out.items() if isinstance(out, Mapping) else enumerate(out)
    return [(k, v) for k, v in items if _is_tensor(v)]


def pick(out: Any, key: str | int | None) -> torch.Tensor:
    """The logits in a forward's output: ``out[key]`` when a key is given; else the tensor
    itself, else its ``logits``, else its first tensor."""
    if key is None:
        return _default(out)
    if isinstance(out, torch.Tensor):
        raise ModelError(f"{FIELD}: {key!r} but the model returns one tensor; drop output_key")
    value = _at(out, key)
    if not _is_tensor(value):
        raise ModelError(f"{FIELD}: {key!r} holds a {type(value).__name__}, not the logits")
    return value


def _default(out: Any) -> torch.Tensor:
    """The tensor itself, else its ``logits``, else its first tensor (no key given)."""
    if _is_tensor(out):
        return out
    if isinstance(out, Mapping) and _is_tensor(out.get(DEFAULT_KEY)):
        return out[DEFAULT_KEY]
    if _is_tensor(getattr(out, DEFAULT_KEY, None)):
        return getattr(out, DEFAULT_KEY)
    found = _tensors(out) if isinstance(out, Mapping | tuple | list) else []
    if not found:
        raise ModelError(
            f"model: the forward returns {_describe(out)} with no tensor in it; return the "
            "logits (batch, num_classes)"
        )
    return found[0][1]


def _at(out: Any, key: str | int) -> Any:
    """``out[key]`` (an index into a tuple or list, a key of a mapping), or a ModelError."""
    if isinstance(out, tuple | list):
        index = int(key) if str(key).lstrip("-").isdigit() else None
        if index is None or not -len(out) <= index < len(out):
            raise ModelError(
                f"{FIELD}: {key!r} is not in the output, {_describe(out)}; give an index "
                f"0..{len(out) - 1}"
            )
        return out[index]
    if isinstance(out, Mapping) and key in out:
        return out[key]
    keys = list(out) if isinstance(out, Mapping) else []
    raise ModelError(
        f"{FIELD}: {key!r} is not in the output, {_describe(out)}; "
        + (f"use one of {', '.join(map(str, keys))}" if keys else "return a dict or a tuple")
    )


def returns_logits(model: nn.Module, out: Any, key: str | int | None) -> nn.Module:
    """``model`` made to return one tensor (the one ``key`` picks from ``out``, what its forward
    returned) when it returns anything else or a key is given; else the model itself."""
    if isinstance(out, torch.Tensor) and key is None:
        return model
    pick(out, key)  # raises a ModelError naming the key when it is not there
    base = type(model)
    if getattr(base, "_pruna_output_key", object()) == key:
        return model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return pick(base.forward(self, *args, **kwargs), key)

    model.__class__ = type(
        base.__name__,
        (base,),
        {"forward": forward, "_pruna_output_key": key, "__module__": base.__module__},
    )
    return model
