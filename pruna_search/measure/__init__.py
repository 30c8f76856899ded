"""Measurements of exported models: the metric in ONNX Runtime and latency on the target.

Latency end to end: ``timing`` (the window protocol, ``run_isolated``; ``_worker`` runs it in
a process of its own), ``runners`` (where a window is timed: here or on a device agent, through
``remote``), ``floors`` (the lowest figures seen, kept by whoever measures), ``latency``
(``compare_latency``: the noise gate's one retry loop and the flags), ``cache`` (figures and
floors on disk), ``profile`` (time per layer from ONNX Runtime's profiler, for the analyzer).
"""

from __future__ import annotations

from .accuracy import onnx_accuracy, onnx_score
from .cache import LatencyCache
from .floors import Floors, baseline_floor, stored_floor
from .latency import Latency, LatencyComparison, Measurer, compare_latency
from .metrics import Metric, metric
from .profile import LayerProfile, ProfileSettings, group_ms, layer_profile
from .remote import AgentClient
from .runners import (
    LatencyRunner,
    LocalRunner,
    LockedRunner,
    RemoteRunner,
    TimingWindow,
    device_key,
    file_hash,
    runner_for,
)

__all__ = [
    "AgentClient",
    "Floors",
    "Latency",
    "LatencyCache",
    "LatencyComparison",
    "LayerProfile",
    "LatencyRunner",
    "LocalRunner",
    "LockedRunner",
    "Measurer",
    "Metric",
    "ProfileSettings",
    "RemoteRunner",
    "TimingWindow",
    "baseline_floor",
    "compare_latency",
    "device_key",
    "file_hash",
    "group_ms",
    "layer_profile",
    "metric",
    "onnx_accuracy",
    "onnx_score",
    "runner_for",
    "stored_floor",
]
