"""The Optuna study: storage, sampler, name, reference trials. The only importer of optuna.

A study lives in an Optuna storage (a SQLite file by default); the same command resumes it
(design decision 7). Trials of a killed process are detected by heartbeat and retried with
their parameters; finished trials are never redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna import TrialPruned
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FixedTrial, FrozenTrial, Trial, TrialState

from ..core import names
from ..core.errors import ConfigError
from ..core.keys import (
    CONFIG_ATTR,
    DUPLICATE_ATTR,
    IDENTITY_ATTR,
    REFERENCE_ATTR,
    RETRY_ATTR,
    UID_ATTR,
)
from ..space import SearchSpace, uniform_params

SAMPLERS = ("tpe", "nsga2", "random", "gp")
RERANK_TOP = 3  # candidates re-ranked at a time (study.rerank_top)
WARM_STARTS = ("auto", "analysis", "none")
PRUNERS = ("successive_halving", "hyperband", "median", "none")


__all__ = [
    "FixedTrial",
    "FrozenTrial",
    "PRUNERS",
    "SAMPLERS",
    "WARM_STARTS",
    "enqueue_labelled",
    "StudySettings",
    "Trial",
    "TrialPruned",
    "TrialState",
    "completed",
    "enqueue_references",
    "evaluated",
    "fail_stale_trials",
    "retries",
    "running",
    "load_study",
    "make_pruner",
    "make_sampler",
    "name_metrics",
    "open_storage",
    "open_study",
    "pruner_of",
    "reference_plans",
    "report_interval",
    "study_name",
]

NOP = optuna.pruners.NopPruner()  # what a study's pruner is until the caller sets one
# our own one-line FAIL report replaces Optuna's per-trial warnings and tracebacks
optuna.logging.set_verbosity(optuna.logging.ERROR)
logging.getLogger("optuna").propagate = True


@dataclass(frozen=True)
class StudySettings:
    """``study.*`` of the config.

    Attributes:
        name: study name (None: derived from model, data, target, space and objective).
        storage: an Optuna storage URL; a SQLite file by default. Processes given the same
            storage and config work on one study together (PostgreSQL across machines:
            pip install "pruna_search[postgres]").
        n_trials: distinct plans to evaluate in total (a resumed study only adds the missing;
            trials the sampler repeats are answered from the earlier one and do not count).
        timeout: stop starting new trials after this many seconds (None: no limit).
        heartbeat_interval: seconds between heartbeats of a running trial.
        grace_period: a running trial without a heartbeat for this long was killed; it is
            marked FAIL and retried with the same parameters.
        max_retry: retries of one killed trial.
        max_consecutive_failures: stop (with an error) after this many failed trials in a row.
        reference_ratios: uniform pruning ratios enqueued (with int8) as reference trials.
        latency_first: time a plan before fine-tuning it (latency does not depend on the
            weights) and skip the fine-tune when the timing alone rules the plan out: slower
            than the fastest trial within the accuracy budget (``fastest_within_drop``) or
            over the latency budget (``best_within_latency``). Such a trial is PRUNED.
        warm_start: auto (enqueue the plans an analysis of the same model, data, target and
            space suggested, after the reference trials, when pruna-search-analyze made one),
            analysis (the same, running the analysis first when there is none) or none.
        pruner: stops weak trials in their fine-tune, judged on a proxy accuracy reported at
            steps: successive_halving, hyperband, median or none (no trial stopped early); a
            stopped trial is PRUNED and does not count in n_trials (see search/early_stop.py).
        report_every: fine-tune steps between two reports of a trial's proxy accuracy (the
            first comes after BatchNorm recalibration, at step 0; null: a third of
            ``finetune.trial_steps``, at least 10, since a trial stopped at a report has paid
            for the steps before it and each report costs a recalibration).
        rerank_top: after the trials, the plans that could be shipped are fine-tuned again
            with ``rerank_steps`` and the choice is made on that accuracy (search/rerank.py):
            this many of them at a time, another round only when one moved the choice (null:
            no re-ranking).
        rerank_steps: the re-ranking fine-tune's steps (null: ``finetune.final_steps``, so
            the shipped model's accuracy is the one it was chosen on).
    """

    name: str | None = None
    storage: str = "sqlite:///pruna_search.db"
    n_trials: int = 16
    timeout: float | None = None
    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 2
    max_consecutive_failures: int = 5
    reference_ratios: tuple[float, ...] = (0.5, 0.75)
    latency_first: bool = True
    warm_start: str = "auto"
    pruner: str = "successive_halving"
    report_every: int | None = None
    rerank_top: int | None = RERANK_TOP
    rerank_steps: int | None = None

    def __post_init__(self) -> None:
        if self.warm_start not in WARM_STARTS:
            raise ConfigError(
                f"study.warm_start: {self.warm_start!r} is unknown; "
                f"{names.did_you_mean(str(self.warm_start), WARM_STARTS)}"
            )
        check_pruner(self.pruner)
        # null in YAML: no reference trials besides dense and uniform int8
        object.__setattr__(self, "reference_ratios", tuple(self.reference_ratios or ()))
        self._check_counts()
        if self.grace_period <= self.heartbeat_interval:
            raise ConfigError(
                f"study.grace_period: {self.grace_period} must exceed study.heartbeat_interval "
                f"({self.heartbeat_interval}), or live trials are taken for dead ones"
            )
        if not isinstance(self.max_retry, int) or self.max_retry < 0:
            raise ConfigError(f"study.max_retry: {self.max_retry!r} must be an integer >= 0")
        if not isinstance(self.storage, str) or "://" not in self.storage:
            raise ConfigError(
                f"study.storage: {self.storage!r} is not a storage URL; use e.g. "
                "sqlite:///pruna_search.db or postgresql://user@host/db"
            )

    def _check_counts(self) -> None:
        """The integer keys: n_trials, timeout, the intervals, the re-ranking."""
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int):
            raise ConfigError(f"study.n_trials: {self.n_trials!r} must be an integer >= 1")
        if self.n_trials <= 0:
            raise ConfigError(
                f"study.n_trials: {self.n_trials} must be >= 1 "
                "(distinct plans to evaluate in total)"
            )
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"study.timeout: {self.timeout!r} must be > 0 seconds or null")
        for field in ("heartbeat_interval", "grace_period", "max_consecutive_failures"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"study.{field}: {value!r} must be an integer >= 1")
        for field, null in (
            ("report_every", "(a third of finetune.trial_steps)"),
            ("rerank_top", "(no re-ranking)"),
            ("rerank_steps", "(finetune.final_steps)"),
        ):
            value = getattr(self, field)
            if value is None and null is not None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"study.{field}: {value!r} must be an integer >= 1"
                    + (f", or null {null}" if null else "")
                )


# reports of a trial's proxy accuracy over its fine-tune when study.report_every is null, and
# the fewest steps between two (a report recalibrates BatchNorm and reads 256 images: about
# what a few training steps cost)
REPORTS_PER_FINETUNE = 3
MIN_REPORT_EVERY = 10


def report_interval(report_every: int | None, trial_steps: int) -> int:
    """Fine-tune steps between two reports: ``study.report_every``, or (null) a third of
    the trial fine-tune's steps, at least ``MIN_REPORT_EVERY``."""
    return report_every or max(MIN_REPORT_EVERY, trial_steps // REPORTS_PER_FINETUNE)


def check_pruner(name: str) -> None:
    """A ``study.pruner`` that is not one of ``PRUNERS`` is a one-line ConfigError."""
    if name not in PRUNERS:
        hint = names.did_you_mean(str(name), PRUNERS)
        raise ConfigError(
            f"study.pruner: {name!r} is unknown ({hint}); use {', '.join(PRUNERS[:-1])} "
            "or none (no trial stopped early)"
        )


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``study.pruner`` names (Optuna's defaults; median waits for 5
    finished trials). Pruners are not stored with a study: set it on the study each time it is
    opened (``study.pruner = make_pruner(name)``), resumed or new."""
    check_pruner(name)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    return NOP


def pruner_of(study: optuna.Study) -> str | None:
    """The name of the study's pruner when it can judge the study's trials: a pruner other
    than none on a single-objective study (Optuna's pruners judge no other). None otherwise."""
    if len(study.directions) > 1 or isinstance(study.pruner, optuna.pruners.NopPruner):
        return None
    return type(study.pruner).__name__


def study_name(parts: Sequence[str], identity: Mapping[str, Any]) -> str:
    """``resnet20-digits-cpu-drop0.01-1a2b3c``: readable parts plus a digest of everything that
    changes the meaning of a trial's values (space, fine-tune, target settings)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]
    return "-".join([*parts, digest])


def check_storage(settings: StudySettings) -> None:
    """What can be checked of the storage without creating anything: a SQLite file's folder."""
    url = settings.storage
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise ConfigError(
                f"study.storage: folder {str(path.parent)!r} of {url!r} does not exist; "
                "create it or point study.storage elsewhere"
            )


def open_storage(settings: StudySettings, attempts: int = 3) -> RDBStorage:
    """Open (creating tables if needed) the study storage; a clear error if it cannot be.
    Workers starting together on an empty database race to create Optuna's tables: the loser's
    error is followed by another attempt, which finds them."""
    check_storage(settings)
    url = settings.storage
    for attempt in range(attempts):
        try:
            return _rdb_storage(settings)
        except ImportError:
            raise ConfigError(
                f"study.storage: no database driver installed for {url!r}; for PostgreSQL: pip "
                'install "pruna_search[postgres]"'
            ) from None
        except Exception as exc:
            if attempt + 1 < attempts and "already exists" in str(exc):
                time.sleep(1.0 + attempt)
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"study.storage: cannot open {url!r} ({reason}); check the URL, the database "
                "server and its driver"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _rdb_storage(settings: StudySettings) -> RDBStorage:
    url = settings.storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=settings.max_retry
            ),
            engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else None,
        )


def make_sampler(name: str, seed: int | None, options: Mapping[str, Any] | None = None):
    """An Optuna sampler by name; it reads constraints from ``trial.set_constraint``."""
    options = dict(options or {})
    factories = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
        "gp": optuna.samplers.GPSampler,
    }
    if name not in factories:
        raise ConfigError(f"sampler: {name!r} is unknown; {names.did_you_mean(name, SAMPLERS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factories[name](seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(
            f"sampler.{name}: bad option ({exc}); see pruna_search/conf/sampler/{name}.yaml"
        ) from None


def open_study(
    storage: RDBStorage,
    name: str,
    *,
    directions: Sequence[str],
    sampler,
    identity: Mapping[str, Any],
    config: Mapping[str, Any],
) -> tuple[optuna.Study, bool]:
    """Load the study ``name`` or create it; returns (study, resumed). Its pruner is none:
    pruners are not stored with a study, the caller sets one (``make_pruner``).

    Raises:
        ConfigError: the stored study was created with other settings (space, objective,
            fine-tune, target); resuming it would mix incomparable trials.
    """
    existing = {s.study_name for s in storage.get_all_studies()}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=NOP)
        stored = study.user_attrs.get(IDENTITY_ATTR)
        old = None if stored is None else json.loads(stored)
        if old is not None and old != json.loads(json.dumps(identity)):
            if old.get("measured_by") != identity.get("measured_by"):
                raise ConfigError(
                    f"study.name: study {name!r} in {storage.url} was made by an older "
                    "pruna_search, which measured trials another way (see the CHANGELOG); give "
                    "a new study.name"
                )
            raise ConfigError(
                f"study.name: study {name!r} in {storage.url} was created with other settings "
                f"({_first_difference(old, identity)}); give a new study.name "
                "or restore the settings"
            )
        if list(study.directions) != [_direction(d) for d in directions]:
            raise ConfigError(
                f"study.name: study {name!r} optimizes other objectives; give a new study.name"
            )
        return study, True
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=NOP,
        directions=[_direction(d) for d in directions],
    )
    study.set_user_attr(IDENTITY_ATTR, json.dumps(identity, sort_keys=True))
    study.set_user_attr(CONFIG_ATTR, json.dumps(config, sort_keys=True, default=str))
    study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
    return study, False


def name_metrics(study: optuna.Study, metric_names: Sequence[str]) -> None:
    """Name the study's objective values (optuna-dashboard shows these names)."""
    if list(study.metric_names or ()) != list(metric_names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))


def load_study(storage: RDBStorage, name: str) -> optuna.Study:
    """An existing study, or a ConfigError naming the studies that exist."""
    existing = sorted(s.study_name for s in storage.get_all_studies())
    if name not in existing:
        hint = names.did_you_mean(name, existing) if existing else "the storage holds no study"
        raise ConfigError(f"study.name: no study {name!r} in {storage.url}; {hint}")
    return optuna.load_study(study_name=name, storage=storage)


def _user_attr(name: str) -> Callable[[FrozenTrial], float]:
    """A trial's user attribute ``name`` as a float (nan when the trial has none)."""
    return lambda trial: float(trial.user_attrs.get(name, float("nan")))


def _direction(text: str) -> optuna.study.StudyDirection:
    return optuna.study.StudyDirection[text.upper()]


# identity paths that are not spelled as config keys: the identity holds the trial's recipe
CONFIG_KEYS = {"finetune.steps": "finetune.trial_steps"}


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    new = json.loads(json.dumps(new))
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}".lstrip("."))
    return f"{CONFIG_KEYS.get(path, path)}: {old!r} then, {new!r} now"


def reference_plans(space: SearchSpace, ratios: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Labelled parameters of the uniform reference trials: dense fp32, uniform int8 and each
    ratio with int8 and at fp32. Duplicates are dropped."""
    int8 = bool(space.bits_params)
    wanted = [("dense fp32", 0.0, 32)] + ([("uniform int8", 0.0, 8)] if int8 else [])
    for ratio in ratios if space.prune_params else ():
        if ratio not in space.options.ratios:
            raise ConfigError(
                f"study.reference_ratios: {ratio} is not one of space.ratios "
                f"{list(space.options.ratios)}; add it there or change the reference"
            )
        if int8:
            wanted.append((f"uniform {ratio:g} + int8", ratio, 8))
        # pruned fp32 too: on CPUs without VNNI int8 loses to fp32 on thin pruned layers
        # (docs/benchmarks.md)
        wanted.append((f"uniform {ratio:g} fp32", ratio, 32))
    out: dict[str, dict[str, Any]] = {}
    for label, ratio, bits in wanted:
        params = dict(uniform_params(space, ratio, bits))
        if params not in out.values():
            out[label] = params
    return out


def enqueue_references(study: optuna.Study, plans: Mapping[str, Mapping[str, Any]]) -> int:
    """Enqueue the reference trials (``reference_plans``) once: skipped when already in the
    study. Returns how many there are."""
    return enqueue_labelled(study, plans, REFERENCE_ATTR)


def enqueue_labelled(
    study: optuna.Study, plans: Mapping[str, Mapping[str, Any]], attr: str
) -> int:
    """Enqueue each plan's params once (skipped when a trial of the study has them, so a
    resumed study does not add them again), its label in the trial attribute ``attr``."""
    for label, params in plans.items():
        study.enqueue_trial(dict(params), user_attrs={attr: label}, skip_if_exists=True)
    return len(plans)


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def retries(study: optuna.Study) -> list[FrozenTrial]:
    """WAITING trials that evaluate again a trial that did not finish: Optuna's retry of a
    trial a killed process left RUNNING (after ``grace_period``), or a trial aborted by Ctrl-C.
    They run even when ``n_trials`` is met, so no plan (a reference included) is lost."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return [t for t in waiting if "failed_trial" in t.system_attrs or RETRY_ATTR in t.user_attrs]


def running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials without a heartbeat for ``grace_period`` (their process
    was killed); the storage's callback enqueues each one's retry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def evaluated(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials that evaluated their plan (not answered from an earlier trial with the
    same parameters): what ``study.n_trials`` counts."""
    return [t for t in completed(study) if DUPLICATE_ATTR not in t.user_attrs]


def param_importances(
    study: optuna.Study, targets: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """fANOVA importance of each parameter for each named metric (a trial user attribute);
    empty when the study has too few distinct completed trials to rank anything."""
    trials = [t for t in completed(study) if DUPLICATE_ATTR not in t.user_attrs]
    if len(trials) < 3:
        return {}
    out: dict[str, dict[str, float]] = {}
    for label, attr in targets.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(
                    study,
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    target=_user_attr(attr),
                )
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        out[label] = {k: float(v) for k, v in values.items()}
    return out
