"""Latency measured in a separate process, alternately with the dense baseline.

Never estimated (DESIGN.md decision 5): warm-up runs, then ``repeats`` timed runs of each model
interleaved, ``target.intra_op_threads`` threads, batch ``target.batch_size``. The 10th
percentile is the steady figure on a noisy machine; the speedup is baseline p10 / candidate p10.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import MeasurementError
from ..core.target import Target
from .cache import LatencyCache


@dataclass(frozen=True)
class Latency:
    """Percentiles of one model's timed runs, in milliseconds."""

    p10: float
    p50: float
    p90: float
    runs: int

    @classmethod
    def of(cls, times_ms: list[float]) -> Latency:
        p10, p50, p90 = np.percentile(np.asarray(times_ms), [10, 50, 90])
        return cls(float(p10), float(p50), float(p90), len(times_ms))


@dataclass(frozen=True)
class LatencyComparison:
    """A candidate and the dense baseline measured in the same window."""

    candidate: Latency
    baseline: Latency
    load: float  # 1-minute load average during the measurement (other work on the machine)
    cached: bool = False

    @property
    def speedup(self) -> float:
        return self.baseline.p10 / self.candidate.p10

    def to_dict(self) -> dict:
        return asdict(self)


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run_worker(models: list[Path], x: np.ndarray, target: Target) -> dict:
    with tempfile.TemporaryDirectory(prefix="pruna_lat_") as tmp:
        input_path = Path(tmp) / "input.npy"
        np.save(input_path, np.ascontiguousarray(x, dtype=np.float32))
        request = {
            "models": [str(m) for m in models],
            "input": str(input_path),
            "threads": target.intra_op_threads,
            "warmup": target.warmup,
            "repeats": target.repeats,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "pruna_search.measure._latency_worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
            # its own process group: a Ctrl-C at the terminal reaches the search (which then
            # finishes the running trial) but not the measurement in flight
            process_group=0,
        )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MeasurementError(f"latency: the measuring process failed ({tail})")
    return json.loads(proc.stdout)


def compare_latency(
    candidate: str | Path,
    baseline: str | Path,
    example: np.ndarray,
    target: Target,
    *,
    cache: LatencyCache | None = None,
) -> LatencyComparison:
    """Time ``candidate`` and ``baseline`` alternately on ``example`` (batch of the target).

    Results are cached by both files' content hashes and the target's settings.
    """
    x = np.ascontiguousarray(example[: target.batch_size], dtype=np.float32)
    if len(x) < target.batch_size:
        x = np.concatenate([x] * (target.batch_size // max(len(x), 1) + 1))[: target.batch_size]
    key = None
    if cache is not None:
        key = cache.key(file_hash(candidate), file_hash(baseline), target, x.shape)
        hit = cache.get(key)
        if hit is not None:
            return LatencyComparison(
                Latency(**hit["candidate"]), Latency(**hit["baseline"]), hit["load"], cached=True
            )
    result = _run_worker([Path(baseline), Path(candidate)], x, target)
    base_ms, cand_ms = result["times_ms"]
    comparison = LatencyComparison(
        candidate=Latency.of(cand_ms),
        baseline=Latency.of(base_ms),
        load=max(result["load_before"], result["load_after"]),
    )
    if cache is not None and key is not None:
        cache.put(key, comparison.to_dict())
    return comparison
