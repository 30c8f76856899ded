"""The Model Analyzer: a latency profile per layer (measured on the target), a sensitivity
profile per group and layer, and suggested plans per accuracy budget (``run.analyze``).

Above ``search`` (it builds, scores and times plans with the search's ``Evaluator``), below
``cli`` and the API.
"""

from __future__ import annotations

from .run import Analysis, AnalysisSettings, LayerTime, Suggestion, analyze
from .sensitivity import Sensitivity

__all__ = ["Analysis", "AnalysisSettings", "LayerTime", "Sensitivity", "Suggestion", "analyze"]
