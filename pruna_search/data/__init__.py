"""Built-in data sets: ``load(name, **options)`` returns train / calib / val splits.

Loaders: ``digits`` (scikit-learn, offline), ``fashion_mnist`` (the standard ubyte.gz files),
``imagefolder`` (``root/train/<class>/*``, ``root/val/<class>/*``) and ``npz`` (arrays in a file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.errors import DataError
from ..core.names import did_you_mean
from .base import DataSplits, make_splits
from .digits import load_digits
from .fashion_mnist import load_fashion_mnist
from .imagefolder import load_imagefolder
from .npz import load_npz

_LOADERS: dict[str, Callable[..., DataSplits]] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "imagefolder": load_imagefolder,
    "npz": load_npz,
}


def register(name: str, loader: Callable[..., DataSplits]) -> None:
    """Make ``load(name, ...)`` call ``loader(...)``."""
    _LOADERS[name] = loader


def loader(name: str) -> Callable[..., DataSplits]:
    """The loader registered as ``name`` (``KeyError`` when none is)."""
    return _LOADERS[name]


def names() -> tuple[str, ...]:
    return tuple(sorted(_LOADERS))


def load(name: str, **options: Any) -> DataSplits:
    """Load a data set by name; options go to its loader (see each loader's docstring)."""
    if isinstance(name, DataSplits):
        return name
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DataError(
            f"data: unknown data set {name!r}; {did_you_mean(name, _LOADERS)}"
        ) from None
    try:
        return loader(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise DataError(
                f"data {name!r}: {exc}; see the loader's options in the README"
            ) from None
        raise


__all__ = ["DataSplits", "load", "loader", "make_splits", "names", "register"]
