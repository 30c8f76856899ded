"""The sweep summary of a multirun: ``<sweep dir>/sweep_summary.csv`` and ``.md``.

Rewritten after every job (so a failed or interrupted job still leaves the rows of the others)
and once more when the sweep ends. One row per job, read from each job's ``summary.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..core import names
from ..core.files import atomic_write_text

COLUMNS = (
    "job",
    "overrides",
    "status",
    "study",
    "chosen_trial",
    *names.HEADLINE,
    "trials",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def write_sweep_summary(sweep_dir: str | os.PathLike) -> Path | None:
    """Collect ``<sweep_dir>/<job>/summary.json`` into the sweep summary; None when no job has
    finished yet."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: _job_key(p.parent.name)):
        record = json.loads(path.read_text())
        rows.append({"job": path.parent.name, **record})
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
    atomic_write_text(sweep_dir / "sweep_summary.csv", buffer.getvalue())
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row.get(k)) for k in COLUMNS) + " |" for row in rows]
    return atomic_write_text(sweep_dir / "sweep_summary.md", "\n".join(lines) + "\n")


def _job_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


__all__ = ["COLUMNS", "write_sweep_summary"]
