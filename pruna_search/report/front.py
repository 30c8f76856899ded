"""Pareto fronts, hypervolume and the CSV of a front; plain rows, no Optuna.

A row is a dict of metric names plus ``number``, ``feasible``, ``reference`` (the label of a
uniform reference trial, empty for searched ones), ``plan`` (a short summary) and
``latency_noisy`` (why the speedup was flagged as at risk, empty when it was steady),
``latency_drift`` (how the whole host drifted during the window: reported, not flagged) and
``latency_remeasured`` (what a flagged figure was, when it was measured again steady after the
run).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..core import names
from ..core.files import atomic_write_text

# metric values, flags and texts (see the module's doc)
Row = Mapping[str, Any]
R = TypeVar("R", bound=Row)

CSV_COLUMNS = (
    "number",
    "reference",
    "feasible",
    "chosen",
    names.ACCURACY,
    names.ACCURACY_DROP,
    names.LATENCY,
    names.LATENCY_P10,
    names.LATENCY_P50,
    names.SPEEDUP,
    names.SIZE_MB,
    names.COMPRESSION,
    names.MACS,
    names.PARAMS,
    names.TRIAL_SECONDS,
    "plan",
    "latency_noisy",  # why the speedup was flagged as at risk; empty when steady
    "latency_drift",  # how the whole host drifted in the window (reported, not flagged)
    # the figure flagged during the run, when it was measured again steady after it
    "latency_remeasured",
    "warm_start",  # the analysis suggestion the trial was enqueued from (study.warm_start)
    # re-ranking (study.rerank_top): the fine-tune steps of the accuracy above (empty: the
    # trial's own) and the trial's accuracy
    "rerank_steps",
    "trial_accuracy",
)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (all values to be minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def _minimized(row: Row, value_names: Sequence[str]) -> tuple[float, ...]:
    # accuracy is maximized; everything else named in value_names is minimized
    return tuple(-float(row[n]) if n == names.ACCURACY else float(row[n]) for n in value_names)


def pareto_front(rows: Sequence[R], value_names: Sequence[str]) -> list[R]:
    """Non-dominated rows (identical points kept once), sorted by latency."""
    points = [(_minimized(r, value_names), r) for r in rows]
    front: list[R] = []
    seen: set[tuple[float, ...]] = set()
    for p, row in points:
        if p in seen or any(dominates(q, p) for q, _ in points):
            continue
        seen.add(p)
        front.append(row)
    return sorted(front, key=lambda r: float(r[names.LATENCY]))


def hypervolume(rows: Sequence[Row], *, max_drop: float = 0.05) -> float:
    """Area dominated in (accuracy drop, latency / dense latency), both minimized, up to the
    reference point (``max_drop``, 1.0): 0 means nothing beats dense; larger is better.

    Relative latency is ``1 / speedup`` (candidate and dense timed in the same window), so
    fronts measured at different times compare fairly.
    """
    points = sorted(
        {
            (float(r[names.ACCURACY_DROP]), 1.0 / float(r[names.SPEEDUP]))
            for r in rows
            if float(r[names.ACCURACY_DROP]) < max_drop and float(r[names.SPEEDUP]) > 1.0
        }
    )
    area, best_y = 0.0, 1.0
    for x, y in points:  # sweep by increasing drop; each point adds the strip below best_y
        if y < best_y:
            area += (max_drop - x) * (best_y - y)
            best_y = y
    return area


def write_csv(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Write rows with ``CSV_COLUMNS`` (missing values left empty), atomically."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return atomic_write_text(path, buffer.getvalue())


def _cell(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


__all__ = ["CSV_COLUMNS", "dominates", "hypervolume", "pareto_front", "write_csv"]
