"""The latency protocol, shared by the local runner and the device agent (numpy + ORT only).

One *window* times one or more models interleaved so that all see the same machine load: after
a warm-up, in *rounds* — by default each model runs a *block* of consecutive runs (the first
untimed) and the blocks alternate, so every timed run finds the model's own weights in the
caches, as on a device that runs one model on a stream of inputs (``interleave: run``
alternates run by run instead: every run then starts with the caches full of the other models'
data). Rounds go on until, over the *quiet* rounds, the 10th percentile of every model is known
to ``±ci_tolerance`` (a 95 % distribution-free confidence interval from order statistics) and
the window has lasted ``min_window_s``, or the time budget or ``max_runs`` runs are spent (the
reply's ``stopped_by`` says which: ``ci``, ``time_budget`` or ``max_runs``).

The window *scales* with the models' speed, measured in the warm-up (``Scaled``): block lengths,
the runs a converged window needs (fewer for a slow model, whose jitter is a smaller share of a
run) and the time budget (longer for slow models), so a 100 ms model settles in bounded time
and a 40 µs one still gets thousands of runs. The reply also summarises each half of the
window: a ratio that moved between the halves was disturbed in one model and not the other.

A round is quiet when every model's median in it is within ``quiet_tolerance`` of that model's
fast rounds (the 10th percentile of its round medians in the window). On a shared host (a VM
whose neighbours load the same physical core or memory) there are *slow phases* that last from
a fraction of a second to several seconds, are invisible in ``/proc/stat``, and slow the models
unequally (an int8 model more than an fp32 one: docs/latency.md), so even a same-window ratio
moves; only rounds outside them are used. The figures report how many
rounds were quiet.

The CPU time the rest of the machine used during the window is measured (``other_load``, in
cores); the reply says ``noisy`` when it exceeds ``max_other_load``. One call times one window:
measuring again (the noise gate, ``noise_retries`` windows ``noise_wait_s`` apart) is the
caller's, in one loop (``measure/latency.py``).

``run_isolated`` runs a window in a separate process (``measure/_worker.py``) with a timeout,
so a model that crashes, aborts or hangs ONNX Runtime ends that measurement with an error,
never the caller. A measurement never modifies the model files it is given.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import hardware, runtime
from ..core.errors import MeasurementError, TargetError
from ..core.timing import ModelRunError, TimingSettings

ROUND = 20  # timed runs of each model per round (the unit the quiet filter keeps or drops)
# Block interleaving: a model's block lasts about BLOCK_MS (long enough to warm the caches after
# the other models' blocks, short enough that a round of all models stays well under a second,
# so the ratio still cancels the host's drift), between MIN_BLOCK and ROUND timed runs, after
# one untimed run.
BLOCK_MS = 100.0
MIN_BLOCK = 2
# Windows that scale: a model slower than RUN_MS_REFERENCE per run needs fewer runs for a steady
# p10 (its run-to-run jitter is a smaller share of each run), so min_runs shrinks to what lasts
# about RUNS_S seconds, never below MIN_RUNS_SLOW (the fewest that bound a p10's 95 %
# interval: 35); warm-up stops after WARMUP_S; the time budget grows to BUDGET_SLACK times
# what min_runs of every model take, up to MAX_BUDGET_S.
RUNS_S = 4.0
MIN_RUNS_SLOW = 40
WARMUP_S = 1.0
BUDGET_SLACK = 3.0
MAX_BUDGET_S = 60.0
# /proc/stat counts CPU time in 10 ms ticks: a shorter window cannot tell the other load
MIN_WINDOW_FLOOR_S = 0.25
Z95 = 1.959964
INPUT_ITEM_BYTES = 4  # a generated input is float32


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


def summarize(times_ms: Sequence[float]) -> dict[str, Any]:
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


def _input_shape(spec, batch: int) -> list[int]:
    """The shape of the input generated for ``spec`` (an ONNX Runtime input): its fixed
    dimensions, the batch axis set to ``batch``."""
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
    return shape


def check_input_size(model: str | Path, sess, batch: int, limit: int) -> None:
    """A ``ModelRunError`` (stage ``input``) when the input generated for ``model`` (its
    declared shape, the batch axis set to ``batch``) would take more than ``limit`` bytes:
    raised from the shape alone, before anything is allocated."""
    for spec in sess.get_inputs():
        shape = _input_shape(spec, batch)
        size = math.prod(shape) * INPUT_ITEM_BYTES
        if size > limit:
            raise ModelRunError(
                f"input {spec.name!r} of {model} has shape {shape} (batch {batch}): "
                f"{size / 1e6:.1f} MB of float32, over the limit of {limit / 1e6:.1f} MB per "
                "input; export the model with a smaller fixed input size or use a smaller "
                "batch_size",
                "input",
            )


def _feeds(sess, x: np.ndarray | None, batch: int) -> dict[str, np.ndarray]:
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelRunError(
            f"the model has {len(inputs)} inputs; only single-input models are timed", "load"
        )
    spec = inputs[0]
    if x is None:  # float32 from the start: no float64 copy twice its size on the way
        shape = _input_shape(spec, batch)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
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


@dataclass(frozen=True)
class Scaled:
    """What a window does for models of the speeds its warm-up measured (see the constants).

    Attributes:
        run_ms: each model's run time in the warm-up (median of its last runs).
        block: timed runs of each model per round (``run`` interleaving: ROUND each).
        min_runs: quiet runs of each model a converged window needs.
        budget: seconds after which the window stops unconverged.
    """

    run_ms: tuple[float, ...]
    block: tuple[int, ...]
    min_runs: int
    budget: float

    @classmethod
    def of(cls, settings: TimingSettings, run_ms: Sequence[float]) -> Scaled:
        if settings.interleave == "block":
            block = tuple(
                max(MIN_BLOCK, min(ROUND, round(BLOCK_MS / max(t, 1e-6)))) for t in run_ms
            )
            untimed = [1.0 / b for b in block]  # the block's first run
        else:
            block, untimed = (ROUND,) * len(run_ms), [0.0] * len(run_ms)
        slowest = max(run_ms)
        needed = math.ceil(1000 * RUNS_S / max(slowest, 1e-6))
        min_runs = min(settings.min_runs, max(MIN_RUNS_SLOW, needed))
        rounds = max(math.ceil(min_runs / b) for b in block)
        round_s = sum(b * t * (1 + u) for b, t, u in zip(block, run_ms, untimed, strict=True))
        expected = rounds * round_s / 1000
        budget = max(settings.time_budget_s, min(MAX_BUDGET_S, BUDGET_SLACK * expected))
        return cls(tuple(float(t) for t in run_ms), block, min_runs, budget)


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

    def times(self, tolerance: float | None, part: slice = slice(None)) -> list[list[float]]:
        """Each model's times over the quiet rounds (of ``part`` of the rounds)."""
        keep = self.quiet(tolerance)
        models = len(self.rounds[0]) if self.rounds else 0
        pairs = list(zip(self.rounds, keep, strict=True))[part]
        return [[t for r, ok in pairs if ok for t in r[i]] for i in range(models)]

    def halves(self, tolerance: float | None) -> list[list[dict[str, Any] | None]]:
        """Each model's summary over the quiet rounds of the first and of the second half of
        the window: a ratio that moved between them was disturbed in one model and not the
        other (a host-wide slowdown moves every model alike)."""
        middle = len(self.rounds) // 2
        return [
            [summarize(t) if t else None for t in self.times(tolerance, part)]
            for part in (slice(None, middle), slice(middle, None))
        ]

    def runs(self) -> int:
        """Timed runs of the model that ran most."""
        if not self.rounds:
            return 0
        return max(sum(len(r[i]) for r in self.rounds) for i in range(len(self.rounds[0])))


def _round(sessions, feeds, settings: TimingSettings, scaled: Scaled) -> list[list[float]]:
    """One round: model by model in blocks (one untimed run first), or run by run."""
    clock = time.perf_counter
    times: list[list[float]] = [[] for _ in sessions]
    if settings.interleave == "block":
        for i, sess in enumerate(sessions):
            sess.run(None, feeds[i])
            for _ in range(scaled.block[i]):
                t0 = clock()
                sess.run(None, feeds[i])
                times[i].append((clock() - t0) * 1e3)
        return times
    for _ in range(ROUND):
        for i, sess in enumerate(sessions):
            t0 = clock()
            sess.run(None, feeds[i])
            times[i].append((clock() - t0) * 1e3)
    return times


def _window(sessions, feeds, settings: TimingSettings, scaled: Scaled) -> Window:
    window = Window()
    clock = time.perf_counter
    start = clock()
    min_seconds = max(MIN_WINDOW_FLOOR_S, settings.min_window_s)
    while True:
        times = _round(sessions, feeds, settings, scaled)
        window.rounds.append(times)
        window.medians.append([float(np.median(t)) for t in times])
        elapsed = clock() - start
        stop = window.runs() >= settings.max_runs or elapsed >= scaled.budget
        if elapsed < min_seconds and not stop:
            continue  # it cannot stop converged yet: spare the check (all rounds, sorted)
        quiet = window.times(settings.quiet_tolerance)
        window.converged = min(len(t) for t in quiet) >= scaled.min_runs and (
            max(p10_confidence(np.sort(np.asarray(t))) for t in quiet) <= settings.ci_tolerance
        )
        if window.converged or stop:
            break
    if window.converged:
        window.stopped_by = "ci"
    elif window.runs() >= settings.max_runs:
        window.stopped_by = "max_runs"
    else:
        window.stopped_by = "time_budget"
    window.seconds = clock() - start
    return window


def warm_up(sessions, feeds, settings: TimingSettings) -> list[float]:
    """Untimed runs of each model — ``warmup`` of them, or fewer when they take longer than
    WARMUP_S (at least 2) — and each model's run time: the median of the later half of them."""
    clock = time.perf_counter
    run_ms: list[float] = []
    for sess, feed in zip(sessions, feeds, strict=True):
        times: list[float] = []
        start = clock()
        while len(times) < max(2, settings.warmup):
            t0 = clock()
            sess.run(None, feed)
            times.append((clock() - t0) * 1e3)
            if clock() - start >= WARMUP_S and len(times) >= 2:
                break
        run_ms.append(float(np.median(times[len(times) // 2 :])))
    return run_ms


def measure(
    models: Sequence[str | Path],
    settings: TimingSettings,
    x: np.ndarray | None = None,
    *,
    max_input_bytes: int | None = None,
) -> dict[str, Any]:
    """Time ``models`` in this process, interleaved in one window (see the module docstring).

    ``x`` is the input (its batch is used as it is); None: a seeded random input of each
    model's input shape with the batch axis set to ``settings.batch_size``, refused (stage
    ``input``) before it is made when it would take over ``max_input_bytes`` (None: no limit).
    """
    sessions = _sessions(models, settings)
    if x is None and max_input_bytes is not None:
        for model, sess in zip(models, sessions, strict=True):
            check_input_size(model, sess, settings.batch_size, max_input_bytes)
    return measure_sessions(
        sessions, [_feeds(sess, x, settings.batch_size) for sess in sessions], settings
    )


def measure_sessions(sessions: Sequence, feeds: Sequence, settings: TimingSettings) -> dict:
    """``measure`` on sessions already made (anything with ONNX Runtime's ``run`` and
    ``get_providers``) and their input feeds."""
    try:
        scaled = Scaled.of(settings, warm_up(sessions, feeds, settings))
    except Exception as exc:
        raise ModelRunError(f"the model fails at run time: {_short(exc)}", "run") from exc
    load = CpuLoad()
    window = _window(sessions, feeds, settings, scaled)
    return _reply(window, load.cores(), sessions, feeds, settings, scaled)


def _sessions(models: Sequence[str | Path], settings: TimingSettings) -> list:
    try:  # a provider this ONNX Runtime lacks is a settings error, not a broken model
        runtime.check_provider(settings.provider, field="provider")
    except TargetError as exc:
        raise ModelRunError(str(exc), "settings") from None
    try:
        return [
            runtime.session(
                str(path),
                threads=settings.intra_op_threads,
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


def _reply(
    window: Window,
    other_load: float | None,
    sessions,
    feeds,
    settings: TimingSettings,
    scaled: Scaled,
) -> dict[str, Any]:
    """The window's figures as JSON carries them from the worker or the agent; ``attempts``
    lists the one window (a caller that measures again counts its own)."""
    quiet = window.quiet(settings.quiet_tolerance)
    shape = list(next(iter(feeds[0].values())).shape)
    attempt = {
        "other_load": other_load,
        "seconds": window.seconds,
        "runs": window.runs(),
        "quiet_rounds": int(quiet.sum()),
        "rounds": len(window.rounds),
    }
    return {
        "models": [summarize(t) for t in window.times(settings.quiet_tolerance)],
        "halves": window.halves(settings.quiet_tolerance),
        "other_load": other_load,
        "noisy": other_load is not None and other_load > settings.max_other_load,
        "converged": window.converged,
        "stopped_by": window.stopped_by,
        "window_s": window.seconds,
        "rounds": len(quiet),
        "quiet_rounds": int(quiet.sum()),
        "attempts": [attempt],
        "interleave": settings.interleave,
        "scaled": {  # as JSON carries it from the worker or the agent
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(scaled).items()
        },
        # the provider each session really runs first (ONNX Runtime falls back silently)
        "providers": [sess.get_providers()[0] for sess in sessions],
        "input_shape": shape,
        "fingerprint": hardware.fingerprint(
            threads=settings.intra_op_threads,
            provider=runtime.provider_name(settings.provider),
            graph_optimization=settings.graph_optimization,
            batch=int(shape[0]),
        ),
        "settings": settings.to_dict(),
    }


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


WORKER = "pruna_search.measure._worker"


def run_isolated(
    models: Sequence[str | Path],
    settings: TimingSettings,
    *,
    input_path: str | Path | None = None,
    timeout_s: float = 120.0,
    max_input_bytes: int | None = None,
) -> dict[str, Any]:
    """``measure`` in a separate process, killed after ``timeout_s``.

    The worker runs in its own process group: a Ctrl-C at the terminal reaches the caller (which
    then finishes its trial) but not the measurement in flight; the group is killed when the
    caller gives up (timeout, or the caller itself interrupted). Raises ``ModelRunError`` with
    the stage: ``timeout``, ``crash`` (killed by a signal, e.g. an ONNX Runtime abort), or the
    worker's own ``settings``/``load``/``input``/``run`` (``input``: with no ``input_path``, the
    input made from a model's declared shape would take over ``max_input_bytes``; None: no
    limit).
    """
    request = {
        "models": [str(m) for m in models],
        "settings": settings.to_dict(),
        "input": str(input_path) if input_path is not None else None,
        "max_input_bytes": max_input_bytes,
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
    return _worker_reply(proc.returncode, out, err)


def _worker_reply(returncode: int, out: str, err: str) -> dict[str, Any]:
    """The worker's reply, or the ``ModelRunError`` it reports or its death says."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        raise ModelRunError(f"the measuring process crashed ({name})", "crash")
    try:
        reply = json.loads(out)
    except json.JSONDecodeError:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise ModelRunError(
            f"the measuring process failed (exit {returncode}: {tail})", "crash"
        ) from None
    if "error" in reply:
        raise ModelRunError(reply["error"], reply.get("stage", "run"))
    return reply


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
