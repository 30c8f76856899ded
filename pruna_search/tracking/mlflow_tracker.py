"""MLflow tracking (the only importer of mlflow).

One parent run per study, one nested child run ``trial-<n>`` per trial, the end-of-study files on
the parent, ``best.onnx`` logged as an ONNX model and registered. Logging goes through
``MlflowClient`` with one ``log_batch`` per run (scripts/bench_tracking.py), never through
``optuna_integration.MLflowCallback`` (deprecated) or the ``./mlruns`` file store.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core import keys
from ..core.keys import (
    CHOSEN_TAG,
    PARETO_TAG,
    REMEASURED_TAG,
    RUN_KIND_TAG,
    STUDY_TAG,
    STUDY_UID_TAG,
    TRIAL_TAG,
)
from .base import (
    ARTIFACTS_DIR,
    DEFAULT_URI,
    StudyEnd,
    StudyRecord,
    Tracker,
    TrialRecord,
    check_uri,
    sqlite_path,
)
from .ui import VIEW_TAGS, base_url, view_url

# A server that is down must cost seconds, not MLflow's default minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import mlflow  # noqa: E402
import mlflow.onnx  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Experiment, Metric, Param, Run, RunTag  # noqa: E402
from mlflow.utils.mlflow_tags import (  # noqa: E402
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

log = logging.getLogger("pruna_search")
for noisy in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

MAX_PARAM_LENGTH = 6000
# the experiment's kind, as MLflow records it (MLflow 3.17's UI takes its mode from the URL
# instead: ``ui.UI_PAGE``)
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
SOURCE = "pruna-search"
# the kind, and the saved views the UI opens the experiment on (tracking/ui.py)
EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, **VIEW_TAGS}


def source_tags(commit: str | None = None) -> dict[str, str]:
    """Who and what made a run, as MLflow's UI shows it (User, Source, Git commit)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        user = "unknown"
    tags = {MLFLOW_USER: user, MLFLOW_SOURCE_NAME: SOURCE, MLFLOW_SOURCE_TYPE: "LOCAL"}
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


CHAMPION = "champion"  # the alias of the registered version a study shipped last
BATCH = 100  # MLflow's limit of params per log_batch


def _chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _param_value(value: Any) -> str:
    return str(value)[:MAX_PARAM_LENGTH]


class MlflowTracker(Tracker):
    """Logs a study to an MLflow tracking store (SQLite file or server)."""

    name = "mlflow"

    def __init__(self, uri: str = DEFAULT_URI, *, register: bool = True) -> None:
        check_uri(uri)
        self.uri = uri
        self.where = uri
        self.register = register
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.seconds = 0.0  # spent in log_trial, for bench_tracking.py

    # ---- the parent run -------------------------------------------------------------------
    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            tag_missing(self.client, found, EXPERIMENT_TAGS)  # made by an older version
            return found.experiment_id
        location = None
        db = sqlite_path(self.uri)
        if db is not None:
            location = (db.resolve().parent / ARTIFACTS_DIR / name).as_uri()
        return self.client.create_experiment(
            name, artifact_location=location, tags=EXPERIMENT_TAGS
        )

    def start_study(self, record: StudyRecord) -> None:
        self.experiment_id = self._experiment(record.experiment)
        same = f"tags.`{STUDY_TAG}` = '{record.study}' and tags.`{RUN_KIND_TAG}` = 'study'"
        if record.uid:
            same += f" and tags.`{STUDY_UID_TAG}` = '{record.uid}'"
        existing = self.client.search_runs(
            [self.experiment_id],
            filter_string=same,
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        tags = {
            **source_tags(record.tags.get(keys.GIT_COMMIT_TAG)),
            **record.tags,
            STUDY_TAG: record.study,
            RUN_KIND_TAG: "study",
        }
        if record.uid:
            tags[STUDY_UID_TAG] = record.uid
        if existing:
            self.parent_id = existing[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            log.info(f"tracking {self.uri}: resuming run {self.parent_id} of {record.study}")
            # tags may change between runs (overrides, git commit); params may not
            self._log(self.parent_id, tags=tags)
            return
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=record.study)
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=record.params)
        log.info(f"tracking {self.uri}: experiment {record.experiment!r}, run {self.parent_id}")

    def _log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        metric_list = [
            Metric(k, float(f"{float(v):.6g}"), now, 0)
            for k, v in (metrics or {}).items()
            if v is not None
        ]
        param_list = [Param(k, _param_value(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        first = True
        for chunk in _chunks(param_list) if param_list else [[]]:
            self.client.log_batch(
                run_id,
                metrics=metric_list if first else (),
                params=chunk,
                tags=tag_list if first else (),
            )
            first = False

    def _started(self) -> tuple[str, str]:
        """The experiment and the parent run (set by ``start_study``)."""
        if self.experiment_id is None or self.parent_id is None:
            raise RuntimeError("MlflowTracker: start_study has not run")
        return self.experiment_id, self.parent_id

    # ---- child runs -----------------------------------------------------------------------
    def _children(self) -> list[Run]:
        experiment_id, parent_id = self._started()
        runs: list[Run] = []
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'",
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def logged_trials(self) -> set[int]:
        """Trials with a finished child run. A child left RUNNING (the process was killed
        while logging it: no metrics, never terminated) is deleted, so the trial is logged
        again in full."""
        logged = set()
        for run in self._children():
            number = run.data.tags.get(TRIAL_TAG, "")
            if not number.isdigit():
                continue
            if run.info.status == "RUNNING":
                self.client.delete_run(run.info.run_id)
                continue
            logged.add(int(number))
        return logged

    def log_trial(self, record: TrialRecord) -> None:
        start = time.perf_counter()
        experiment_id, parent_id = self._started()
        run = self.client.create_run(
            experiment_id,
            start_time=record.start_ms,
            tags={
                **source_tags(),
                MLFLOW_PARENT_RUN_ID: parent_id,
                MLFLOW_RUN_NAME: f"trial-{record.number}",
                RUN_KIND_TAG: "trial",
                TRIAL_TAG: str(record.number),
                **record.tags,
            },
            run_name=f"trial-{record.number}",
        )
        run_id = run.info.run_id
        self._log(run_id, params=record.params, metrics=record.metrics)
        if record.plan_yaml:
            self.client.log_text(run_id, record.plan_yaml, "plan.yaml")
        # a PRUNED trial was timed and ruled out before fine-tuning: it finished, by design
        status = "FAILED" if record.state == "FAIL" else "FINISHED"
        self.client.set_terminated(run_id, status=status, end_time=record.end_ms)
        self.seconds += time.perf_counter() - start

    # ---- the end of the study -------------------------------------------------------------
    def end_study(self, end: StudyEnd) -> None:
        _, parent_id = self._started()
        pareto = {str(n) for n in end.pareto}
        chosen = None if end.chosen is None else str(end.chosen)
        for run in self._children():
            number = run.data.tags.get(TRIAL_TAG)
            tags = {
                PARETO_TAG: "true" if number in pareto else "false",
                CHOSEN_TAG: "true" if number == chosen else "false",
            }
            trial = int(number) if number is not None else None
            figures = end.remeasured.get(trial) if trial is not None else None
            if trial is not None and figures is not None:  # the steady figure becomes the latest
                why = end.remeasured_why.get(trial, "measured again after the run")
                tags[REMEASURED_TAG] = why
            later = {**(figures or {}), **end.reranked.get(trial, {})} if trial is not None else {}
            new = {m: v for m, v in later.items() if run.data.metrics.get(m) != v}
            if new or any(run.data.tags.get(k) != v for k, v in tags.items()):
                self._log(run.info.run_id, metrics=new, tags=tags)
        self._log(
            parent_id,
            metrics=end.metrics,
            tags={keys.CHOSEN_TRIAL_TAG: chosen if chosen is not None else "none"},
        )
        for path in end.artifacts:
            if Path(path).is_file():
                self.client.log_artifact(parent_id, str(path))
        if end.model is not None and Path(end.model).is_file():
            self._log_model(end)
        log.info(f"tracking the trials, fastest first: {self.trials_page()}")

    def trials_page(self) -> str:
        """Where the user sees this experiment's trials: the server's page, or the one
        ``pruna-search-ui`` serves on its default address for a store file."""
        if self.uri.startswith(("http://", "https://")):
            return view_url(self.uri, str(self.experiment_id))
        return f"pruna-search-ui, then {view_url(base_url(), str(self.experiment_id))}"

    def _log_model(self, end: StudyEnd) -> None:
        """Log ``best.onnx`` on the parent run and register it, unless a version of the same
        file is registered already (a rerun of a finished study): then that version keeps the
        ``champion`` alias and no new version is made."""
        digest = hashlib.sha256(Path(str(end.model)).read_bytes()).hexdigest()
        same = self._registered_with(end.model_name, digest) if self.register else None
        if same is not None:
            self.client.set_registered_model_alias(end.model_name, CHAMPION, same)
            log.info(f"tracking {end.model_name} version {same} is this model (alias {CHAMPION})")
            return
        version = self._register(end)
        if version is None:
            return
        tags = {**end.model_tags, keys.ONNX_SHA256_TAG: digest}
        for key, value in tags.items():
            self.client.set_model_version_tag(end.model_name, str(version), key, value)
        self.client.set_registered_model_alias(end.model_name, CHAMPION, str(version))
        log.info(f"tracking registered {end.model_name} version {version} (alias {CHAMPION})")

    def _registered_with(self, name: str, digest: str) -> str | None:
        """The registered version of ``name`` whose file has this SHA-256, if any."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except Exception:  # noqa: BLE001 - no registered model of that name yet
            return None
        for version in versions:
            if version.tags.get(keys.ONNX_SHA256_TAG) == digest:
                return str(version.version)
        return None

    def _register(self, end: StudyEnd) -> int | None:
        import onnx  # the model flavour needs the ModelProto

        model = onnx.load(str(end.model))
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        # MLflow prints "Successfully registered model ..." on stderr: our log line says it
        quiet = contextlib.redirect_stderr(io.StringIO())
        with warnings.catch_warnings(), quiet, mlflow.start_run(run_id=self.parent_id):
            warnings.simplefilter("ignore")
            info = mlflow.onnx.log_model(
                model,
                name="model",
                registered_model_name=end.model_name if self.register else None,
                save_as_external_data=False,
                await_registration_for=60,
                # the flavour's own pins (onnx, onnxruntime): inferring them instead loads the
                # model in a subprocess, seconds per study
                pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            )
        if not self.register:
            return None
        version = getattr(info, "registered_model_version", None)
        if version is None:
            versions = self.client.search_model_versions(
                f"name = '{end.model_name}' and run_id = '{self.parent_id}'"
            )
            version = max(int(v.version) for v in versions)
        return int(version)

    def close(self, status: str = "FINISHED") -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)


def tag_missing(client: MlflowClient, experiment: Experiment, tags: Mapping[str, str]) -> None:
    """Set those of ``tags`` the experiment lacks or holds with another value."""
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def pruna_experiments(uri: str, most: int = 5) -> list[tuple[str, str]]:
    """``(id, name)`` of the most recently updated experiments in ``uri``'s store that hold a
    pruna study; one made by a version before the saved views gets them now."""
    client = MlflowClient(tracking_uri=uri)
    found = client.search_experiments(
        filter_string=f"tags.`{EXPERIMENT_KIND_TAG}` = '{EXPERIMENT_KIND}'",
        order_by=["last_update_time DESC"],
        max_results=most,
    )
    studies = f"tags.`{RUN_KIND_TAG}` = 'study'"
    out = []
    for experiment in found:
        if not client.search_runs([experiment.experiment_id], studies, max_results=1):
            continue  # another tool's experiment of that kind
        tag_missing(client, experiment, VIEW_TAGS)
        out.append((experiment.experiment_id, experiment.name))
    return out


__all__ = ["MlflowTracker", "pruna_experiments"]
