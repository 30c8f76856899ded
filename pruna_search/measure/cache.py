"""A small on-disk cache of latency results keyed by model content and target settings."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from ..core.target import Target


class LatencyCache:
    """One JSON file per measurement under ``root``; writes are atomic."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, candidate_hash: str, baseline_hash: str, target: Target, shape: tuple) -> str:
        settings = asdict(target)
        settings["precisions"] = {k: [p.value for p in v] for k, v in target.precisions.items()}
        text = json.dumps([candidate_hash, baseline_hash, settings, list(shape)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        path = self.root / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value))
        os.replace(tmp, self.root / f"{key}.json")
