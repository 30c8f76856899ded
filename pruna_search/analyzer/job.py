"""One analysis from a composed config (``pruna-search-analyze``): the same model, data,
target and space as a search, the analysis written to the run folder and tracked.

An analysis is named by a digest of what its figures depend on (the model and its weights, the
data, the target and the space; ``analysis_digest``), so a search can find the analysis of its
own model, data, target and space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import keys
from ..measure import runner_for
from ..report.analysis import write_analysis
from ..report.plots import write_analysis_plots
from ..search.job import Session, make_evaluator, open_session
from ..search.settings import JobSettings
from ..tracking import StudyEnd, StudyRecord, make_tracker
from .run import Analysis, analysis_splits, analyze
from .store import save_record

log = logging.getLogger("pruna_search")
FILES = ("analysis.md", "analysis.json", "sensitivity.png", "latency.png", "analysis.html")


@dataclass(frozen=True)
class AnalysisResult:
    """What ``run_analysis`` did: the analysis, its digest and where its files are."""

    analysis: Analysis
    digest: str
    output_dir: Path
    record: dict[str, Any]


def analysis_digest(settings: JobSettings, weights_digest: str) -> str:
    """What the figures depend on: model and weights, data, target, space and how pruna_search
    measures (``MEASURED_BY``); not the objective nor the fine-tune: the same analysis serves
    every search of this model on this target."""
    identity = settings.identity(weights_digest)
    wanted = {k: identity[k] for k in ("measured_by", "model", "data", "target", "space")}
    text = json.dumps(wanted, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_analysis(
    config: dict[str, Any], output_dir: str | Path, overrides: list[str] | None = None
) -> AnalysisResult:
    """Analyze the configured model on the configured target; write and track the result."""
    output_dir = Path(output_dir)
    settings = JobSettings.parse(config)
    session = open_session(settings, runner_for(settings.target))
    try:
        analysis = analyze_session(session)
    finally:
        session.close()
    digest = analysis_digest(settings, session.weights_digest)
    record = record_of(settings, digest, analysis)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_analysis(output_dir, record)
    write_analysis_plots(output_dir, record)
    save_record(record)
    _track(settings, digest, analysis, output_dir, overrides or [])
    log.info(_summary_line(analysis))
    return AnalysisResult(analysis, digest, output_dir, record)


def record_of(settings: JobSettings, digest: str, analysis: Analysis) -> dict[str, Any]:
    """The analysis as kept and written (``analysis.json``)."""
    return {
        **analysis.to_dict(),
        "model": settings.model_name,
        "data": str(settings.data["name"]),
        "target": settings.target.name,
        "digest": digest,
    }


def analyze_session(session: Session) -> Analysis:
    """Analyze the session's model on its target and space (timed)."""
    start = time.perf_counter()
    analysis = _analyze(session)
    analysis.seconds["total"] = time.perf_counter() - start
    return analysis


def _analyze(session: Session) -> Analysis:
    settings = session.settings
    full = session.evaluator
    splits = analysis_splits(full.data, settings.analysis)
    evaluator = make_evaluator(
        settings, full.model, splits, Path(session.workdir.name) / "analysis", full.runner
    )
    evaluator.floors = full.floors
    log.info(
        f"analysis {len(full.info.groups)} groups x {len(session.space.options.ratios)} ratios, "
        f"{len(full.info.layers)} layers, on {splits.size('val')} val images"
    )
    return analyze(evaluator, session.space, settings.analysis)


def _track(
    settings: JobSettings, digest: str, analysis: Analysis, folder: Path, overrides: list[str]
) -> None:
    if settings.tracking.name == "none":
        return
    tracker = make_tracker(settings.tracking.name, settings.tracking.uri, register=False)
    name = f"analysis-{settings.model_name}-{settings.target.name}-{digest}"
    tags = {
        keys.ANALYSIS_TAG: digest,
        keys.MODEL_TAG: settings.model_name,
        keys.TARGET_TAG: settings.target.name,
        keys.OVERRIDES_TAG: " ".join(overrides) or "(none)",
    }
    experiment = settings.tracking.experiment or f"{settings.model_name}-{settings.data['name']}"
    tracker.start_study(StudyRecord(study=name, experiment=experiment, tags=tags))
    metrics = {f"suggested_speedup_{s.budget:g}": s.speedup for s in analysis.suggestions}
    metrics["analysis_seconds"] = analysis.seconds["total"]
    tracker.end_study(
        StudyEnd(
            pareto=[],
            chosen=None,
            metrics=metrics,
            artifacts=[folder / f for f in FILES if (folder / f).is_file()],
            model=None,
            model_name="",
        )
    )
    tracker.close()
    summary = tracker.summary()
    if summary:
        log.warning(f"tracking {summary}")


def _summary_line(analysis: Analysis) -> str:
    best = ", ".join(
        f"{s.budget * 100:g} pt: {s.speedup:.2f}x ({s.summary})" for s in analysis.suggestions
    )
    return f"suggest  {best}; analysis took {analysis.seconds.get('total', 0.0):.1f} s"


__all__ = [
    "FILES",
    "AnalysisResult",
    "analysis_digest",
    "analyze_session",
    "record_of",
    "run_analysis",
]
