"""Floors: the lowest figures seen for a file on a machine, that a window's drift is told by.

A baseline's *floor* is the lowest p10 seen for that file, machine and settings; a reference's
(the dense int8 probe's) is the lowest ratio of its p10 to the baseline's. A ``Floors`` object
keeps those its own windows measured and, with a cache file, reads and writes those of every
process for ``target.floor_max_age_h`` hours. There is no per-process module state: whoever
measures holds one ``Floors`` (the search's ``Evaluator``) and passes it to every
``compare_latency``. Floors are keyed by the hardware (CPU, host name, cores, ONNX Runtime),
not by the runner, so a device agent and a local process on the same machine share them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.target import Target
from .cache import LatencyCache
from .runners import LatencyRunner, file_hash, runner_for, timed_input

# what sets how tight a figure is: a figure from a short protocol (a quick test run with
# max_runs=40) must not answer a long one (an overnight study), so they are in the cache key
PROTOCOL_KEYS = (
    "interleave",
    "warmup",
    "min_runs",
    "max_runs",
    "time_budget_s",
    "ci_tolerance",
    "min_window_s",
    "quiet_tolerance",
)
# the target settings a given file's timing depends on (its name and capabilities do not)
SESSION_KEYS = (
    "provider",
    "provider_options",
    "intra_op_threads",
    "batch_size",
    "graph_optimization",
)
# the hardware facts a floor is kept for; not the runner or its URL
MACHINE_KEYS = ("cpu", "host", "cores", "onnxruntime")


def protocol_of(target: Target) -> dict[str, Any]:
    return {name: getattr(target, name) for name in PROTOCOL_KEYS}


def floor_settings(target: Target, runner: LatencyRunner, shape: tuple[int, ...]) -> dict:
    """What a floor depends on besides the file: how the session runs it, the protocol, the
    machine's hardware (whichever runner reaches it) and the input shape."""
    identity = target.identity()
    facts = runner.fingerprint()
    return {
        "session": {name: identity[name] for name in SESSION_KEYS},
        "protocol": protocol_of(target),
        "machine": {name: facts.get(name) for name in MACHINE_KEYS},
        "shape": list(shape),
    }


def floor_key(digest: str, settings: dict, *, reference: bool = False) -> str:
    """A floor's key, from the file's ``digest`` and ``floor_settings``. A reference's floor is
    its time relative to the baseline's (the lowest reference p10 / baseline p10 seen), kept
    under a key of its own."""
    parts = ["reference-ratio", digest, settings] if reference else [digest, settings]
    return json.dumps(parts, sort_keys=True, default=str)


class Floors:
    """The lowest value seen per floor key (a baseline's p10, or a reference's p10 relative to
    the baseline's): those of the windows this object was given (``seen``), and those in
    ``cache``'s file from the last ``max_age_h`` hours (``cache`` or ``max_age_h`` None: this
    object's only)."""

    def __init__(self, cache: LatencyCache | None = None, max_age_h: float | None = None) -> None:
        self.cache = cache if max_age_h is not None else None
        self.max_age_s = 3600 * (max_age_h or 0)
        self.seen: dict[str, float] = {}
        self.stored_at: dict[str, float] = {}  # keys whose floor an earlier process measured

    @classmethod
    def of(cls, target: Target, cache: LatencyCache | None = None) -> Floors:
        """Floors kept in ``cache``'s file for ``target.floor_max_age_h`` hours."""
        return cls(cache, target.floor_max_age_h)

    def stored(self, key: str) -> tuple[float, float] | None:
        """The lowest p10 stored for ``key`` within the max age, and when it was measured."""
        return self.cache.floor_at(key, self.max_age_s) if self.cache is not None else None

    def get(self, key: str) -> float | None:
        here = self.seen.get(key)
        stored = self.stored(key)
        if stored is not None and (here is None or stored[0] < here):
            self.stored_at[key] = stored[1]
            return stored[0]
        return here

    def origin(self, key: str) -> str:
        """Where ``key``'s floor was measured, for a noise reason."""
        if key not in self.stored_at:
            return "measured before"
        hours = max(time.time() - self.stored_at[key], 0) / 3600
        return f"measured {hours:.1f} h ago"

    def add(self, key: str, p10: float, floor: float | None) -> None:
        self.seen[key] = min(p10, floor if floor is not None else math.inf)
        if self.cache is not None:
            self.cache.add_floor(key, p10, max_age_s=self.max_age_s)


def stored_floor(
    baseline: str | Path,
    example: np.ndarray,
    target: Target,
    cache: LatencyCache,
    runner: LatencyRunner | None = None,
) -> tuple[float, float] | None:
    """The baseline's floor stored by earlier processes within ``target.floor_max_age_h`` and
    when it was measured (a Unix time), or None (none, or floors kept per process only)."""
    floors = Floors.of(target, cache)
    if floors.cache is None:
        return None
    return floors.stored(_baseline_floor_key(baseline, example, target, runner))


def baseline_floor(
    baseline: str | Path,
    example: np.ndarray,
    target: Target,
    floors: Floors,
    runner: LatencyRunner | None = None,
) -> float | None:
    """The lowest p10 of ``baseline`` known on the measuring machine for ``target``'s settings:
    measured by the windows ``floors`` was given, or stored in its cache file by an earlier
    process within its max age; None when no converged window has timed it yet."""
    return floors.get(_baseline_floor_key(baseline, example, target, runner))


def _baseline_floor_key(
    baseline: str | Path, example: np.ndarray, target: Target, runner: LatencyRunner | None
) -> str:
    runner = runner or runner_for(target)
    where = floor_settings(target, runner, timed_input(example, target).shape)
    return floor_key(file_hash(baseline), where)
