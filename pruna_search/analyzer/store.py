"""Analyses kept by digest: ``pruna-search-analyze`` keeps each analysis record in the cache
folder under its digest (what its figures depend on: model and weights, data, target, space)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.files import atomic_write_text
from ..models.pretrained import cache_dir


def store() -> Path:
    """Where analyses are kept (the cache folder, beside the trained baselines)."""
    return cache_dir() / "analyses"


def save_record(record: Mapping[str, Any]) -> Path:
    """Keep an analysis record under its digest (the newest replaces an older one)."""
    folder = store()
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=str) + "\n"
    return atomic_write_text(folder / f"{record['digest']}.json", text)


def load_record(digest: str) -> dict[str, Any] | None:
    path = store() / f"{digest}.json"
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = ["load_record", "save_record", "store"]
