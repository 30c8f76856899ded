"""Latency figures cached in a SQLite file, keyed by model content and target settings.

Identical models measured with identical settings on the same machine are never measured twice
(design decision 5). The key is the SHA-256 of both ONNX files' content hashes, the target's
``identity()``, the measuring machine's identity and the input shape; each row keeps the whole
figure with its hardware fingerprint. Several processes may share one file.

The same file keeps the *floors* of the latency gate (``latency.py``): every converged, unflagged
window's dense (and int8 probe) p10 with the time it was measured, so a process that starts in
a slow phase of the host is held to the lowest p10 measured by the processes before it.
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
);
CREATE TABLE IF NOT EXISTS floor (
    key TEXT NOT NULL,
    p10 REAL NOT NULL,
    measured REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS floor_key ON floor (key, measured)
"""


# stored floors older than this are dropped whatever their key's max age (30 days)
FLOOR_RETENTION_S = 30 * 24 * 3600


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
        conn.executescript(SCHEMA)
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

    def floor(self, key: str, max_age_s: float) -> float | None:
        """The lowest p10 stored for ``key`` in the last ``max_age_s`` seconds (None: none)."""
        found = self.floor_at(key, max_age_s)
        return found[0] if found else None

    def floor_at(self, key: str, max_age_s: float) -> tuple[float, float] | None:
        """The lowest p10 stored for ``key`` in the last ``max_age_s`` seconds and when it was
        measured (a Unix time), or None."""
        if not self.path.exists():
            return None
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT p10, measured FROM floor WHERE key = ? AND measured >= ? "
                "ORDER BY p10 LIMIT 1",
                (_digest(key), time.time() - max_age_s),
            ).fetchone()
        return (float(row[0]), float(row[1])) if row else None

    def add_floor(
        self, key: str, p10: float, *, max_age_s: float, measured: float | None = None
    ) -> None:
        """Store one window's p10 for ``key`` (measured now unless ``measured`` says when),
        dropping the key's rows older than ``max_age_s`` and anyone's older than
        ``FLOOR_RETENTION_S`` (floors of files no longer measured)."""
        now, digest = time.time(), _digest(key)
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "DELETE FROM floor WHERE (key = ? AND measured < ?) OR measured < ?",
                (digest, now - max_age_s, now - FLOOR_RETENTION_S),
            )
            conn.execute(
                "INSERT INTO floor VALUES (?, ?, ?)",
                (digest, float(p10), now if measured is None else measured),
            )

    def clear_floors(self) -> None:
        """Forget every stored floor (the figures stay)."""
        if not self.path.exists():
            return
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM floor")
