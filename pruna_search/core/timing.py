"""The latency protocol's settings: one window's ``TimingSettings`` and ``ModelRunError``.

A plain type (no numpy, no ONNX Runtime): the target extends it (``core/target.py``), the device
agent reads it from a request's ``settings`` JSON. The protocol itself lives in
``measure/timing.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MeasurementError

INTERLEAVE = ("block", "run")
GRAPH_LEVELS = ("disabled", "basic", "extended", "all")  # ONNX Runtime graph optimization


class ModelRunError(MeasurementError):
    """A model could not be measured; ``stage`` says where: ``settings``, ``load``, ``run``,
    ``timeout`` or ``crash``."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class TimingSettings:
    """How one window is measured: the target's timing settings, under the names
    ``conf/target/*.yaml`` gives them (``Target`` extends this class), and the device agent's
    ``settings`` JSON. See ``measure/timing.py`` for the protocol.

    Attributes:
        batch_size: batch size of the latency measurement.
        intra_op_threads: intra-op threads used for latency (1 is stable on a busy machine;
            see docs/design.md).
        warmup: untimed runs of each model before timing (at least 20 in a search; smaller
            values are for tests).
        min_runs / max_runs: timed runs per model (alternating with the baseline): at least
            (quiet ones) / at most (all).
        time_budget_s: seconds of timed runs per window before it stops unconverged.
        ci_tolerance: stop timing once the p10's 95 % interval is within this fraction.
        min_window_s: a window lasts at least this long, to span the host's slow phases (never
            below 0.25 s, the resolution of the other-load figure).
        quiet_tolerance: rounds where a model's median is more than this fraction above its
            fast rounds (10th percentile) are left out (slow phases); ``None`` keeps all.
        provider: ONNX Runtime execution provider, by its short name (``cpu``, ``cuda``,
            ``openvino`` and others) or its full one; it must be in the ONNX Runtime that
            measures.
        provider_options: options passed to that provider.
        graph_optimization: ``all`` (default), ``extended``, ``basic`` or ``disabled``.
        max_other_load: cores of other work on the machine above which a window is measured
            again (the noise gate: the target's ``noise_retries`` and ``noise_wait_s``); a
            window's reply says ``noisy`` then.
        interleave: ``block`` (default: each model runs a block of consecutive runs, the first
            one untimed, warm caches, as on a device running one model on a stream of inputs)
            or ``run`` (the models alternate run by run: cold caches, as where the model runs
            between other work).
    """

    batch_size: int = 1
    intra_op_threads: int = 1
    warmup: int = 20
    min_runs: int = 100
    max_runs: int = 5000
    time_budget_s: float = 10.0
    ci_tolerance: float = 0.015
    min_window_s: float = 1.0
    quiet_tolerance: float | None = 0.05
    provider: str = "CPUExecutionProvider"
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    graph_optimization: str = "all"
    max_other_load: float = 0.5
    interleave: str = "block"

    def __post_init__(self) -> None:
        self._check_counts()
        for name in ("time_budget_s", "ci_tolerance", "min_window_s", "max_other_load"):
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
        self._check_session()

    def _check_counts(self) -> None:
        for name in ("batch_size", "intra_op_threads", "min_runs", "max_runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelRunError(f"{name}: {value!r} must be an integer >= 1", "settings")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ModelRunError(f"warmup: {self.warmup!r} must be an integer >= 0", "settings")
        if self.max_runs < self.min_runs:
            raise ModelRunError(
                f"max_runs: {self.max_runs} is below min_runs {self.min_runs}; raise max_runs",
                "settings",
            )

    def _check_session(self) -> None:
        if self.interleave not in INTERLEAVE:
            raise ModelRunError(
                f"interleave: {self.interleave!r} is unknown; use block (warm caches, the "
                "default) or run (cold caches)",
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
