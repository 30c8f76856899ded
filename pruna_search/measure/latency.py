"""Latency measured on the target, alternately with the dense baseline, never estimated.

DESIGN.md decision 5. A *runner* times models with the protocol of ``core/timing.py``:
``LocalRunner`` in a separate process on this machine, ``RemoteRunner`` on a device agent over
HTTP. Both return the same figures — p10/p50/p90, IQR, runs, the p10's confidence, the other
CPU load seen during the window and whether the noise gate gave up (``noisy``) — with the
hardware fingerprint of the machine that measured. The speedup is baseline p10 / candidate p10
from one window.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core import hardware, runtime
from ..core.errors import TargetError
from ..core.target import Target
from ..core.timing import run_isolated, summarize
from .cache import LatencyCache
from .remote import AgentClient


@dataclass(frozen=True)
class Latency:
    """One model's timed runs, in milliseconds: percentiles, IQR, number of runs, and the
    relative half-width of the p10's 95 % confidence interval (None: too few runs)."""

    p10: float
    p50: float
    p90: float
    runs: int
    iqr: float = 0.0
    ci: float | None = None

    @classmethod
    def of(cls, times_ms: list[float]) -> Latency:
        return cls(**summarize(times_ms))


@dataclass(frozen=True)
class LatencyComparison:
    """A candidate and the dense baseline measured in the same window."""

    candidate: Latency
    baseline: Latency
    other_load: float | None = None  # cores busy with other work during the window
    noisy: bool = False  # the noise gate never saw the machine settle
    converged: bool = True  # both p10s reached the target's ci_tolerance
    attempts: int = 1  # windows measured (the noise gate measures again while busy)
    window_s: float = 0.0
    runner: str = "local"
    fingerprint: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def speedup(self) -> float:
        return self.baseline.p10 / self.candidate.p10

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, cached: bool = False) -> LatencyComparison:
        values = dict(values, cached=cached)
        values["candidate"] = Latency(**values["candidate"])
        values["baseline"] = Latency(**values["baseline"])
        return cls(**values)

    @classmethod
    def from_reply(cls, reply: dict, runner: str) -> LatencyComparison:
        """From a worker's (or agent's) reply timing [baseline, candidate]."""
        base, cand = (Latency(**m) for m in reply["models"])
        return cls(
            candidate=cand,
            baseline=base,
            other_load=reply.get("other_load"),
            noisy=bool(reply.get("noisy")),
            converged=bool(reply.get("converged", True)),
            attempts=len(reply.get("attempts") or [1]),
            window_s=float(reply.get("window_s", 0.0)),
            runner=runner,
            fingerprint=dict(reply.get("fingerprint") or {}),
        )


class LatencyRunner(Protocol):
    """Times ONNX models on a target. Invariant: a measurement never modifies the model files.

    ``measure`` times ``models`` alternately and returns the worker's reply (``models`` holds
    one summary per model, in order); it raises ``MeasurementError`` (``ModelRunError`` with a
    stage for a model that cannot be loaded, fails, hangs or crashes). ``identity`` names the
    measuring machine for the cache; ``fingerprint`` describes it.
    """

    name: str

    def identity(self) -> dict[str, Any]: ...

    def fingerprint(self) -> dict[str, Any]: ...

    def measure(self, models: list[Path], x: np.ndarray) -> dict[str, Any]: ...


class LocalRunner:
    """A separate process on this machine, killed after ``target.timeout_s``."""

    name = "local"

    def __init__(self, target: Target) -> None:
        runtime.check_provider(target.provider)
        self.target = target

    def fingerprint(self) -> dict[str, Any]:
        return hardware.fingerprint()

    def identity(self) -> dict[str, Any]:
        facts = self.fingerprint()
        return {"runner": "local", **{k: facts[k] for k in ("cpu", "cores", "onnxruntime")}}

    def measure(self, models: list[Path], x: np.ndarray) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="pruna_lat_") as tmp:
            input_path = Path(tmp) / "input.npy"
            np.save(input_path, np.ascontiguousarray(x, dtype=np.float32))
            return run_isolated(
                models,
                self.target.timing(),
                input_path=input_path,
                timeout_s=self.target.timeout_s,
            )


class RemoteRunner:
    """A device agent at ``target.url``; its token is read from ``target.token_env``.

    The agent is asked for its health once, here: an agent that is down, refuses the token or
    lacks the target's provider is a ``TargetError`` before any study starts.
    """

    name = "remote"

    def __init__(self, target: Target) -> None:
        self.target = target
        self.client = AgentClient(
            str(target.url),
            os.environ.get(target.token_env) or None,
            retries=target.retries,
            timeout_s=target.timeout_s,
        )
        try:
            self._health = self.client.health()
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(str(exc)) from None
        providers = self._health.get("providers") or []
        wanted = runtime.provider_name(target.provider)
        if wanted not in providers:
            raise TargetError(
                f"target.provider: {target.provider!r} is not available on the agent at "
                f"{target.url} (it has {', '.join(providers) or 'none'})"
            )

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._health.get("fingerprint") or {})

    def identity(self) -> dict[str, Any]:
        facts = self.fingerprint()
        return {
            "runner": "remote",
            "url": self.target.url,
            **{k: facts.get(k) for k in ("cpu", "cores", "onnxruntime")},
        }

    def measure(self, models: list[Path], x: np.ndarray) -> dict[str, Any]:
        # the agent times a seeded random input of the model's shape (latency does not depend
        # on the values); the wire timeout leaves the agent time to answer its own timeout
        return self.client.measure(
            models, self.target.timing().to_dict(), timeout_s=self.target.timeout_s + 30
        )


def runner_for(target: Target) -> LatencyRunner:
    """The runner a target's ``runner`` setting names."""
    return RemoteRunner(target) if target.runner == "remote" else LocalRunner(target)


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compare_latency(
    candidate: str | Path,
    baseline: str | Path,
    example: np.ndarray,
    target: Target,
    *,
    cache: LatencyCache | None = None,
    runner: LatencyRunner | None = None,
) -> LatencyComparison:
    """Time ``candidate`` and ``baseline`` alternately on ``example`` (batch of the target).

    With ``cache`` (and ``target.cache``), a result for the same two files, target settings,
    machine and input shape is reused; results the noise gate flagged are not stored.
    """
    runner = runner or runner_for(target)
    x = np.ascontiguousarray(example[: target.batch_size], dtype=np.float32)
    if len(x) < target.batch_size:
        x = np.concatenate([x] * (target.batch_size // max(len(x), 1) + 1))[: target.batch_size]
    use_cache = cache is not None and target.cache
    key = settings = None
    cand_hash = base_hash = ""
    if use_cache:
        cand_hash, base_hash = file_hash(candidate), file_hash(baseline)
        settings = {
            "target": target.identity(),
            "machine": runner.identity(),
            "shape": list(x.shape),
        }
        key = cache.key(cand_hash, base_hash, settings)
        hit = cache.get(key)
        if hit is not None:
            return LatencyComparison.from_dict(hit, cached=True)
    reply = runner.measure([Path(baseline), Path(candidate)], x)
    comparison = LatencyComparison.from_reply(
        reply, runner.name if runner.name == "local" else f"remote {target.url}"
    )
    if use_cache and key is not None and not comparison.noisy:
        cache.put(
            key, comparison.to_dict(), candidate=cand_hash, baseline=base_hash, settings=settings
        )
    return comparison
