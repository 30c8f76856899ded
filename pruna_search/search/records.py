"""What the tracker is told: Optuna trials and the job's settings turned into plain records.

Names are the ones the search uses everywhere (design decision 8): params ``prune/<group>`` and
``bits/<layer>``, metrics ``accuracy`` ... ``trial_seconds``, tags ``pruna.*``; so the MLflow
compare view lines up across studies, models and targets.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import hardware, keys, names
from ..core.keys import (
    DUPLICATE_ATTR,
    DUPLICATE_TAG,
    FAIL_ATTR,
    FAIL_TAG,
    FEASIBLE_TAG,
    LATENCY_ATTR,
    NOISY_ATTR,
    PLAN_ATTR,
    PRUNED_ATTR,
    REFERENCE_ATTR,
    REFERENCE_TAG,
    STOPPED_ATTR,
    SWEEP_TAG,
)
from ..core.plan import Plan
from ..core.precision import Precision
from ..space import SearchSpace
from ..tracking import StudyRecord, TrialRecord
from .rows import is_feasible
from .settings import JobSettings
from .study import FixedTrial, FrozenTrial, TrialState

PACKAGES = ("pruna_search", "torch", "onnx", "onnxruntime", "torch-pruning", "optuna", "mlflow")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"space": {"tie": "stage"}}`` -> ``{"space.tie": "stage"}``; lists stay whole."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def git_commit(where: Path) -> str | None:
    """The commit of the checkout ``where`` lies in (None outside a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def study_record(
    settings: JobSettings,
    study_name: str,
    *,
    overrides: Sequence[str] = (),
    sweep: str | None = None,
    machine: Mapping[str, Any] | None = None,
    uid: str = "",
) -> StudyRecord:
    """The parent run: tags that tell studies apart, and the resolved config as params.

    ``machine``: the fingerprint of the machine that measures latency (the device's, for a
    remote target); None: this machine's.
    """
    tags: dict[str, str] = {
        keys.MODEL_TAG: settings.model_name,
        keys.DATA_TAG: str(settings.data["name"]),
        keys.TARGET_TAG: settings.target.name,
        keys.OBJECTIVE_TAG: settings.objective.tag,
        keys.SAMPLER_TAG: settings.sampler,
        keys.OVERRIDES_TAG: " ".join(overrides) or "(none)",
    }
    if sweep:
        tags[SWEEP_TAG] = sweep
    commit = git_commit(Path.cwd()) or git_commit(Path(__file__).resolve().parent)
    if commit:
        tags[keys.GIT_COMMIT_TAG] = commit
    for package in PACKAGES:
        tags[keys.VERSION_TAG_PREFIX + package] = _version(package)
    for key, value in (machine or hardware.fingerprint()).items():
        tags[keys.HARDWARE_TAG_PREFIX + key] = str(value)
    experiment = settings.tracking.experiment or f"{settings.model_name}-{settings.data['name']}"
    return StudyRecord(
        study=study_name,
        experiment=experiment,
        tags=tags,
        params=flatten(settings.raw),
        uid=uid,
    )


def plan_params(space: SearchSpace, plan: Plan) -> dict[str, Any]:
    """Summaries beside the raw choices: mean pruning ratio, layers at int8 / int4."""
    ratios = [plan.ratio(g.name) for g in space.info.groups]
    return {
        "mean_ratio": round(sum(ratios) / len(ratios), 4) if ratios else 0.0,
        "int8_layers": len(plan.layers_at(Precision.INT8)),
        "int4_layers": len(plan.layers_at(Precision.INT4)),
    }


def trial_record(trial: FrozenTrial, space: SearchSpace) -> TrialRecord:
    """A finished trial as a child run: params, metrics, plan, state and why it failed."""
    attrs = trial.user_attrs
    params: dict[str, Any] = dict(trial.params)
    plan_yaml = None
    if trial.params:
        try:
            plan = space(FixedTrial(dict(trial.params)))
            params.update(plan_params(space, plan))
            plan_yaml = plan.to_yaml()
        except Exception:  # noqa: BLE001 - a plan that cannot be replayed still gets its run
            plan_yaml = None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=params,
        metrics={m: float(attrs[m]) for m in names.METRICS if attrs.get(m) is not None},
        tags=trial_tags(trial),
        plan_yaml=plan_yaml,
        start_ms=_ms(trial.datetime_start),
        end_ms=_ms(trial.datetime_complete),
    )


def _ms(when) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def trial_tags(trial: FrozenTrial) -> dict[str, str]:
    """The child run's tags: plan, reference, repeat, why it failed, was pruned or was stopped
    early, how its latency was measured, and whether it meets the budget."""
    attrs = trial.user_attrs
    tags: dict[str, str] = {keys.PLAN_TAG: str(attrs.get(PLAN_ATTR, ""))}
    if attrs.get(REFERENCE_ATTR):
        tags[REFERENCE_TAG] = str(attrs[REFERENCE_ATTR])
    if attrs.get(keys.WARM_START_ATTR):
        tags[keys.WARM_START_TAG] = str(attrs[keys.WARM_START_ATTR])
    if attrs.get(DUPLICATE_ATTR) is not None:
        tags[DUPLICATE_TAG] = str(attrs[DUPLICATE_ATTR])
    tags.update(_why_tags(trial))
    if attrs.get(NOISY_ATTR):
        tags[keys.NOISY_TAG] = str(attrs[NOISY_ATTR])
    for key, value in (attrs.get(LATENCY_ATTR) or {}).items():
        if key != "fingerprint" and value is not None:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            tags[keys.LATENCY_TAG_PREFIX + key] = text
    if trial.state is TrialState.COMPLETE:
        tags[FEASIBLE_TAG] = "true" if is_feasible(trial) else "false"
    return tags


def _why_tags(trial: FrozenTrial) -> dict[str, str]:
    """Why a trial failed, was pruned on latency or was stopped early (none when complete)."""
    attrs = trial.user_attrs
    if trial.state is TrialState.FAIL:
        return {FAIL_TAG: str(attrs.get(FAIL_ATTR, "no reason recorded"))[:5000]}
    if trial.state is not TrialState.PRUNED:
        return {}
    if attrs.get(STOPPED_ATTR):
        return {keys.STOPPED_TAG: str(attrs[STOPPED_ATTR])}
    return {keys.PRUNED_TAG: str(attrs.get(PRUNED_ATTR, "pruned"))}


def is_finished(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


__all__ = ["flatten", "git_commit", "is_finished", "plan_params", "study_record", "trial_record"]
