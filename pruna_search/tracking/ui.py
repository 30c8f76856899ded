"""The MLflow UI's side of tracking: the saved views a study's experiment opens on, their
addresses, and the ``mlflow server`` command ``pruna-search-ui`` runs (no mlflow import here).

MLflow 3.17's runs table nests child runs under their parent (collapsed) and shows no metric
column until the user picks them. What it does read from the store is a *shared view*: an
experiment tag ``mlflow.sharedViewState.<key>`` holding the view as JSON, opened by the address
``#/experiments/<id>/runs?viewStateShareKey=<key>``. Every pruna experiment carries two:
``pruna-trials`` (every trial run, flat, fastest first, with the metric columns) and
``pruna-studies`` (one row per study with its shipped model's metrics). A search filter or a
sort other than by date is what makes the table list runs flat instead of nested.
"""

from __future__ import annotations

import json
import os
import sys

from ..core.hosts import url_host
from ..core.keys import RUN_KIND_TAG
from .base import ARTIFACTS_DIR, sqlite_path

# MLflow 3.17's UI takes its mode from the URL (or the browser's last choice), not from the
# experiment's kind: ``workflowType`` opens it in its "Model training" mode, on the runs table
MODE = "workflowType=machine_learning"
UI_PAGE = f"/#/experiments?{MODE}"

VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the experiment tag MLflow's UI reads a view from
TRIALS_VIEW, STUDIES_VIEW = "pruna-trials", "pruna-studies"
METRIC_COLUMNS = ("speedup", "accuracy", "accuracy_drop", "latency_ms_p50", "size_mb")


def _view(run_kind: str) -> str:
    """One kind of run, flat, fastest first, with the metric columns in this order."""
    columns = [f"metrics.`{name}`" for name in METRIC_COLUMNS]
    return json.dumps(
        {
            "searchFilter": f"tags.`{RUN_KIND_TAG}` = '{run_kind}'",
            "orderByKey": columns[0],
            "orderByAsc": False,
            "selectedColumns": columns,
            "columnOrder": columns,
        },
        sort_keys=True,
    )


VIEW_TAGS = {
    VIEW_TAG_PREFIX + TRIALS_VIEW: _view("trial"),
    VIEW_TAG_PREFIX + STUDIES_VIEW: _view("study"),
}


UI_HOST, UI_PORT = "127.0.0.1", 5000  # pruna-search-ui's defaults


def base_url(host: str = UI_HOST, port: int = UI_PORT) -> str:
    return f"http://{url_host(host)}:{port}"


def ui_url(host: str, port: int) -> str:
    """The experiments page, in "Model training" mode."""
    return base_url(host, port) + UI_PAGE


def view_url(base: str, experiment_id: str, view: str = TRIALS_VIEW) -> str:
    """An experiment's runs table opened on one of pruna's saved views; ``base`` is the UI's
    address (``base_url``, or a tracking server's ``http://host:port``)."""
    query = f"viewStateShareKey={view}&{MODE}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def ui_command(uri: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line (and environment) that serves ``uri``'s store."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    db = sqlite_path(uri)
    if db is not None:
        command += ["--default-artifact-root", (db.resolve().parent / ARTIFACTS_DIR).as_uri()]
    # job execution makes the server start several times slower and larger (docs/design.md)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return command, env


__all__ = [
    "STUDIES_VIEW",
    "TRIALS_VIEW",
    "VIEW_TAGS",
    "base_url",
    "ui_command",
    "ui_url",
    "view_url",
]
