"""Metric names, parameter name prefixes and the closest-name helper used in error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Metric names (design decision 8): identical in results, Optuna attributes and MLflow.
ACCURACY = "accuracy"
ACCURACY_DROP = "accuracy_drop"
# the trial's latency at the study's dense reference: dense ms / speedup (the same-window ratio),
# so a window in which the whole host ran slower does not move it; what the search ranks by
LATENCY = "latency_ms"
LATENCY_P10 = "latency_ms_p10"
LATENCY_P50 = "latency_ms_p50"
LATENCY_P90 = "latency_ms_p90"
SPEEDUP = "speedup"
SIZE_MB = "size_mb"
COMPRESSION = "compression"
MACS = "macs"
PARAMS = "params"
TRIAL_SECONDS = "trial_seconds"

METRICS = (
    ACCURACY,
    ACCURACY_DROP,
    LATENCY,
    LATENCY_P10,
    LATENCY_P50,
    LATENCY_P90,
    SPEEDUP,
    SIZE_MB,
    COMPRESSION,
    MACS,
    PARAMS,
    TRIAL_SECONDS,
)

# what one line about a chosen model shows (sweep summary rows, registered model version tags)
HEADLINE = (ACCURACY, ACCURACY_DROP, LATENCY, SPEEDUP, SIZE_MB, COMPRESSION)

PRUNE_PARAM = "prune/"
BITS_PARAM = "bits/"


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A short hint for an error message: ``did you mean 'x'?`` or the list of choices."""
    choices = sorted(choices)
    match = closest(name, choices)
    if match is not None:
        return f"did you mean {match!r}?"
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"choose one of: {shown}"
