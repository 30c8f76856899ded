"""Built-in model zoo and user models: ``build(name, data=...)`` returns an nn.Module in eval mode.

Built-in names: ``resnet20``, ``resnet56`` (CIFAR ResNets), ``mobilenetv2`` (small, for 32x32),
``cnn`` and ``mlp``. Any other model is named by its class path, ``package.module:ClassName``,
created with ``model_kwargs`` and loaded from ``checkpoint``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.errors import ModelError
from ..core.imports import import_object, keyword_settings
from ..core.names import did_you_mean
from . import pretrained as _baselines
from .checkpoint import load_checkpoint, load_state_dict
from .mobilenet import mobilenetv2
from .outputs import pick, returns_logits
from .pretrained import cache_dir, default_epochs
from .resnet import resnet20, resnet56
from .simple import cnn, mlp

# factory(num_classes, in_channels, input_shape, width) -> nn.Module
Factory = Callable[[int, int, "tuple[int, ...] | None", float], nn.Module]

_FACTORIES: dict[str, Factory] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "mobilenetv2": mobilenetv2,
    "cnn": cnn,
    "mlp": mlp,
}


def register(name: str, factory: Factory) -> None:
    """Make ``build(name, ...)`` call ``factory(num_classes, in_channels, input_shape, width)``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ModelError(f"models.register: {name!r} is not a valid name; use a plain word")
    if not callable(factory):
        raise ModelError(f"models.register({name!r}): the factory must be callable")
    _FACTORIES[name] = factory


def names() -> tuple[str, ...]:
    """Names of the built-in (and registered) models."""
    return tuple(sorted(_FACTORIES))


def is_class_path(name: str) -> bool:
    """Whether ``name`` names a user class (``pkg.module:Class`` or ``pkg.module.Class``)."""
    return name not in _FACTORIES and (":" in name or "." in name)


def _agree(field: str, given: Any, from_data: Any, data: Any, what: str) -> Any:
    """``given`` if it agrees with the data (or there is no data), else a ModelError."""
    if given is None:
        return from_data
    if from_data is not None and given != from_data:
        raise ModelError(
            f"model.{field}: {given} but data {data.name!r} has {what}; "
            f"drop {field} or set it to {from_data}"
        )
    return given


def _check_positive_int(field: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ModelError(f"model.{field}: {value!r} must be an integer >= 1")


def _user_model(path: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """The model the class or factory ``path`` builds with ``model_kwargs``."""
    factory = import_object(path, field="model.name", kind="ClassName", error=ModelError)
    if not callable(factory):
        raise ModelError(
            f"model.name: {path!r} is a {type(factory).__name__}, not a class or factory; name "
            "an nn.Module class or a function that returns one"
        )
    try:
        model = factory(**model_kwargs)
    except TypeError as exc:
        raise ModelError(
            f"model.model_kwargs: {path!r} could not be created with {model_kwargs}: {exc}; "
            "fix model_kwargs"
        ) from None
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(
            f"model.name: {path!r}({_kwargs(model_kwargs)}) raised {type(exc).__name__}: "
            f"{reason}; fix model_kwargs or the factory"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model.name: {path!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "name an nn.Module class or a factory that returns one"
        )
    return model


def _kwargs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


@torch.no_grad()
def logits_model(
    model: nn.Module,
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int | None,
    output_key: str | int | None = None,
    *,
    copy_first: bool = False,
) -> nn.Module:
    """Run a batch of 2 zeros through ``model``; make it return only its logits (see
    ``outputs``; on a copy with ``copy_first``, leaving the caller's model as it is) and check
    they have the shape (2, num_classes)."""
    try:
        out = model(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise ModelError(
            f"model {name!r} fails on inputs of shape {tuple(input_shape)}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
            "check the model matches the data"
        ) from None
    logits = pick(out, output_key)
    if copy_first and not (isinstance(out, torch.Tensor) and output_key is None):
        model = copy.deepcopy(model)
    model = returns_logits(model, out, output_key)
    if logits.dim() != 2 or logits.shape[0] != 2:
        raise ModelError(
            f"model {name!r} returns {tuple(logits.shape)} for a batch of 2; it must return "
            "logits of shape (batch, num_classes)"
            + (" (model.output_key picks them from a dict or tuple)" if output_key is None else "")
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ModelError(
            f"model {name!r} gives {logits.shape[1]} outputs but the data has {num_classes} "
            f"classes; build it with num_classes={num_classes} (model_kwargs) or change the data"
        )
    return model


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The options of ``build`` (besides the name and the data).

    Attributes:
        num_classes: classifier outputs (must agree with ``data``).
        in_channels: input channels (must agree with ``data``).
        width: channel multiplier of built-in models (> 0).
        pretrained: train the built-in model on ``data`` once and cache it (needs ``data``).
        input_shape: one example's shape, e.g. ``(1, 32, 32)`` (must agree with ``data``).
        checkpoint: a state dict file loaded into the model (strict; see ``load_checkpoint``).
        model_kwargs: keyword arguments of a user's class or factory.
        strip_prefix: removed from checkpoint keys before loading.
        train_epochs: epochs of the pretrained baseline (None: a default per model and data).
        output_key: which output holds the logits when the forward returns a dict, a tuple or
            a ``ModelOutput`` (None: the tensor itself, else ``logits``, else the first tensor).
    """

    num_classes: int | None = None
    in_channels: int | None = None
    width: float = 1.0
    pretrained: bool = False
    input_shape: tuple[int, ...] | None = None
    checkpoint: str | None = None
    model_kwargs: dict[str, Any] | None = None
    strip_prefix: str | None = None
    train_epochs: int | None = None
    output_key: str | int | None = None


def _check_options(name: Any, data: Any, opts: ModelOptions) -> None:
    width, pretrained = opts.width, opts.pretrained
    if not isinstance(name, str) or not name:
        raise ModelError(f"model.name: {name!r} must be a model name or 'package.module:Class'")
    if (
        isinstance(width, bool)
        or not isinstance(width, int | float)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ModelError(f"model.width: {width!r} must be a number > 0 (1.0 is the full model)")
    if pretrained and data is None:
        raise ModelError(
            f"model {name!r}: pretrained=True trains the baseline on the data; pass data=..."
        )
    if pretrained and opts.checkpoint:
        raise ModelError(
            f"model {name!r}: both pretrained and checkpoint are set; the checkpoint already "
            "holds trained weights, so set pretrained to false"
        )
    if pretrained and is_class_path(name):
        raise ModelError(
            f"model {name!r}: pretrained=True trains built-in models only; pass checkpoint= "
            "with your trained weights, or a factory that loads them"
        )


def _shapes(
    data: Any,
    num_classes: int | None,
    in_channels: int | None,
    input_shape: tuple[int, ...] | None,
) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    """num_classes, in_channels and input_shape: given, or from ``data``, and agreeing."""
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
    data_shape = tuple(int(d) for d in data.input_shape) if data is not None else None
    num_classes = _agree(
        "num_classes",
        num_classes,
        int(data.num_classes) if data is not None else None,
        data,
        f"{getattr(data, 'num_classes', None)} classes",
    )
    input_shape = _agree("input_shape", input_shape, data_shape, data, f"inputs of {data_shape}")
    shape_channels = input_shape[0] if input_shape else None
    if in_channels is not None and shape_channels is not None and in_channels != shape_channels:
        if data is not None:
            _agree(
                "in_channels",
                in_channels,
                shape_channels,
                data,
                f"{shape_channels}-channel inputs {input_shape}",
            )
        raise ModelError(
            f"model.in_channels: {in_channels} but input_shape {input_shape} has "
            f"{shape_channels} channel(s); drop in_channels or set it to {shape_channels}"
        )
    return num_classes, in_channels or shape_channels, input_shape


def _built_in(
    name: str,
    model_kwargs: dict[str, Any] | None,
    num_classes: int | None,
    in_channels: int | None,
    input_shape: tuple[int, ...] | None,
    width: float,
) -> nn.Module:
    if name not in _FACTORIES:
        raise ModelError(
            f"model: unknown model {name!r}; {did_you_mean(name, _FACTORIES)} "
            "(or give a class path 'package.module:ClassName')"
        )
    if model_kwargs:
        raise ModelError(
            f"model.model_kwargs: built-in model {name!r} takes no model_kwargs "
            f"(got {sorted(model_kwargs)}); use width, or a class path for your own model"
        )
    if num_classes is None:
        raise ModelError(f"model {name!r}: num_classes is unknown; pass data or num_classes")
    return _FACTORIES[name](num_classes, in_channels or 3, input_shape, width)


def build(name: str, *, data: Any = None, **options: Any) -> nn.Module:
    """Build a model in eval mode.

    Args:
        name: a built-in name (see ``names()``) or ``package.module:name`` of a user's
            nn.Module class or of a function that returns a model (with trained weights, or
            weights from ``checkpoint``).
        data: a DataSplits; supplies num_classes, in_channels and input_shape when not given.
        options: the fields of ``ModelOptions`` (``num_classes``, ``in_channels``, ``width``,
            ``pretrained``, ``input_shape``, ``checkpoint``, ``model_kwargs``,
            ``strip_prefix``, ``train_epochs``, ``output_key``), as keywords.

    Raises:
        ModelError: unknown name, bad class path, a disagreement with ``data``, bad options.
        CheckpointError: the checkpoint is missing, unreadable or does not match.
    """
    opts = keyword_settings(ModelOptions, options, caller="build")
    _check_options(name, data, opts)
    width = float(opts.width)
    num_classes, in_channels, input_shape = _shapes(
        data, opts.num_classes, opts.in_channels, opts.input_shape
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if is_class_path(name):
            model = _user_model(name, dict(opts.model_kwargs or {}))
        else:
            model = _built_in(
                name, opts.model_kwargs, num_classes, in_channels, input_shape, width
            )
    if opts.checkpoint:
        load_checkpoint(model, opts.checkpoint, strip_prefix=opts.strip_prefix)
    elif opts.pretrained:
        model = _baselines.pretrained(model, name, data, width, opts.train_epochs)
    model.eval()
    if input_shape:
        model = logits_model(model, name, input_shape, num_classes, opts.output_key)
    elif opts.output_key is not None:
        raise ModelError(
            f"model.output_key: {opts.output_key!r} needs the input shape to check it; pass data"
        )
    return model


__all__ = [
    "ModelOptions",
    "build",
    "logits_model",
    "cache_dir",
    "default_epochs",
    "is_class_path",
    "load_checkpoint",
    "load_state_dict",
    "names",
    "register",
]
