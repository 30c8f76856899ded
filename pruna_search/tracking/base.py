"""What the search tells a tracker, as plain data, and the trackers that need no server.

The search never depends on tracking: the Optuna study is the source of truth, and
:class:`GuardedTracker` turns any tracker error into one warning and a list of what was not
logged, so an unreachable MLflow server costs the user a line in the log, never a study.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..core.errors import ConfigError

log = logging.getLogger("pruna_search")


DEFAULT_URI = "sqlite:///mlflow.db"
ARTIFACTS_DIR = "mlartifacts"  # beside the SQLite file


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def check_uri(uri: str) -> None:
    """A URI MLflow can use as a tracking store; one clear line otherwise."""
    scheme = urlparse(uri).scheme
    if scheme not in ("sqlite", "http", "https", "postgresql", "mysql", "databricks"):
        raise ConfigError(
            f"tracking.uri: {uri!r} is not a tracking store; use sqlite:///mlflow.db, a "
            "server's http://host:port, or tracking=none (the ./mlruns file store is not used)"
        )
    path = sqlite_path(uri)
    if path is not None and not path.resolve().parent.is_dir():
        raise ConfigError(
            f"tracking.uri: the folder of {uri!r} does not exist; create "
            f"{path.resolve().parent} or point tracking.uri elsewhere"
        )


@dataclass(frozen=True)
class StudyRecord:
    """The parent run of one study (one Hydra job).

    Attributes:
        study: the Optuna study name; a resumed study finds its parent run by it (and by
            ``uid``).
        experiment: the MLflow experiment (default: model and data names).
        tags: ``pruna.*`` tags (model, target, objective, overrides, git, versions, hardware).
        params: the resolved config, flattened (``space.ratios``, ``finetune.lr``, ...).
        uid: the study's own id, set when it was created ("" for a study older than it): a
            study of the same name deleted and created again is another study, another run.
    """

    study: str
    experiment: str
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    uid: str = ""


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: a child run ``trial-<number>``."""

    number: int
    state: str  # "COMPLETE", "FAIL", ...
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    plan_yaml: str | None
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True)
class StudyEnd:
    """What the end of a study adds to the parent run."""

    pareto: Sequence[int]  # trial numbers on the study's Pareto front (Optuna best_trials)
    chosen: int | None
    metrics: Mapping[str, float]  # the chosen model, re-measured after the final fine-tune
    artifacts: Sequence[Path]
    model: Path | None  # best.onnx
    model_name: str  # registered model name, e.g. pruna-resnet20-cpu
    model_tags: Mapping[str, str] = field(default_factory=dict)
    status: str = "FINISHED"
    # latency figures flagged noisy during the run that came back steady when measured again
    # after it, by trial number: the metrics to log on that trial's child run, and why
    remeasured: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    remeasured_why: Mapping[int, str] = field(default_factory=dict)
    # accuracies re-ranked at a higher fidelity after the trials, by trial number: the metrics
    # to add to that trial's child run (accuracy_reranked, accuracy_drop_reranked, rerank_steps)
    reranked: Mapping[int, Mapping[str, float]] = field(default_factory=dict)


class Tracker:
    """The no-op tracker (``tracking=none``); MLflowTracker overrides every method."""

    name = "none"
    where = ""

    def start_study(self, record: StudyRecord) -> None:
        """Create the study's parent run, or find the one a previous run of it made."""

    def logged_trials(self) -> set[int]:
        """Trial numbers that already have a finished child run (to log only what is
        missing, including a child a killed process left half-logged)."""
        return set()

    def log_trial(self, record: TrialRecord) -> None:
        """Log one finished trial as a child run of the study's run."""

    def end_study(self, end: StudyEnd) -> None:
        """Tags on the front and the chosen trial, plots and files, the model in the registry."""

    def close(self, status: str = "FINISHED") -> None:
        """Mark the parent run finished (or KILLED / FAILED)."""


ERROR_CHARS = 160  # of a tracking error, in the warning and the closing line


class GuardedTracker(Tracker):
    """Wraps a tracker so that it never breaks a study.

    The first error is logged as one warning; tracking then stops for this job (a server that
    is down would otherwise cost a timeout per trial), and :attr:`not_logged` says what was
    skipped, for the end-of-study summary.
    """

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.name = inner.name
        self.where = inner.where
        self.error: str | None = None
        self.not_logged: list[str] = []

    def _call(self, what: str, method: str, *args: Any, default: Any = None) -> Any:
        if self.error is not None:
            if what not in self.not_logged:  # a trial is tried again at the end of the study
                self.not_logged.append(what)
            return default
        try:
            return getattr(self.inner, method)(*args)
        except Exception as exc:  # noqa: BLE001 - tracking must never break a study
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if len(first) > ERROR_CHARS:  # a server's long retry report: its head says enough
                first = first[: ERROR_CHARS - 3] + "..."
            self.error = f"{type(exc).__name__}: {first}"
            self.not_logged.append(what)
            log.warning(
                f"tracking {self.name} at {self.where}: {self.error}; the search goes on "
                "without tracking (the study keeps every trial; resume later to log them)"
            )
            return default

    def start_study(self, record: StudyRecord) -> None:
        self._call("the study's parent run", "start_study", record)

    def logged_trials(self) -> set[int]:
        return self._call("the list of logged trials", "logged_trials", default=set())

    def log_trial(self, record: TrialRecord) -> None:
        self._call(f"trial {record.number}", "log_trial", record)

    def end_study(self, end: StudyEnd) -> None:
        self._call("the end-of-study tags, plots and model", "end_study", end)

    def close(self, status: str = "FINISHED") -> None:
        self._call("the parent run's status", "close", status)

    def summary(self) -> str | None:
        """One line for the end of the study, or None when everything was logged."""
        if not self.not_logged:
            return None
        trials = [w for w in self.not_logged if w.startswith("trial ")]
        other = [w for w in self.not_logged if not w.startswith("trial ")]
        parts = ([f"{len(trials)} trial runs"] if trials else []) + other
        return f"not logged to {self.name} ({self.error}): " + ", ".join(parts)


__all__ = [
    "ARTIFACTS_DIR",
    "DEFAULT_URI",
    "GuardedTracker",
    "StudyEnd",
    "StudyRecord",
    "Tracker",
    "TrialRecord",
    "check_uri",
    "sqlite_path",
]
