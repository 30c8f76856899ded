"""The warm start a search takes from an analysis (``study.warm_start``): a search of the same
model, data, target and space finds the analysis by digest (``store.py``) and enqueues its
suggested plans after the reference trials."""

from __future__ import annotations

import logging
from typing import Any

from ..search.job import Session
from .job import analysis_digest, analyze_session, record_of
from .store import load_record, save_record

log = logging.getLogger("pruna_search")


def warm_start_plans(session: Session) -> dict[str, dict[str, Any]]:
    """The suggested plans of the analysis of this session's model, data, target and space,
    labelled ``analysis <budget> pt``: found by digest, or (``study.warm_start=analysis``)
    computed now; none with ``auto`` when no analysis was made."""
    settings = session.settings
    digest = analysis_digest(settings, session.weights_digest)
    record = load_record(digest)
    if record is None and settings.study.warm_start == "analysis":
        log.info(f"warm     no analysis {digest} of this model, target and space: running it")
        record = record_of(settings, digest, analyze_session(session))
        save_record(record)
    if record is None:
        log.info(
            f"warm     no analysis {digest} of this model, target and space "
            "(pruna-search-analyze makes one; study.warm_start=analysis runs it first)"
        )
        return {}
    return {
        f"analysis {float(s['budget']) * 100:g} pt": dict(s["params"])
        for s in record["suggestions"]
    }


__all__ = ["warm_start_plans"]
