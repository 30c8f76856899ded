"""Facts about the machine that measures: CPU flags and a fingerprint recorded beside figures."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from . import runtime

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_vnni() -> bool:
    """Whether int8 dot products run without int16 saturation (VNNI or AMX).

    Without VNNI, x86 int8 kernels multiply uint8 activations by int8 weights with an
    instruction that saturates pairs of products at int16; full-range int8 weights then lose
    accuracy (points on ResNet-20/digits: docs/design.md) and 7-bit weights
    (``reduce_range``) lose none. ARM CPUs do not have this problem.
    """
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    return any(flag in cpu_flags() for flag in VNNI_FLAGS)


def fingerprint(**settings: str | int) -> dict[str, str | int]:
    """What is recorded next to every latency figure: the CPU, the host's name, ONNX Runtime and
    its providers, plus the measurement's own ``settings`` (threads, provider, batch, ...)."""
    return {
        "cpu": cpu_model(),
        "host": platform.node(),
        "machine": platform.machine(),
        "cores": os.cpu_count() or 0,
        "vnni": int(has_vnni()),
        "onnxruntime": runtime.version(),
        "providers": ",".join(runtime.available_providers()),
        "python": platform.python_version(),
        **settings,
    }
