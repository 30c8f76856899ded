"""The latency protocol, shared by the local runner and the device agent (numpy + ORT only).

One *window* times one or more models alternately (model 0, model 1, model 0, ...) so that all
see the same machine load (STACK.md): at least ``warmup`` untimed runs of each, then timed runs
in rounds of ``ROUND`` until, over the *quiet* rounds, the 10th percentile of every model is known
to ``±ci_tolerance`` (a 95 % distribution-free confidence interval from order statistics) and
the window has lasted ``min_window_s``, or ``budget`` seconds or ``max_runs`` runs are spent
(the reply's ``stopped_by`` says which: ``ci``, ``time_budget`` or ``max_runs``).

A round is quiet when every model's median in it is within ``quiet_tolerance`` of that model's
fast rounds (the 10th percentile of its round medians in the window). On a shared host (a VM
whose neighbours load the same physical core or memory) there are *slow phases* that last from
a fraction of a second to several seconds, are invisible in ``/proc/stat``, and slow the models
unequally (measured here: an int8 ResNet-20 +40 %, the fp32 one +10 %), so even a same-window
ratio moves by 20 % or more; only rounds outside them are used. The figures report how many
rounds were quiet.

The CPU time the rest of the machine used during the window is
measured (``other_load``, in cores); the **noise gate** measures the window again, after
``noise_wait_s``, while it exceeds ``max_other_load`` — at most ``noise_retries`` times —
and flags the result ``noisy`` when it never settles.

``run_isolated`` runs a window in a separate process (``_timing_worker``) with a timeout, so a
model that crashes, aborts or hangs ONNX Runtime ends that measurement with an error, never the
caller. A measurement never modifies the model files it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MeasurementError, TargetError

ROUND = 20  # timed runs of each model per round (the unit the quiet filter keeps or drops)
# /proc/stat counts CPU time in 10 ms ticks: a shorter window cannot tell the other load
MIN_WINDOW_FLOOR_S = 0.25
Z95 = 1.959964
GRAPH_LEVELS = ("disabled", "basic", "extended", "all")  # ONNX Runtime graph optimization


class ModelRunError(MeasurementError):
    """A model could not be measured; ``stage`` says where: ``settings``, ``load``, ``run``,
    ``timeout`` or ``crash``."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class TimingSettings:
    """How one window is measured (the target's settings; the agent's ``settings`` JSON).

    Attributes:
        batch: batch size of the timed input.
        threads: ONNX Runtime intra-op threads.
        warmup: untimed runs of each model first (at least 20 is the protocol's floor for
            searches; smaller values are for tests).
        min_runs / max_runs: timed runs of each model, at least (quiet ones) / at most (all).
        budget: seconds of timed runs after which the window stops even if not converged.
        ci_tolerance: stop when the p10's 95 % confidence half-width is within this fraction.
        min_window_s: a window converges no sooner (it must span the host's slow phases;
            never below 0.25 s, the resolution of the other-load figure).
        quiet_tolerance: a round is kept when each model's median in it is within this
            fraction of its fast rounds' level (the 10th percentile of its round medians);
            None keeps every round.
        provider / provider_options / graph_optimization: the ONNX Runtime session.
        max_other_load: cores of other work above which a window is measured again.
        noise_retries / noise_wait_s: how often, and after how long a pause.
    """

    batch: int = 1
    threads: int = 1
    warmup: int = 20
    min_runs: int = 100
    max_runs: int = 5000
    budget: float = 10.0
    ci_tolerance: float = 0.015
    min_window_s: float = 1.0
    quiet_tolerance: float | None = 0.05
    provider: str = "CPUExecutionProvider"
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    graph_optimization: str = "all"
    max_other_load: float = 0.5
    noise_retries: int = 2
    noise_wait_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("batch", "threads", "min_runs", "max_runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelRunError(f"{name}: {value!r} must be an integer >= 1", "settings")
        for name in ("warmup", "noise_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ModelRunError(f"{name}: {value!r} must be an integer >= 0", "settings")
        if self.max_runs < self.min_runs:
            raise ModelRunError(
                f"max_runs: {self.max_runs} is below min_runs {self.min_runs}; raise max_runs",
                "settings",
            )
        for name in ("budget", "ci_tolerance", "min_window_s", "max_other_load", "noise_wait_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ModelRunError(f"{name}: {value!r} must be a number >= 0", "settings")
        quiet = self.quiet_tolerance
        if quiet is not None and (
            not isinstance(quiet, int | float) or isinstance(quiet, bool) or quiet <= 0
        ):
            raise ModelRunError(
                f"quiet_tolerance: {quiet!r} must be a number > 0, or null to keep every round",
                "settings",
            )
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ModelRunError(
                f"graph_optimization: {self.graph_optimization!r} is unknown; use one of "
                f"{', '.join(GRAPH_LEVELS)}",
                "settings",
            )
        if not isinstance(self.provider, str) or not self.provider:
            raise ModelRunError(
                f"provider: {self.provider!r} must be a provider name, e.g. cpu", "settings"
            )
        if not isinstance(self.provider_options, Mapping):
            raise ModelRunError(
                f"provider_options: {self.provider_options!r} must be a mapping", "settings"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TimingSettings:
        """Settings from JSON-like values; unknown keys are an error naming the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise ModelRunError(
                    f"{key}: unknown setting; known: {', '.join(known)}", "settings"
                )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["provider_options"] = dict(self.provider_options)
        return values


def p10_confidence(sorted_ms: np.ndarray) -> float:
    """Relative half-width of the 95 % confidence interval of the 10th percentile.

    Distribution-free: the interval between the order statistics at ``n q ± z sqrt(n q (1-q))``
    (the binomial normal approximation). ``inf`` with too few runs to bound it.
    """
    n = len(sorted_ms)
    q = 0.1
    spread = Z95 * math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(n * q - spread), math.ceil(n * q + spread)
    if lo < 0 or hi > n - 1:
        return math.inf
    p10 = float(np.percentile(sorted_ms, 10))
    return float(sorted_ms[hi] - sorted_ms[lo]) / (2 * p10) if p10 > 0 else math.inf


def summarize(times_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p10/p50/p90, IQR, runs and the p10's relative confidence half-width of one model."""
    values = np.sort(np.asarray(times_ms, dtype=np.float64))
    p10, p25, p50, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "iqr": float(p75 - p25),
        "runs": len(values),
        "ci": ci if math.isfinite(ci := p10_confidence(values)) else None,
    }


class CpuLoad:
    """CPU time the rest of the machine spends while a window runs, in cores.

    Linux ``/proc/stat`` gives the whole machine's busy time; this process's own (all its
    threads, ORT's included) is subtracted. ``None`` where ``/proc/stat`` does not exist.
    """

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = self._sample()

    @staticmethod
    def _busy_ticks() -> int | None:
        try:
            with open("/proc/stat") as handle:
                fields = handle.readline().split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        # user nice system idle iowait irq softirq steal (guest is counted in user)
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values[:8]) - idle

    def _sample(self) -> tuple[float, int | None, float]:
        own = os.times()
        return time.perf_counter(), self._busy_ticks(), own.user + own.system

    def cores(self) -> float | None:
        """Average cores busy with other work since the start (or the last call)."""
        wall0, busy0, own0 = self._start
        self._start = now = self._sample()
        wall, busy, own = now
        if busy is None or busy0 is None or wall <= wall0:
            return None
        other = (busy - busy0) / self._tick - (own - own0)
        return max(0.0, other / (wall - wall0))


def _feeds(sess, x: np.ndarray | None, batch: int) -> dict[str, np.ndarray]:
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelRunError(
            f"the model has {len(inputs)} inputs; only single-input models are timed", "load"
        )
    spec = inputs[0]
    if x is None:
        shape = []
        for i, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(batch if i == 0 and dim != batch else dim)
            elif i == 0:
                shape.append(batch)
            else:
                raise ModelRunError(
                    f"input {spec.name!r} has a symbolic dimension {dim!r} beyond the batch "
                    "axis; export with a fixed input size",
                    "load",
                )
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {spec.name: np.ascontiguousarray(x, dtype=np.float32)}


def quiet_rounds(medians: np.ndarray, tolerance: float | None) -> np.ndarray:
    """Which rounds (rows of per-model medians) are quiet: every model within ``tolerance`` of
    its fast rounds' level, the 10th percentile of its round medians (not the lowest one: for
    models of tens of microseconds a single lucky round would leave out most of the others).
    ``None`` keeps every round.

    Models that are fast in different rounds (two models sharing two cores, each slowed in
    turn) can leave no round with all of them at their level; the quietest rounds are then
    kept: those within ``tolerance`` of the round whose worst model is closest to its level.
    At least one round is always kept."""
    if tolerance is None or len(medians) == 0:
        return np.ones(len(medians), dtype=bool)
    level = np.percentile(medians, 10, axis=0)
    worst = (medians / level).max(axis=1)  # each round's model furthest above its level
    return worst <= max(1.0, float(worst.min())) * (1 + tolerance)


@dataclass
class Window:
    """One window's timed runs: ``rounds[r][i]`` holds model ``i``'s times in round ``r``."""

    rounds: list[list[list[float]]] = field(default_factory=list)
    medians: list[list[float]] = field(default_factory=list)
    converged: bool = False
    # what ended the window: "ci" (converged), "max_runs" or "time_budget" (still unsettled
    # when the time ran out: on a quiet host the p10 settles well within it)
    stopped_by: str = ""
    seconds: float = 0.0

    def quiet(self, tolerance: float | None) -> np.ndarray:
        return quiet_rounds(np.asarray(self.medians, dtype=np.float64), tolerance)

    def times(self, tolerance: float | None) -> list[list[float]]:
        """Each model's times over the quiet rounds."""
        keep = self.quiet(tolerance)
        models = len(self.rounds[0]) if self.rounds else 0
        return [
            [t for r, ok in zip(self.rounds, keep, strict=True) if ok for t in r[i]]
            for i in range(models)
        ]


def _window(sessions, feeds, settings: TimingSettings) -> Window:
    window = Window()
    clock = time.perf_counter
    start = clock()
    min_seconds = max(MIN_WINDOW_FLOOR_S, settings.min_window_s)
    while True:
        times: list[list[float]] = [[] for _ in sessions]
        for _ in range(ROUND):
            for i, sess in enumerate(sessions):
                t0 = clock()
                sess.run(None, feeds[i])
                times[i].append((clock() - t0) * 1e3)
        window.rounds.append(times)
        window.medians.append([float(np.median(t)) for t in times])
        elapsed = clock() - start
        stop = len(window.rounds) * ROUND >= settings.max_runs or elapsed >= settings.budget
        if elapsed < min_seconds and not stop:
            continue  # it cannot stop converged yet: spare the check (all rounds, sorted)
        quiet = window.times(settings.quiet_tolerance)
        window.converged = len(quiet[0]) >= settings.min_runs and (
            max(p10_confidence(np.sort(np.asarray(t))) for t in quiet) <= settings.ci_tolerance
        )
        if window.converged or stop:
            break
    if window.converged:
        window.stopped_by = "ci"
    elif len(window.rounds) * ROUND >= settings.max_runs:
        window.stopped_by = "max_runs"
    else:
        window.stopped_by = "time_budget"
    window.seconds = clock() - start
    return window


def measure(
    models: Sequence[str | Path],
    settings: TimingSettings,
    x: np.ndarray | None = None,
) -> dict[str, Any]:
    """Time ``models`` alternately in this process (see the module docstring).

    ``x`` is the input (its batch is used as it is); None: a seeded random input of the first
    model's input shape with the batch axis set to ``settings.batch``.
    """
    from . import hardware, runtime

    try:  # a provider this ONNX Runtime lacks is a settings error, not a broken model
        runtime.check_provider(settings.provider, field="provider")
    except TargetError as exc:
        raise ModelRunError(str(exc), "settings") from None
    try:
        sessions = [
            runtime.session(
                str(path),
                threads=settings.threads,
                provider=settings.provider,
                provider_options=settings.provider_options,
                graph_optimization=settings.graph_optimization,
            )
            for path in models
        ]
    except MeasurementError:
        raise
    except Exception as exc:
        raise ModelRunError(
            f"not an ONNX model ONNX Runtime can load ({_short(exc)})", "load"
        ) from exc
    feeds = [_feeds(sess, x, settings.batch) for sess in sessions]
    try:
        for sess, feed in zip(sessions, feeds, strict=True):
            for _ in range(max(1, settings.warmup)):
                sess.run(None, feed)
    except Exception as exc:
        raise ModelRunError(f"the model fails at run time: {_short(exc)}", "run") from exc
    attempts: list[dict[str, Any]] = []
    best: Window | None = None
    best_load = math.inf
    for attempt in range(settings.noise_retries + 1):
        if attempt:
            time.sleep(settings.noise_wait_s)
        load = CpuLoad()
        window = _window(sessions, feeds, settings)
        other = load.cores()
        attempts.append(
            {
                "other_load": other,
                "seconds": window.seconds,
                "runs": len(window.rounds) * ROUND,
                "quiet_rounds": int(window.quiet(settings.quiet_tolerance).sum()),
                "rounds": len(window.rounds),
            }
        )
        score = other if other is not None else 0.0
        if best is None or score < best_load:
            best, best_load = window, score
        if other is None or other <= settings.max_other_load:
            break
    assert best is not None
    other_load = None if attempts[-1]["other_load"] is None else best_load
    quiet = best.quiet(settings.quiet_tolerance)
    return {
        "models": [summarize(t) for t in best.times(settings.quiet_tolerance)],
        "other_load": other_load,
        "noisy": other_load is not None and other_load > settings.max_other_load,
        "converged": best.converged,
        "stopped_by": best.stopped_by,
        "window_s": best.seconds,
        "rounds": len(quiet),
        "quiet_rounds": int(quiet.sum()),
        "attempts": attempts,
        "input_shape": list(next(iter(feeds[0].values())).shape),
        "fingerprint": hardware.fingerprint(
            threads=settings.threads,
            provider=runtime.provider_name(settings.provider),
            graph_optimization=settings.graph_optimization,
            batch=int(next(iter(feeds[0].values())).shape[0]),
        ),
        "settings": settings.to_dict(),
    }


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


WORKER = "pruna_search.core._timing_worker"


def run_isolated(
    models: Sequence[str | Path],
    settings: TimingSettings,
    *,
    input_path: str | Path | None = None,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """``measure`` in a separate process, killed after ``timeout_s``.

    The worker runs in its own process group: a Ctrl-C at the terminal reaches the caller (which
    then finishes its trial) but not the measurement in flight; the group is killed when the
    caller gives up (timeout, or the caller itself interrupted). Raises ``ModelRunError`` with
    the stage: ``timeout``, ``crash`` (killed by a signal, e.g. an ONNX Runtime abort), or the
    worker's own ``settings``/``load``/``run``.
    """
    request = {
        "models": [str(m) for m in models],
        "settings": settings.to_dict(),
        "input": str(input_path) if input_path is not None else None,
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")  # keep numpy/BLAS off the timed cores
    proc = subprocess.Popen(
        [sys.executable, "-m", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        process_group=0,
    )
    try:
        out, err = proc.communicate(json.dumps(request), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ModelRunError(
            f"the measurement did not finish within {timeout_s:g} s (the model hangs or is "
            "far slower than expected; raise target.timeout_s if it is just slow)",
            "timeout",
        ) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise ModelRunError(f"the measuring process crashed ({name})", "crash")
    try:
        reply = json.loads(out)
    except json.JSONDecodeError:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise ModelRunError(
            f"the measuring process failed (exit {proc.returncode}: {tail})", "crash"
        ) from None
    if "error" in reply:
        raise ModelRunError(reply["error"], reply.get("stage", "run"))
    return reply


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
