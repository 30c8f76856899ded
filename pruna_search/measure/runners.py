"""Where latency is measured: ``LocalRunner`` (a separate process on this machine) and
``RemoteRunner`` (a device agent over HTTP), both with the protocol of ``measure/timing.py``
and both returning the same figures with the hardware fingerprint of the machine that
measured; and what a window times (``timed_input``) and how a file is named (``file_hash``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core import hardware, runtime
from ..core.errors import TargetError
from ..core.target import Target
from .remote import AgentClient, TokenRefused
from .timing import run_isolated


class LatencyRunner(Protocol):
    """Times ONNX models on a target. Invariant: a measurement never modifies the model files.

    ``measure`` times ``models`` (baseline, candidate and optionally a reference) alternately
    and returns the worker's reply (``models`` holds one summary per model, in order); it
    raises ``MeasurementError`` (``ModelRunError`` with a stage for a model that cannot be
    loaded, fails, hangs or crashes). ``identity`` names the
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
        except TokenRefused:
            if self.client.token:
                raise
            raise TargetError(
                f"target.token_env: the environment variable {target.token_env} is not set and "
                f"the agent at {target.url} wants a token; export {target.token_env}=<the token "
                "the agent was started with>"
            ) from None
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


@dataclass(frozen=True)
class TimingWindow:
    """When one window was timed (``time.time()`` seconds) and how long it waited for the
    timing lock before."""

    start: float
    end: float
    waited: float

    def to_list(self) -> list[float]:
        return [round(self.start, 4), round(self.end, 4), round(self.waited, 4)]


class LockedRunner:
    """A runner whose windows never overlap other workers' windows on the same device: each
    ``measure`` holds ``lock`` (a context manager that yields the seconds it waited; the
    study's ``timing:<device>`` lock, see ``search/locks.py``). ``windows`` records them."""

    def __init__(self, runner: LatencyRunner, lock: Callable[[], AbstractContextManager[float]]):
        self.runner, self.lock = runner, lock
        self.name = runner.name
        self.windows: list[TimingWindow] = []

    def fingerprint(self) -> dict[str, Any]:
        return self.runner.fingerprint()

    def identity(self) -> dict[str, Any]:
        return self.runner.identity()

    def measure(self, models: list[Path], x: np.ndarray) -> dict[str, Any]:
        with self.lock() as waited:
            start = time.time()
            try:
                return self.runner.measure(models, x)
            finally:
                self.windows.append(TimingWindow(start, time.time(), waited))


def device_key(runner: LatencyRunner) -> str:
    """The measuring device a runner times on, as a lock name: this host for a local process,
    the agent's URL for a remote one."""
    identity = runner.identity()
    if identity.get("runner") == "remote":
        return f"agent:{identity.get('url')}"
    return f"host:{socket.gethostname()}"


def runner_for(target: Target) -> LatencyRunner:
    """The runner a target's ``runner`` setting names."""
    return RemoteRunner(target) if target.runner == "remote" else LocalRunner(target)


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def timed_input(example: np.ndarray, target: Target) -> np.ndarray:
    """The input a window times: the first ``batch_size`` examples (repeated when fewer)."""
    x = np.ascontiguousarray(example[: target.batch_size], dtype=np.float32)
    if len(x) < target.batch_size:
        x = np.concatenate([x] * (target.batch_size // max(len(x), 1) + 1))[: target.batch_size]
    return x
