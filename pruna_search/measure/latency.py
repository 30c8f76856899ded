"""Latency measured on the target, interleaved with the dense baseline, never estimated.

A *runner* (``measure/runners.py``) times models with the protocol of ``measure/timing.py``:
``LocalRunner`` in a separate process on this machine, ``RemoteRunner`` on a device agent over
HTTP. Both return the same figures — p10/p50/p90, IQR, runs, the p10's confidence, the other
CPU load seen during the window, the two halves of the window — with the hardware fingerprint
of the machine that measured. The speedup is baseline p10 / candidate p10 from one window, and
it is what the search ranks by (``latency_ms`` is the study's dense reference over it).

A figure is *flagged* (``noisy``) only when that ratio is at risk (``ratio_risk``): a session
on another provider, a speedup that moved between the window's halves (a load that hit one
model and not the other), or a probe that says int8 kernels ran slow against fp32 in this
window. A window that ran out of time before its p10s settled is treated the same way. Such a
window is measured again — as is one during which other work used more than
``max_other_load`` cores — in one loop (``noise_retries`` more windows at most,
``noise_wait_s`` apart), and flagged when every window was at risk. How the *whole host*
drifted — the dense p10 above its *floor* (``measure/floors.py``: the lowest p10 seen for this
file, machine and settings, by the caller's ``Floors`` and, with a cache file, in the file for
``target.floor_max_age_h`` hours), or other work's load — is reported (``drift``), not
flagged: a host-wide slowdown moves both p10s of a window and leaves their ratio alone.

Some slow phases of a shared host slow int8 kernels and leave fp32 ones alone (measured: an
int8 model 60–80 % slower while the dense fp32 model stayed within 3 % of its floor): that
would understate an int8 candidate's speedup against the fp32 baseline. So a comparison may
carry a *reference*, a third model timed in the same window only as a probe (the search passes
the dense model at int8 for every quantized plan); its time *relative to the baseline's* is
held to a floor of its own.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core import runtime
from ..core.target import Target
from .cache import LatencyCache
from .floors import Floors, floor_key, floor_settings, protocol_of
from .runners import LatencyRunner, file_hash, runner_for, timed_input
from .timing import summarize


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
    reference: Latency | None = None  # the probe timed in the same window (None: none)
    other_load: float | None = None  # cores busy with other work during the window
    noisy: bool = False  # the speedup is at risk (see ``ratio_risk``): flagged
    noise: str = ""  # why it is flagged
    drift: str = ""  # how the whole host differed from its floor (reported, not flagged)
    # how much the speedup moved between the two halves of the window, and how much the
    # halves' own confidence intervals (plus ci_tolerance) allow; None: too few runs to tell
    ratio_moved: float | None = None
    ratio_allowed: float | None = None
    providers: tuple[str, ...] = ()  # the provider each session really ran first
    interleave: str = "block"
    converged: bool = True  # both p10s reached the target's ci_tolerance
    # what ended the window: "ci" (converged), "max_runs", or "time_budget" (unsettled)
    stopped_by: str = "ci"
    attempts: int = 1  # windows measured (the noise gate measures again: ``_measure_steady``)
    window_s: float = 0.0
    rounds: int = 0  # rounds of alternating runs in the window
    quiet_rounds: int = 0  # of which outside the host's slow phases (the figures use these)
    runner: str = "local"
    fingerprint: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def speedup(self) -> float:
        return self.baseline.p10 / self.candidate.p10

    @property
    def unsettled(self) -> bool:
        """The window ran out of time before the p10s reached the target's ci_tolerance (a
        window that stopped at ``max_runs`` is the protocol's choice, not a disturbance)."""
        return self.stopped_by == "time_budget"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, cached: bool = False) -> LatencyComparison:
        values = dict(values, cached=cached)
        values["providers"] = tuple(values.get("providers") or ())
        values["candidate"] = Latency(**values["candidate"])
        values["baseline"] = Latency(**values["baseline"])
        if values.get("reference") is not None:
            values["reference"] = Latency(**values["reference"])
        return cls(**values)

    @classmethod
    def from_reply(cls, reply: dict, runner: str) -> LatencyComparison:
        """From a worker's (or agent's) reply timing [baseline, candidate(, reference)]."""
        base, cand, *probe = (Latency(**m) for m in reply["models"])
        moved, allowed = _halves_moved(reply)
        return cls(
            candidate=cand,
            baseline=base,
            reference=probe[0] if probe else None,
            other_load=reply.get("other_load"),
            converged=bool(reply.get("converged", True)),
            stopped_by=str(reply.get("stopped_by") or "ci"),  # agents before 0.9 do not say
            attempts=len(reply.get("attempts") or [1]),
            window_s=float(reply.get("window_s", 0.0)),
            rounds=int(reply.get("rounds", 0)),
            quiet_rounds=int(reply.get("quiet_rounds", 0)),
            ratio_moved=moved,
            ratio_allowed=allowed,
            providers=tuple(reply.get("providers") or ()),
            interleave=str(reply.get("interleave") or "run"),
            runner=runner,
            fingerprint=dict(reply.get("fingerprint") or {}),
        )


def _halves_moved(reply: dict) -> tuple[float | None, float | None]:
    """How much the candidate's speedup moved between the window's halves (|s1/s2 - 1|), and
    what the halves allow: ``ci_tolerance`` plus their p10s' combined 95 % half-widths."""
    halves = reply.get("halves") or []
    if len(halves) != 2 or any(len(h) < 2 or h[0] is None or h[1] is None for h in halves):
        return None, None
    cis = [m.get("ci") for h in halves for m in h[:2]]
    if any(ci is None for ci in cis):
        return None, None
    first, second = ((h[0]["p10"] / h[1]["p10"]) for h in halves)
    tolerance = float((reply.get("settings") or {}).get("ci_tolerance", 0.015))
    return abs(first / second - 1), tolerance + math.sqrt(sum(ci * ci for ci in cis))


@dataclass
class Measurer:
    """Who times a comparison and what it remembers: the ``runner`` (None: the target's), the
    figures' ``cache`` (None: none) and the ``floors`` (None: a fresh ``Floors`` on the cache's
    file, for this comparison alone). Whoever measures many comparisons holds one ``Floors``
    (the search's ``Evaluator``) so every window is judged against the floors of the others."""

    runner: LatencyRunner | None = None
    cache: LatencyCache | None = None
    floors: Floors | None = None


def compare_latency(
    candidate: str | Path,
    baseline: str | Path,
    example: np.ndarray,
    target: Target,
    *,
    reference: str | Path | None = None,
    measurer: Measurer | None = None,
) -> LatencyComparison:
    """Time ``candidate`` and ``baseline`` alternately on ``example`` (batch of the target).

    With ``measurer.cache`` (and ``target.cache``), a result for the same two files, target
    settings, machine and input shape is reused; results the noise gate flagged are not stored.
    The floors live in ``measurer.floors`` (and its cache file, ``target.floor_max_age_h``);
    without them, in a fresh ``Floors`` on ``measurer.cache``'s file, whatever ``target.cache``.
    ``reference``: a third model timed in the window as a probe of the host's state (its p10
    is held to a floor of its own); left out when it is the candidate itself.
    """
    given = measurer or Measurer()
    cache = given.cache
    runner = given.runner or runner_for(target)
    x = timed_input(example, target)
    figures = cache if cache is not None and target.cache else None  # where figures are kept
    # the settings a figure depends on (the cache key)
    base_hash = file_hash(baseline)
    settings = {
        "target": target.identity(),
        "protocol": protocol_of(target),
        "machine": runner.identity(),
        "shape": list(x.shape),
    }
    key = None
    cand_hash = file_hash(candidate) if figures is not None or reference is not None else ""
    if figures is not None:
        key = figures.key(cand_hash, base_hash, settings)
        hit = figures.get(key)
        if hit is not None:
            return LatencyComparison.from_dict(hit, cached=True)
    models = [Path(baseline), Path(candidate)]
    where = floor_settings(target, runner, x.shape)
    floor_keys = [floor_key(base_hash, where)]
    if reference is not None:
        ref_hash = file_hash(reference)
        if ref_hash != cand_hash:
            models.append(Path(reference))
            floor_keys.append(floor_key(ref_hash, where, reference=True))
    store = given.floors or Floors.of(target, cache)
    comparison = _measure_steady(runner, store, models, x, target, floor_keys)
    if figures is not None and key is not None and not comparison.noisy:
        figures.put(
            key, comparison.to_dict(), candidate=cand_hash, baseline=base_hash, settings=settings
        )
    return comparison


def _measure_steady(
    runner: LatencyRunner,
    store: Floors,
    models: list[Path],
    x: np.ndarray,
    target: Target,
    keys: list[str],
) -> LatencyComparison:
    """One window of ``models`` (baseline, candidate, optional reference), measured again —
    the noise gate, the one retry loop: at most ``noise_retries`` more windows,
    ``noise_wait_s`` apart — while its speedup is at risk (``ratio_risk``), it ran out of time
    unsettled, or other work kept the host busy (``_busy``); flagged ``noisy`` when every
    window's speedup was at risk or unsettled. How the whole host drifted from its floors
    (``keys``: the baseline's, then the reference's; ``store`` holds them) and other work's
    load are reported, not flagged: the speedup is a ratio of two models timed in the same
    window, which a host-wide drift leaves alone."""
    label = runner.name if runner.name == "local" else f"remote {target.url}"
    floors = [store.get(key) for key in keys]
    best: LatencyComparison | None = None
    windows = 0
    for attempt in range(target.noise_retries + 1):
        if attempt:
            time.sleep(target.noise_wait_s)
        window = LatencyComparison.from_reply(runner.measure(models, x), label)
        windows += window.attempts
        window = replace(window, noise=ratio_risk(window, floors, target, store, keys))
        if best is None or _steadier(window, best, target):
            best = window
        if not (best.noise or best.unsettled or _busy(best, target)):
            break
    assert best is not None
    drift = _drift_text(best, floors[0], target, store.origin(keys[0]))
    result = replace(best, attempts=windows, drift=drift)
    if best.noise or best.unsettled:
        plural = "s" if windows != 1 else ""
        reasons = [best.noise] if best.noise else []
        if best.unsettled:
            reasons.append(
                f"the p10s never settled within ±{100 * target.ci_tolerance:g} % in the "
                "window's time budget"
            )
        reason = "; ".join(reasons)
        result = replace(result, noisy=True, noise=f"{reason}, in {windows} window{plural}")
    elif best.converged:
        store.add(keys[0], best.baseline.p10, floors[0])
        if len(keys) > 1 and best.reference is not None:
            store.add(keys[1], best.reference.p10 / best.baseline.p10, floors[1])
    return result


def ratio_risk(
    window: LatencyComparison,
    floors: list[float | None],
    target: Target,
    store: Floors | None = None,
    keys: list[str] | None = None,
) -> str:
    """Why the window's speedup cannot be trusted, or "" when it can:

    - a session ran on another provider than the target's (ONNX Runtime falls back silently);
    - the speedup moved between the two halves of the window by more than ``ci_tolerance``
      beyond the halves' own confidence: a load that hit one model and not the other;
    - the reference (the dense model at int8) ran slower *relative to the baseline* than its
      floor by more than ``max_baseline_drift``: a slow phase that slows int8 kernels and not
      fp32 ones, which would understate every int8 candidate's speedup.
    """
    wanted = runtime.provider_name(target.provider)
    wrong = [p for p in window.providers if p != wanted]
    if wrong:
        return f"ONNX Runtime ran a model on {wrong[0]}, not {wanted} (the provider refused it)"
    if window.ratio_moved is not None and window.ratio_moved > (window.ratio_allowed or 0.0):
        return (
            f"the speedup moved {100 * window.ratio_moved:.1f} % between the halves of the "
            "window (a load that hit one model and not the other)"
        )
    floor = floors[1] if len(floors) > 1 else None
    probe = window.reference
    if probe is None or floor is None or target.max_baseline_drift is None:
        return ""
    relative = probe.p10 / window.baseline.p10
    slack = math.hypot(probe.ci or 0.0, window.baseline.ci or 0.0)
    if relative * (1 - slack) <= floor * (1 + target.max_baseline_drift):
        return ""
    origin = store.origin(keys[1]) if store is not None and keys else "measured before"
    return (
        f"int8 kernels ran {100 * (relative / floor - 1):.1f} % slower against fp32 than the "
        f"lowest ratio {origin} (a slow phase of the host that slows int8 kernels only)"
    )


def _drift_text(
    window: LatencyComparison, floor: float | None, target: Target, origin: str
) -> str:
    """How the whole host differed: the dense p10 above its floor (beyond its own interval and
    ``max_baseline_drift``; ``origin`` says when the floor was measured) and other work's load
    above ``max_other_load``; "" when neither."""
    parts = []
    base = window.baseline
    drift = target.max_baseline_drift
    if (
        floor is not None
        and drift is not None
        and base.ci is not None
        and base.p10 * (1 - base.ci) > floor * (1 + drift)
    ):
        parts.append(
            f"host {100 * (base.p10 / floor - 1):.1f} % slower than the dense floor "
            f"{floor:.3f} ms {origin}"
        )
    if _busy(window, target):
        parts.append(f"other work used {window.other_load:.2f} cores")
    return "; ".join(parts)


def _busy(window: LatencyComparison, target: Target) -> bool:
    """Other work used more than ``max_other_load`` cores during the window."""
    return window.other_load is not None and window.other_load > target.max_other_load


def _steadier(window: LatencyComparison, than: LatencyComparison, target: Target) -> bool:
    """A window whose speedup is not at risk beats one whose is, a window that settled beats
    one that ran out of time, a converged one beats one that stopped at ``max_runs``, a quiet
    host beats a busy one (``_busy``); then the lower dense p10 wins."""
    if bool(window.noise) != bool(than.noise):
        return not window.noise
    if window.unsettled != than.unsettled:
        return not window.unsettled
    if window.converged != than.converged:
        return window.converged
    if _busy(window, target) != _busy(than, target):
        return not _busy(window, target)
    return window.baseline.p10 < than.baseline.p10
