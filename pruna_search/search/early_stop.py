"""Early stopping of weak trials (``study.pruner``): a searched trial's fine-tune reports a
proxy of its accuracy at steps, and two rules may stop it there.

What is reported: ``Evaluator.proxy_accuracy``, the top-1 of the torch model being fine-tuned
on the first ``PROXY_IMAGES`` val examples, once after BatchNorm recalibration (step 0) and
every ``study.report_every`` fine-tune steps (not at the last step: the trial's own value
follows), its BatchNorm statistics recalibrated for the weights at that step. A proxy: it
ranks trials against each other at the same step and costs a recalibration and a few forward
passes; a trial's value stays its exported model's metric on the whole val split.

Either rule stops the trial (``StoppedEarly``); the loop makes it PRUNED with the reason in
``pruna.stopped``: it costs only the steps it ran and never counts in ``n_trials``. Reference
trials are never stopped.

- The study's pruner (``successive_halving``, ``hyperband`` or ``median``) is told the proxy
  as the trial's intermediate value at that step, where accuracy is the one value the study
  maximizes (``best_within_latency``). Where accuracy is a budget (``fastest_within_drop``)
  the pruner is not asked: it ranks trials by accuracy alone and stopped nearly every plan
  faster but a little less accurate than the early ones (the default study: 57 of 86 trials
  stopped, 10 plans evaluated in 7 min, against 16 in 3 min without it); the budget rule below
  judges those. Optuna's pruners judge single-objective studies only (``pareto`` and
  ``include_size``: off).
- The budget (``fastest_within_drop`` on top-1): at a report after step 0, a trial whose proxy
  is below the budget (the dense model's proxy less ``max_accuracy_drop``) by more than a
  margin that shrinks from 6 points to 1 over the fine-tune stops. With BatchNorm recalibrated
  at each report the curve is what the trial would ship at that step, and it flattens early:
  on 45 random plans of Fashion-MNIST (60 steps), no trial that ended within 2 points of dense
  was more than 1.7 points below the budget at step 20, 1.0 at step 40 (the margin there: 4.3
  and 2.7), while 22 of the 45 were more than 4.3 below at step 20, and stop there (the best
  of them ended 2.6 points below dense; docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..core import names
from ..core.errors import StoppedEarly
from .evaluate import Evaluator
from .objectives import Objective
from .study import Trial, pruner_of

# the budget rule's margin below the budget: END_MARGIN + START_MARGIN * (1 - step / steps)
START_MARGIN = 0.05
END_MARGIN = 0.01


@dataclass(frozen=True)
class StopRules:
    """What may stop the searched trials of one loop.

    Attributes:
        every: fine-tune steps between two reports.
        pruner: the study's pruner, by name, when it judges the trials (None: not told).
        floor: the lowest proxy accuracy within the accuracy budget (None: no budget rule).
    """

    every: int
    pruner: str | None = None
    floor: float | None = None

    @classmethod
    def of(cls, study, objective: Objective, evaluator: Evaluator, every: int) -> StopRules:
        """The rules that apply to ``study`` and ``objective`` (see the module)."""
        budget = objective.accuracy_budget
        floor = None
        if objective.accuracy_is_a_budget and objective.metric == "top1" and budget:
            floor = evaluator.dense_proxy - budget[1]
        # the pruner ranks trials by accuracy: only where accuracy is what the study maximizes
        ranks = tuple(objective.value_names) == (names.ACCURACY,)
        pruner = pruner_of(study) if ranks else None
        return cls(
            every=every,
            pruner=pruner,
            floor=floor,
        )

    @property
    def active(self) -> bool:
        return self.pruner is not None or self.floor is not None


def misses_budget(curve: list[tuple[int, float]], steps: int, floor: float) -> str | None:
    """Why a fine-tune whose reports so far are ``curve`` ((step, proxy accuracy), in order)
    cannot reach ``floor`` by step ``steps`` (see the module), or None. The report at step 0
    (recalibrated, not fine-tuned yet) is never judged: the first steps win back the most."""
    step, now = curve[-1]
    if step == 0:
        return None
    margin = END_MARGIN + START_MARGIN * (1 - step / steps)
    if now >= floor - margin:
        return None
    return (
        f"{(floor - now) * 100:.1f} points below the accuracy budget {floor:.4f} on the same "
        f"images, more than the {margin * 100:.1f} the rest of a fine-tune is allowed to win back"
    )


class Reporter:
    """``on_progress`` of one searched trial's fine-tune: reports its proxy accuracy and
    raises ``StoppedEarly`` when a rule says so. Called at step 0 and every ``every`` steps
    before the last (``train`` keeps the cadence, ``finetune`` leaves the last step out)."""

    def __init__(self, trial: Trial, rules: StopRules, evaluator: Evaluator, steps: int) -> None:
        self.trial, self.rules, self.evaluator, self.steps = trial, rules, evaluator, steps
        self.curve: list[tuple[int, float]] = []

    @property
    def every(self) -> int:
        """Fine-tune steps between two reports (what ``train`` calls it at)."""
        return self.rules.every

    def __call__(self, step: int, model: nn.Module) -> None:
        accuracy = self.evaluator.proxy_accuracy(model)
        self.curve.append((step, accuracy))
        why = self.judge(step, accuracy)
        if why is not None:
            images = len(self.evaluator.proxy_sample())
            raise StoppedEarly(
                step,
                self.steps,
                accuracy,
                f"at fine-tune step {step} of {self.steps}: accuracy {accuracy:.4f} (proxy on "
                f"{images} val images), {why}",
            )

    def judge(self, step: int, accuracy: float) -> str | None:
        """Why the trial stops at ``step`` (the pruner first, then the budget), or None."""
        if self.rules.pruner is not None:
            self.trial.report(accuracy, step)  # the study maximizes accuracy (see ``of``)
            if self.trial.should_prune():
                return f"below the trials before it at that step ({self.rules.pruner})"
        if self.rules.floor is not None:
            return misses_budget(self.curve, self.steps, self.rules.floor)
        return None


__all__ = ["END_MARGIN", "START_MARGIN", "Reporter", "StopRules", "misses_budget"]
