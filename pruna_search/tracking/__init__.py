"""Tracking: MLflow (``tracking/mlflow_tracker.py``, the only importer of mlflow) or nothing.

``make_tracker`` returns a :class:`GuardedTracker`: whatever the tracking store does, the study
goes on.
"""

from __future__ import annotations

from .base import (
    ARTIFACTS_DIR,
    DEFAULT_URI,
    GuardedTracker,
    StudyEnd,
    StudyRecord,
    Tracker,
    TrialRecord,
    check_uri,
    sqlite_path,
)

TRACKERS = ("mlflow", "none")


def make_tracker(name: str, uri: str = DEFAULT_URI, *, register: bool = True) -> GuardedTracker:
    """The tracker ``tracking.name`` asks for (imports mlflow only when it is used)."""
    if name == "none":
        return GuardedTracker(Tracker())
    from .mlflow_tracker import MlflowTracker

    return GuardedTracker(MlflowTracker(uri, register=register))


__all__ = [
    "ARTIFACTS_DIR",
    "DEFAULT_URI",
    "GuardedTracker",
    "StudyEnd",
    "StudyRecord",
    "TRACKERS",
    "Tracker",
    "TrialRecord",
    "check_uri",
    "make_tracker",
    "sqlite_path",
]
