"""Tracking: MLflow (``tracking/mlflow_tracker.py``, the only importer of mlflow) or nothing.

``make_tracker`` returns a :class:`GuardedTracker`: whatever the tracking store does, the study
goes on.
"""

from __future__ import annotations

from .base import (
    ARTIFACTS_DIR,
    CHOSEN_TAG,
    DEFAULT_URI,
    DUPLICATE_TAG,
    FAIL_TAG,
    FEASIBLE_TAG,
    PARETO_TAG,
    REFERENCE_TAG,
    REMEASURED_TAG,
    RUN_KIND_TAG,
    STUDY_TAG,
    STUDY_UID_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
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
    "CHOSEN_TAG",
    "REMEASURED_TAG",
    "DEFAULT_URI",
    "DUPLICATE_TAG",
    "FAIL_TAG",
    "FEASIBLE_TAG",
    "GuardedTracker",
    "PARETO_TAG",
    "REFERENCE_TAG",
    "RUN_KIND_TAG",
    "STUDY_TAG",
    "STUDY_UID_TAG",
    "SWEEP_TAG",
    "StudyEnd",
    "StudyRecord",
    "TRACKERS",
    "TRIAL_TAG",
    "Tracker",
    "TrialRecord",
    "check_uri",
    "make_tracker",
    "sqlite_path",
]
