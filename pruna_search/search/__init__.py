"""The search: the Optuna study around the evaluator.

``job.run_job`` runs one study from a validated config (``settings.JobSettings``): the session
(model, data, space, evaluator), the reference trials, the trial loop (``runner.TrialLoop``),
flagged figures measured again (``remeasure``), then the chosen plan re-applied, fine-tuned,
exported and written out (``report``) and tracked (``tracked``).
"""

from __future__ import annotations

from .evaluate import Evaluation, Evaluator, EvaluatorOptions

__all__ = ["Evaluation", "Evaluator", "EvaluatorOptions"]
