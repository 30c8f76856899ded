"""Progress bars (the only importer of tqdm); ``PRUNA_SEARCH_PROGRESS=0`` turns them off."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _disabled() -> bool:
    return os.environ.get("PRUNA_SEARCH_PROGRESS", "1") == "0"


def bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    leave: bool = False,
) -> Iterator[T] | tqdm:
    """A progress bar over ``iterable`` (or a manual one when ``iterable`` is None)."""
    return tqdm(
        iterable, total=total, desc=desc, leave=leave, disable=_disabled(), dynamic_ncols=True
    )
