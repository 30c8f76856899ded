"""Progress bars (the only importer of tqdm); ``PRUNA_SEARCH_PROGRESS=0`` turns them off.

Inside ``quiet()`` (e.g. while a study runs trials under its own bar) new bars are not shown,
and ``TqdmHandler`` writes log lines above a live bar instead of through it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar, overload

from tqdm.auto import tqdm

T = TypeVar("T")
_quiet_depth = 0


def _disabled() -> bool:
    return _quiet_depth > 0 or os.environ.get("PRUNA_SEARCH_PROGRESS", "1") == "0"


class ManualBar(Protocol):
    """A bar advanced by hand (``bar()`` without an iterable): what this package calls of
    tqdm's."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix(self, **values: object) -> None: ...

    def set_postfix_str(self, s: str = "") -> None: ...

    def close(self) -> None: ...


@overload
def bar(
    iterable: None = None, *, total: int | None = None, desc: str = "", leave: bool = False
) -> ManualBar: ...


@overload
def bar(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", leave: bool = False
) -> Iterator[T]: ...


def bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    leave: bool = False,
) -> Iterator[T] | ManualBar:
    """A progress bar over ``iterable`` (or a manual one when ``iterable`` is None)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=leave,
        # None: shown on a terminal only, so logs and CI output stay readable
        disable=True if _disabled() else None,
        dynamic_ncols=True,
    )


@contextmanager
def quiet() -> Iterator[None]:
    """Bars created inside this block stay hidden (the outer bar keeps the screen)."""
    global _quiet_depth
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1


class TqdmHandler(logging.StreamHandler):
    """A logging handler that prints above live progress bars (``tqdm.write``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)
