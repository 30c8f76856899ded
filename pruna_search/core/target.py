"""Targets: what a device really executes and how latency is measured on it.

A target declares, per layer kind, the precisions it runs faster or smaller than fp32
(design decision 3) — its *capabilities*; the search space never offers anything else. It
also says how latency is measured: the ONNX Runtime session (provider, threads, graph
optimization), the batch, the timing protocol (``measure/timing.py``; its settings are the
``TimingSettings`` a target extends, under the same names) and where: in a local process
(``runner: local``) or on a device agent over HTTP (``runner: remote``, ``url``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .errors import TargetError
from .names import did_you_mean
from .precision import Precision
from .timing import ModelRunError, TimingSettings

# Layer kinds, as analysis reports them: "conv" (Conv2d, depthwise included) and "linear".
CONV = "conv"
LINEAR = "linear"
KINDS = (CONV, LINEAR)
RUNNERS = ("local", "remote")
DEFAULT_TOKEN_ENV = "PRUNA_AGENT_TOKEN"
# keys of earlier versions, and what replaced them
RENAMED = {"repeats": "target.min_runs / target.max_runs (timed runs, at least / at most)"}


@dataclass(frozen=True)
class Target(TimingSettings):
    """A deployment target: capabilities and measurement settings.

    The timing settings (``batch_size``, ``intra_op_threads``, ``warmup``, ``min_runs``,
    ``max_runs``, ``time_budget_s``, ``ci_tolerance``, ``min_window_s``, ``quiet_tolerance``,
    ``provider``, ``provider_options``, ``graph_optimization``, ``max_other_load``,
    ``interleave``) are ``TimingSettings``'s, under the same names; a target's ``provider`` is
    ``cpu`` by default.

    Attributes:
        name: short name used in study names and MLflow tags.
        precisions: layer kind -> precisions the target executes for that kind
            (``capabilities`` in ``conf/target/*.yaml``).
        max_baseline_drift: a dense p10 more than this fraction above its floor is reported
            as host drift, and an int8 probe that much slower against the dense model than
            its floor flags the window; ``None`` turns both off.
        noise_retries: windows measured again at most while the speedup is at risk, the
            window ran out of time unsettled, or other work used more than ``max_other_load``
            cores (the noise gate, one loop: ``measure/latency.py``).
        noise_wait_s: seconds of pause before each window measured again.
        floor_max_age_h: how long, in hours, a floor (the lowest dense or int8 probe p10) that
            an earlier process measured on the same machine still holds this one: they are kept
            in the latency cache file, so a study that starts in a slow phase of the host is
            still judged against the figures measured before it. ``None``: floors live only in
            the process that measured them.
        int8_probe: time the dense model at int8 in every window that measures a quantized
            plan, held to a floor of its own like the baseline (some slow phases of a shared
            host slow int8 kernels and not fp32 ones; the dense fp32 baseline cannot see them).
        timeout_s: a measurement taking longer is killed (a hanging model) and fails.
        reduce_range: quantize int8 weights to 7 bits. ``None`` decides from the measuring
            CPU: on x86 without VNNI, full-range int8 weights saturate and lose accuracy.
        runner: ``local`` (a separate process here) or ``remote`` (a device agent).
        url: the agent's address for ``runner: remote``.
        token_env: the environment variable holding the agent's token.
        retries: tries of a request to the agent before the measurement fails.
        cache: reuse figures of identical models measured with identical settings.
    """

    name: str = field(kw_only=True)  # keyword only: the timing settings come first
    precisions: Mapping[str, tuple[Precision, ...]] = field(default_factory=dict)
    provider: str = "cpu"  # TimingSettings's field, with the short name as the default
    max_baseline_drift: float | None = 0.03
    noise_retries: int = 2
    noise_wait_s: float = 5.0
    int8_probe: bool = True
    floor_max_age_h: float | None = 24.0
    timeout_s: float = 120.0
    reduce_range: bool | None = None
    runner: str = "local"
    url: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    retries: int = 3
    cache: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()  # the timing settings: a ModelRunError naming the field
        retries = self.noise_retries
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TargetError(f"target.noise_retries: {retries!r} must be an integer >= 0")
        wait = self.noise_wait_s
        if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
            raise TargetError(f"target.noise_wait_s: {wait!r} must be a number >= 0")

    def supports(self, kind: str, precision: Precision) -> bool:
        return precision in self.precisions.get(kind, (Precision.FP32,))

    def choices(self, kind: str) -> tuple[Precision, ...]:
        """Precisions offered for a layer kind, fp32 first."""
        return self.precisions.get(kind, (Precision.FP32,))

    def lowest_at_least(self, kind: str, bits: int) -> Precision:
        """The most compressed precision this target runs for ``kind`` with at least ``bits``."""
        ok = [p for p in self.choices(kind) if p.bits >= bits]
        return min(ok, key=lambda p: p.bits) if ok else Precision.FP32

    def timing(self) -> TimingSettings:
        """The timing protocol's settings (what the worker and the agent receive)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TimingSettings)}
        return TimingSettings(**dict(values, provider_options=dict(self.provider_options)))

    def identity(self) -> dict[str, Any]:
        """The settings a latency figure depends on (study identity and cache key); how long
        or how often it is measured, and whether it is cached, are left out."""
        return {
            "name": self.name,
            "capabilities": {k: [p.value for p in v] for k, v in sorted(self.precisions.items())},
            "provider": self.provider,
            "provider_options": dict(self.provider_options),
            "intra_op_threads": self.intra_op_threads,
            "batch_size": self.batch_size,
            "graph_optimization": self.graph_optimization,
            "reduce_range": self.reduce_range,
            "runner": self.runner,
            "url": self.url if self.runner == "remote" else None,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Target:
        """A target from a ``conf/target/*.yaml`` mapping: a built-in name, then overrides.

        Every value is checked; the error names the field, the value and the fix.
        """
        config = dict(config)
        known = (
            "capabilities",
            *(f.name for f in dataclasses.fields(cls) if f.name != "precisions"),
        )
        for key in config:
            if key in RENAMED:
                raise TargetError(f"target.{key}: renamed; use {RENAMED[key]}")
            if key not in known:
                raise TargetError(f"target.{key}: unknown option; {did_you_mean(key, known)}")
        name = config.pop("name", "cpu")
        capabilities = config.pop("capabilities", None)
        if str(name) not in TARGETS and capabilities is None:
            raise TargetError(
                f"target: unknown target {name!r} without capabilities; "
                f"{did_you_mean(str(name), TARGETS)}, or declare target.capabilities"
            )
        base = TARGETS.get(str(name), CPU)
        values: dict[str, Any] = {"name": str(name)}
        if capabilities is not None:
            values["precisions"] = _capabilities(capabilities)
        values.update({k: v for k, v in config.items() if v is not None})
        values.update({k: config[k] for k in NULLABLE if k in config})
        _check_int("retries", values.get("retries", base.retries), 1)
        _check_number("timeout_s", values.get("timeout_s", base.timeout_s), 1e-9)
        try:  # the timing settings check themselves; the error names the field
            target = dataclasses.replace(base, **values)
        except ModelRunError as exc:
            raise TargetError(f"target.{exc}") from None
        _check_options(target)
        return target


def _check_options(target: Target) -> None:
    """The checks of the target's own options (the timing settings check themselves)."""
    if target.runner not in RUNNERS:
        raise TargetError(
            f"target.runner: {target.runner!r} is unknown; {did_you_mean(target.runner, RUNNERS)}"
        )
    if target.runner == "remote" and not target.url:
        raise TargetError(
            "target.url: missing for runner remote; set it to the agent's address, e.g. "
            "target.url=http://127.0.0.1:8765"
        )
    if target.runner == "local" and target.url:
        raise TargetError(
            f"target.url: {target.url!r} is set but target.runner is local, which times on this "
            "machine; add target.runner=remote (or target=remote) to time on that agent, or "
            "drop target.url"
        )
    address = urlparse(str(target.url or ""))
    if target.runner == "remote" and (
        address.scheme not in ("http", "https") or not address.netloc
    ):
        raise TargetError(
            f"target.url: {target.url!r} is not an agent's address; use http://host:port, e.g. "
            "target.url=http://127.0.0.1:8765"
        )
    drift = target.max_baseline_drift
    if drift is not None and not _positive(drift):
        raise TargetError(
            f"target.max_baseline_drift: {drift!r} must be a number > 0, or null to turn "
            "the check off"
        )
    age = target.floor_max_age_h
    if age is not None and not _positive(age):
        raise TargetError(
            f"target.floor_max_age_h: {age!r} must be a number of hours > 0, or null to "
            "keep floors only in the process that measured them"
        )
    for flag in ("cache", "int8_probe"):
        value = getattr(target, flag)
        if not isinstance(value, bool):
            raise TargetError(f"target.{flag}: {value!r} must be true or false")


# options whose null is a setting of its own (not "use the default")
NULLABLE = ("reduce_range", "quiet_tolerance", "max_baseline_drift", "floor_max_age_h")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_int(key: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TargetError(f"target.{key}: {value!r} must be an integer >= {minimum}")


def _check_number(key: str, value: Any, minimum: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
        raise TargetError(f"target.{key}: {value!r} must be a number >= {minimum:g}")


def _capabilities(value: Any) -> dict[str, tuple[Precision, ...]]:
    if not isinstance(value, Mapping):
        raise TargetError(
            f"target.capabilities: {value!r} must map layer kinds to precisions, e.g. "
            "{conv: [fp32, int8], linear: [fp32, int8, int4]}"
        )
    result: dict[str, tuple[Precision, ...]] = {}
    for kind, precisions in value.items():
        if kind not in KINDS:
            raise TargetError(
                f"target.capabilities.{kind}: unknown layer kind; {did_you_mean(str(kind), KINDS)}"
            )
        items = [precisions] if isinstance(precisions, str) else list(precisions or [])
        parsed = []
        for item in items:
            try:
                parsed.append(Precision(str(item)))
            except ValueError:
                raise TargetError(
                    f"target.capabilities.{kind}: {item!r} is not a precision; use "
                    f"{', '.join(p.value for p in Precision)}"
                ) from None
        if Precision.FP32 not in parsed:
            parsed.insert(0, Precision.FP32)
        result[kind] = tuple(sorted(set(parsed), key=lambda p: -p.bits))
    return result


CPU = Target(
    name="cpu",
    precisions={
        # Static QDQ int8 (uint8 activations, int8 per-channel weights) is 1.9-2x on CPU;
        # int4 weight-only runs only as MatMulNBits, i.e. for Linear layers (docs/design.md).
        CONV: (Precision.FP32, Precision.INT8),
        LINEAR: (Precision.FP32, Precision.INT8, Precision.INT4),
    },
)

TARGETS: dict[str, Target] = {
    "cpu": CPU,
    "cpu_batch32": dataclasses.replace(CPU, name="cpu_batch32", batch_size=32),
}


def get_target(target: str | Target) -> Target:
    """Resolve a target name (``"cpu"``) or pass a Target through."""
    if isinstance(target, Target):
        return target
    try:
        return TARGETS[str(target)]
    except KeyError:
        raise TargetError(
            f"target: unknown target {target!r}; {did_you_mean(str(target), TARGETS)}"
        ) from None
