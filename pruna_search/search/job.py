"""One search job from a validated config: build, search, choose, re-apply, write the outputs.

Outputs (in ``output_dir``): ``best.onnx``, ``plan.yaml``, ``pareto.csv``, ``report.md`` and
``summary.json`` (one row of a sweep summary). ``export_trial`` is the same final step for any
trial or plan of an existing study (``pruna-search-export``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import data as data_lib
from .. import models as model_lib
from ..compress import Candidate
from ..core import keys, names
from ..core.errors import ConfigError, PrunaSearchError
from ..core.files import atomic_copy
from ..core.keys import CONFIG_ATTR, REFERENCE_ATTR, WARM_START_ATTR
from ..core.plan import Plan
from ..core.precision import Precision
from ..measure import (
    LatencyCache,
    LatencyRunner,
    runner_for,
    stored_floor,
)
from ..models.pretrained import cache_dir
from ..report import summary as report
from ..report.finished import FinishedStudy
from ..report.front import pareto_front, write_csv
from ..report.summary import (
    STATUS_HANDED_OVER,
    STATUS_INTERRUPTED,
    STATUS_NO_FEASIBLE,
    STATUS_OK,
)
from ..space import SearchSpace
from .evaluate import Evaluation, Evaluator, EvaluatorOptions
from .objectives import Objective
from .rows import at_trial_fidelity, choice, study_rows
from .runner import LoopHooks, LoopOutcome, LoopSettings, TrialLoop, adopt_dense_ms
from .settings import JobSettings
from .study import (
    FixedTrial,
    StudySettings,
    check_storage,
    completed,
    enqueue_labelled,
    enqueue_references,
    evaluated,
    load_study,
    make_pruner,
    make_sampler,
    name_metrics,
    open_storage,
    open_study,
    reference_plans,
    study_name,
)
from .tracked import StudyTracking, write_plots
from .workers import Workers

log = logging.getLogger("pruna_search")
# data options that make the search run on part of the data; the shipped model is measured on
# the whole of it
SUBSET_KEYS = ("train_subset", "val_subset")


@dataclass
class Session:
    """The trained model, its data, the evaluator and the search space of one job."""

    settings: JobSettings
    evaluator: Evaluator
    space: SearchSpace
    weights_digest: str
    workdir: tempfile.TemporaryDirectory
    _final: Evaluator | None = None

    @property
    def info(self):
        return self.evaluator.info

    @property
    def final(self) -> Evaluator:
        """The evaluator the shipped model is measured with: the search's own, or — when the
        search ran on ``data.train_subset`` / ``data.val_subset`` — one over the whole data
        (same model, target, runner, floors and latency reference), built on first use."""
        if self._final is None:
            data = self.settings.data
            if not any(data.get(key) is not None for key in SUBSET_KEYS):
                self._final = self.evaluator
            else:
                splits = load_data({**data, **dict.fromkeys(SUBSET_KEYS)}, "whole data")
                evaluator = self.evaluator
                self._final = make_evaluator(
                    self.settings,
                    evaluator.model,
                    splits,
                    Path(self.workdir.name) / "whole",
                    evaluator.runner,
                )
                self._final.dense_ms = evaluator.dense_ms
                self._final.floors = evaluator.floors  # judged by the search's floors
        return self._final

    def close(self) -> None:
        self.workdir.cleanup()


# labelled trial params to enqueue after the reference trials, from the job's session
WarmStart = Callable[[Session], Mapping[str, Mapping[str, Any]]]


@dataclass
class JobResult:
    """What a job produced (also written as ``summary.json``)."""

    status: str
    study_name: str
    storage: str
    output_dir: Path
    summary: dict[str, Any]


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_data(config: dict[str, Any], what: str = "data") -> data_lib.DataSplits:
    """The data set ``config`` (the ``data`` section) names, logged in one line."""
    options = {k: v for k, v in config.items() if k != "name"}
    splits = data_lib.load(config["name"], **options)
    log.info(
        f"{what:<8} {splits.name}: {splits.size('train')} train / {splits.size('calib')} calib "
        f"/ {splits.size('val')} val, input {splits.input_shape}, {splits.num_classes} classes"
    )
    return splits


def make_evaluator(
    settings: JobSettings,
    model: torch.nn.Module,
    splits: data_lib.DataSplits,
    workdir: Path,
    runner: LatencyRunner | None = None,
) -> Evaluator:
    return Evaluator(
        model,
        splits,
        settings.target,
        workdir=workdir,
        options=EvaluatorOptions(
            latency_cache=LatencyCache(cache_dir() / "latency.sqlite"),
            runner=runner,
            metric=settings.objective.scorer,
            compute=settings.compute,
        ),
    )


def open_session(settings: JobSettings, runner: LatencyRunner | None = None) -> Session:
    """Load data, build (or load the cached) baseline, export and score the dense model.

    ``runner``: the target's latency runner when the caller has made it already."""
    splits = load_data(settings.data)
    check_val_size(settings.objective, splits.size("val"))
    settings.analysis.subset_of(splits.size("val"))  # the analysis a warm start may run
    model_options = {k: v for k, v in settings.model.items() if k != "name" and v is not None}
    model_options.setdefault("pretrained", False)
    if model_options.get("checkpoint"):
        model_options["pretrained"] = False
    start = time.perf_counter()
    model = model_lib.build(settings.model["name"], data=splits, **model_options)
    log.info(f"model    {settings.model['name']} ready in {time.perf_counter() - start:.1f} s")
    workdir = tempfile.TemporaryDirectory(prefix="pruna_search_")
    evaluator = make_evaluator(settings, model, splits, Path(workdir.name), runner)
    space = SearchSpace(evaluator.info, settings.target, settings.space)
    base = evaluator.baseline
    log.info(
        f"dense    accuracy {base[names.ACCURACY]:.4f}, {base[names.SIZE_MB]:.3f} MB, "
        f"{base[names.MACS] / 1e6:.2f} MMACs; space: {len(space.prune_params)} prune + "
        f"{len(space.bits_params)} precision choices, {space.size:.3g} plans"
    )
    if evaluator.measure_latency:
        log_floor(evaluator)
    return Session(settings, evaluator, space, weights_digest(model), workdir)


def check_val_size(objective: Objective, val_images: int) -> None:
    """Refuse a val split too small to resolve the budget (a warning when the user insists)."""
    problem = objective.small_val(val_images)
    if problem is None:
        return
    if not objective.allow_small_val:
        raise ConfigError(
            f"{problem}; use more val images, a larger budget, or "
            "objective.allow_small_val=true to run anyway"
        )
    log.warning(f"data     {problem}; running anyway (objective.allow_small_val=true)")


def log_floor(evaluator: Evaluator) -> None:
    """Say which dense floor this run's latency windows are held to from the start."""
    target, cache = evaluator.target, evaluator.latency_cache
    if cache is None or target.floor_max_age_h is None or target.max_baseline_drift is None:
        return
    found = stored_floor(
        evaluator.dense_path, evaluator.timing_input, target, cache, evaluator.runner
    )
    if found is None:
        log.info(
            f"floor    no dense p10 stored in the last {target.floor_max_age_h:g} h for the "
            "measuring machine and target: the first converged window sets it"
        )
        return
    p10, measured = found
    log.info(
        f"floor    dense p10 {p10:.3f} ms, measured {(time.time() - measured) / 3600:.1f} h ago "
        f"on the measuring machine: a dense p10 more than {100 * target.max_baseline_drift:g} % "
        "above it is reported as host drift"
    )


def most_compressed_plans(space: SearchSpace) -> list[Plan]:
    """The plans that can be fastest: the largest ratio everywhere, at fp32 and at the lowest
    precision offered (int8 can be slower than fp32 on thin layers)."""
    plans = []
    for lowest in (False, True):
        params: dict[str, Any] = {key: max(c) for key, c in space.ratio_choices.items()}
        for key, (_, choices) in space.bits_params.items():
            params[key] = choices[-1] if lowest else Precision.FP32.value
        plans.append(
            space(FixedTrial(params)).with_finetune(
                dataclasses.replace(space.options.finetune, steps=0, bn_recalibration=0)
            )
        )
    return plans


def check_budget_reachable(session: Session, objective: Objective) -> None:
    """A latency / speedup budget that even the most compressed plan misses is a config error.

    Measured, not estimated: the most compressed plans are applied (no fine-tune; latency does
    not depend on weights) and timed against dense. 3 % slack covers measurement noise.
    """
    if not objective.latency_budget:
        return
    best_ms, best_speedup = float("inf"), 0.0
    for plan in most_compressed_plans(session.space):
        evaluation = session.evaluator.evaluate(plan, name="budget-check")
        best_ms = min(best_ms, evaluation.metrics[names.LATENCY])
        best_speedup = max(best_speedup, evaluation.metrics[names.SPEEDUP])
    objective.check_reachable(best_ms, best_speedup, session.settings.target.name)
    log.info(
        f"budget   reachable: the fastest plan measures {best_ms:.3f} ms ({best_speedup:.2f}x)"
    )


def run_job(
    config: dict[str, Any],
    output_dir: str | os.PathLike,
    *,
    on_trial=None,
    overrides: list[str] | tuple[str, ...] = (),
    sweep: str | None = None,
    warm_start: WarmStart | None = None,
) -> JobResult:
    """Run (or resume) the study the config describes and write its outputs.

    ``overrides`` (the Hydra command-line overrides) and ``sweep`` (the multirun's id) are
    tags of the study's tracking run; ``warm_start`` gives labelled plans to enqueue after the
    reference trials (the analyzer's suggestions, ``study.warm_start``). Other workers may run
    the same study at the same time (``search/workers.py``).
    """
    output_dir = Path(output_dir)
    settings = JobSettings.parse(config)
    # built now so a bad sampler option fails before anything heavy runs
    make_sampler(settings.sampler, settings.seed, settings.sampler_options)
    # and the latency runner: an agent that is down fails before the storage is created
    runner = runner_for(settings.target)
    check_storage(settings.study)
    # the model and data come first: a refused model or data set leaves no storage file behind
    session = open_session(settings, runner)
    try:
        check_budget_reachable(session, settings.objective)
        study, workers, tracking = start_study(session, warm_start, overrides, sweep)

        def after_trial(trial) -> None:
            tracking.on_trial(trial)
            if on_trial is not None:
                on_trial(trial)

        try:
            loop = TrialLoop(
                study,
                session.space,
                session.evaluator,
                settings.objective,
                LoopSettings.of(settings.study, settings.trial_finetune, settings.final_finetune),
                LoopHooks(after_trial, workers),
            )
            outcome = loop.search()
            if outcome.stopped_for_failures:
                raise PrunaSearchError(
                    f"study: {settings.study.max_consecutive_failures} trials failed in a row; "
                    f"the last: {outcome.stopped_for_failures}"
                )
            return conclude_once(loop, session, output_dir, workers, tracking)
        except BaseException as exc:
            tracking.fail(interrupted=isinstance(exc, KeyboardInterrupt))
            raise
    finally:
        session.close()


def start_study(
    session: Session, warm_start: WarmStart | None, overrides: Sequence[str], sweep: str | None
) -> tuple[Any, Workers, StudyTracking]:
    """Open the study with the other workers' coordination (``Workers``), and its tracking:
    both under the study's lock, so workers starting together create one study, enqueue its
    references once and find one parent run."""
    settings = session.settings
    storage = open_storage(settings.study)
    workers = Workers.of(storage, job_study_name(session), session.evaluator)
    with workers.study_lock.hold():
        study = open_job_study(session, warm_start, storage)
        timed_by = session.evaluator.runner
        tracking = StudyTracking.start(
            settings,
            session.space,
            study,
            overrides=overrides,
            sweep=sweep,
            machine=timed_by.fingerprint() if timed_by is not None else None,
        )
    return study, workers, tracking


def conclude_once(
    loop: TrialLoop, session: Session, output_dir: Path, workers: Workers, tracking: StudyTracking
) -> JobResult:
    """Re-rank, choose and export — once per study, by the last worker to finish (the others
    waited for its trials, ``TrialLoop.stay_while_others_run``): a worker that finds the study
    exported since it started does nothing more."""
    study, outcome = loop.study, loop.outcome
    with workers.final_lock.hold():
        other = workers.final_by_other(study)
        if other is not None:
            return handed_over(study, session, output_dir, other)
        if loop.may_settle():
            loop.settle()
        result = finish(study, session, output_dir, outcome, tracking)
        if result.status != STATUS_INTERRUPTED:
            workers.record_final(study, str(output_dir))
        return result


def handed_over(study, session: Session, output_dir: Path, final: Mapping) -> JobResult:
    """This worker's end when another one chose and exported (the ``final`` record it left):
    a log line and ``summary.json``; the study's MLflow run is that worker's to end."""
    where = final.get("output")
    log.info(f"study    another worker chose and exported the study's model ({where})")
    output_dir.mkdir(parents=True, exist_ok=True)
    storage = session.settings.study.storage
    summary = {
        "status": STATUS_HANDED_OVER,
        "study": study.study_name,
        "storage": storage,
        "evaluated": len(evaluated(study)),
        "exported_by": where,
    }
    report.write_json(output_dir / "summary.json", summary)
    return JobResult(STATUS_HANDED_OVER, study.study_name, storage, output_dir, summary)


def job_study_name(session: Session) -> str:
    """``study.name``, or the name derived from the job's settings (``study_name``)."""
    settings = session.settings
    identity = settings.identity(session.weights_digest)
    tags = [settings.model_name, str(settings.data["name"]), settings.target.name]
    return settings.study.name or study_name([*tags, settings.objective.tag], identity)


def open_job_study(session: Session, warm_start: WarmStart | None = None, storage=None):
    """Create or resume the job's study (named from its settings unless ``study.name``), with
    its uniform reference trials enqueued once, then the warm start's plans once; ``storage``:
    the study storage when the caller opened it already."""
    settings = session.settings
    references = reference_plans(session.space, settings.study.reference_ratios)
    name = job_study_name(session)
    study, resumed = open_study(
        storage or open_storage(settings.study),
        name,
        directions=settings.objective.directions,
        sampler=make_sampler(settings.sampler, settings.seed, settings.sampler_options),
        identity=settings.identity(session.weights_digest),
        config=settings.raw,
    )
    name_metrics(study, settings.objective.value_names)  # for optuna-dashboard
    # a resumed study must not replay the random start-up samples of the first run
    study.sampler = make_sampler(
        settings.sampler,
        None if settings.seed is None else settings.seed + len(study.trials),
        settings.sampler_options,
    )
    study.pruner = make_pruner(settings.study.pruner)  # not stored: set on every opening
    enqueue_references(study, references)
    if warm_start is not None and settings.study.warm_start != "none":
        plans = warm_start(session)
        enqueue_labelled(study, plans, WARM_START_ATTR)
        if plans:
            log.info(f"warm     {len(plans)} suggested plans enqueued: {', '.join(plans)}")
    already = len(evaluated(study))
    log.info(
        f"study    {name} in {settings.study.storage}: "
        + (f"resumed with {already} evaluated trials, " if resumed else "created, ")
        + f"{max(0, settings.study.n_trials - already)} plans to evaluate "
        f"({len(references)} uniform reference plans first), sampler {settings.sampler}, "
        f"pruner {settings.study.pruner}"
    )
    return study


def select(
    study, objective: Objective
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Mapping[str, Any] | None]:
    """The study's rows, the Pareto front of its evaluated plans, and the trial the objective's
    rule picks from the feasible front (None when no trial meets the budget)."""
    rows = study_rows(study, objective)
    unique = [r for r in rows if r["duplicate_of"] is None]
    return rows, pareto_front(unique, objective.front_names), choice(rows, objective)


def finish(
    study,
    session: Session,
    output_dir: Path,
    outcome: LoopOutcome,
    tracking: StudyTracking | None = None,
) -> JobResult:
    """Front, selection, final re-apply, plots, the output files, and the tracker's end."""
    output_dir.mkdir(parents=True, exist_ok=True)
    finished = conclude(study, session, output_dir, outcome)
    write_plots(study, output_dir, finished)
    summary = report.summary(finished)
    log.info(report.latency_line(summary))
    report.write_markdown(output_dir / "report.md", finished, summary)
    settings = session.settings
    if settings.tracking.name != "none":
        summary["tracking"] = settings.tracking.uri
    report.write_json(output_dir / "summary.json", summary)
    if tracking is not None:
        tracking.end(study, output_dir, finished)
        missing = tracking.not_logged()
        if missing:
            log.warning(f"tracking {missing}")
            summary["tracking_not_logged"] = missing
            report.write_json(output_dir / "summary.json", summary)
    return JobResult(
        finished.status, study.study_name, settings.study.storage, output_dir, summary
    )


def conclude(study, session: Session, output_dir: Path, outcome: LoopOutcome) -> FinishedStudy:
    """Choose the trial to ship, write ``pareto.csv``, and re-apply, fine-tune and export the
    chosen plan when the study ended normally."""
    objective = session.settings.objective
    rows, front, chosen = select(study, objective)
    on_trials = choice(at_trial_fidelity(rows), objective)
    for row in front:
        row["chosen"] = chosen is not None and row["number"] == chosen["number"]
    if chosen is not None and not any(r["chosen"] for r in front):
        front.append({**chosen, "chosen": True})
    write_csv(front, output_dir / "pareto.csv")
    status = STATUS_OK
    if outcome.interrupted:
        status = STATUS_INTERRUPTED
    elif chosen is None:
        status = STATUS_NO_FEASIBLE
    final: Evaluation | None = None
    chosen_plan: Plan | None = None
    if chosen is not None:
        trial = study.trials[int(chosen["number"])]
        chosen_plan = session.space(FixedTrial(trial.params))
        if status == STATUS_OK:
            final = export_trial(
                session,
                trial.params,
                output_dir,
                source=f"trial {trial.number}",
                built=reranked_model(session, outcome, trial.number),
            )
    return FinishedStudy(
        study_name=study.study_name,
        status=status,
        settings=session.settings,
        space=session.space,
        rows=rows,
        front=front,
        chosen=chosen,
        chosen_on_trials=None if on_trials is None else int(on_trials["number"]),
        chosen_plan=chosen_plan,
        final=final,
        outcome=outcome,
        # the shipped model is compared with dense on the data it was measured on
        baseline=(session.evaluator if final is None else session.final).baseline,
        dense_ms=session.evaluator.dense_ms,
    )


def reranked_model(session: Session, outcome: LoopOutcome, number: int) -> Candidate | None:
    """The model re-ranking built for trial ``number`` when it is the one the final step
    would build (the final fine-tune on the data the shipped model is measured on), else None."""
    reranked = outcome.reranked
    if reranked is None or reranked.recipe != session.settings.final_finetune:
        return None
    if session.final is not session.evaluator:  # searched on a subset: tuned on other data
        return None
    return reranked.models.get(number)


def export_trial(
    session: Session,
    params: dict[str, Any],
    output_dir: Path,
    *,
    source: str,
    plan: Plan | None = None,
    built: Candidate | None = None,
) -> Evaluation:
    """Replay the space on ``FixedTrial(params)`` (or take ``plan``), fine-tune with the final
    budget, export, re-measure; write ``best.onnx`` and ``plan.yaml`` atomically. ``built``:
    the model that plan and fine-tune built already (``reranked_model``), measured as is."""
    settings = session.settings
    if plan is None:
        plan = session.space(FixedTrial(params))
    plan = plan.with_finetune(settings.final_finetune)
    recovery = (
        f"{settings.final_finetune.steps} fine-tune steps"
        if not plan.is_dense
        else "nothing pruned, so no fine-tune"
    )
    if built is not None:
        log.info(f"final    {source}: the model re-ranking built ({recovery}), measured again")
    else:
        log.info(f"final    {source}: re-applying ({recovery})")
    evaluator = session.final
    evaluation = evaluator.evaluate(plan, name="best", built=built)
    atomic_copy(evaluation.candidate.onnx_path, output_dir / "best.onnx")
    plan.save(output_dir / "plan.yaml")
    log.info(report.comparison_table(evaluator.baseline, evaluation))
    return evaluation


def _existing_storage(url: str):
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"study.storage: {url!r} does not exist; give the storage the study was run with"
        )
    return open_storage(StudySettings(storage=url))


def list_studies(url: str) -> list[str]:
    """Names of the studies in a storage."""
    return sorted(s.study_name for s in _existing_storage(url).get_all_studies())


def export_from_study(
    storage_url: str,
    name: str,
    output_dir: str | os.PathLike,
    *,
    trial: int | None = None,
    plan_path: str | None = None,
    final_steps: int | None = None,
) -> Evaluation:
    """``pruna-search-export``: re-apply a trial (default: the one the objective chooses) or a
    plan file with the study's own settings."""
    storage = _existing_storage(storage_url)
    study = load_study(storage, name)
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        raise ConfigError(f"study.name: {name!r} was not created by pruna-search (no config)")
    config = json.loads(stored)
    if final_steps is not None:
        config.setdefault("finetune", {})["final_steps"] = final_steps
    settings = JobSettings.parse(config)
    session = open_session(settings)
    adopt_dense_ms(study, session.evaluator)  # the study's scale of latency_ms
    try:
        if session.weights_digest != json.loads(study.user_attrs[keys.IDENTITY_ATTR])["model"].get(
            "weights"
        ):
            raise ConfigError(
                f"model: the baseline weights differ from those study {name!r} searched; "
                "restore the checkpoint (or the baseline cache) it used"
            )
        output_dir = Path(output_dir)
        if plan_path is not None:
            plan = Plan.load(plan_path)
            return export_trial(session, {}, output_dir, source=f"plan {plan_path}", plan=plan)
        trials = {t.number: t for t in completed(study)}
        if trial is None:
            _, _, chosen = select(study, settings.objective)
            if chosen is None:
                raise ConfigError(
                    f"trial: no trial of {name!r} meets the budget ({settings.objective.budget}); "
                    "pick one with trial=N (see pareto.csv)"
                )
            trial = int(chosen["number"])
        if trial not in trials:
            done = sorted(trials)
            raise ConfigError(
                f"trial: {trial} is not a completed trial of {name!r}; completed: "
                f"{done[:5]}{' ...' if len(done) > 5 else ''} ({len(done)} in all)"
            )
        label = trials[trial].user_attrs.get(REFERENCE_ATTR)
        return export_trial(
            session,
            trials[trial].params,
            output_dir,
            source=f"trial {trial}" + (f" ({label})" if label else ""),
        )
    finally:
        session.close()


__all__ = ["JobResult", "export_from_study", "export_trial", "list_studies", "run_job"]
