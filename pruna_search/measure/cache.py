"""Latency figures cached in a SQLite file, keyed by model content and target settings.

Identical models measured with identical settings on the same machine are never measured twice
(DESIGN.md decision 5). The key is the SHA-256 of both ONNX files' content hashes, the target's
``identity()``, the measuring machine's identity and the input shape; each row keeps the whole
figure with its hardware fingerprint. Several processes may share one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    baseline TEXT NOT NULL,
    settings TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class LatencyCache:
    """``get``/``put`` latency results in the SQLite file ``path`` (created on first write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @staticmethod
    def key(candidate_hash: str, baseline_hash: str, settings: Mapping[str, Any]) -> str:
        text = json.dumps([candidate_hash, baseline_hash, settings], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        return conn

    def get(self, key: str) -> dict | None:
        if not self.path.exists():
            return None
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT result FROM latency WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(
        self,
        key: str,
        value: Mapping[str, Any],
        *,
        candidate: str,
        baseline: str,
        settings: Mapping[str, Any],
    ) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    candidate,
                    baseline,
                    json.dumps(settings, sort_keys=True),
                    json.dumps(value),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with closing(self._connect()) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0])
