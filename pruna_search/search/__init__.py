"""Where the packages meet: scoring plans (and, next, the Optuna study around it)."""

from __future__ import annotations

from .evaluate import Evaluation, Evaluator

__all__ = ["Evaluation", "Evaluator"]
