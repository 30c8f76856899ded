"""Re-ranking: the plans that could be shipped, fine-tuned again at a higher fidelity.

A trial's accuracy is read after a short fine-tune (``finetune.trial_steps``): a pessimistic
and noisy proxy of what the plan reaches after the final fine-tune (ResNet-20 50 % pruned: 0.66
after 60 steps, 0.99 after 300), so the plan that would be best after the final fine-tune is
often not the one the trials rank first. After the trial loop, the candidates are fine-tuned
again with ``study.rerank_steps`` steps (the final fine-tune's by default) and their exported
model scored; the objective then chooses on the highest fidelity each plan reached
(``rows.study_rows``), and the report shows both accuracies.

Which plans (``candidates``): where accuracy is a budget (``fastest_within_drop``, ``pareto``),
the plan the objective ships now and the faster plans of the accuracy/latency front nearest the
budget (a few points over it after a short fine-tune may be within it after a long one); where
accuracy is what is maximized under a latency budget (``best_within_latency``), the most
accurate plans within the budget. Each round re-ranks the first ``study.rerank_top`` not
re-ranked yet; when their new accuracy moved the choice (a faster plan now within the budget),
the candidates are read again for another round; when it did not, re-ranking ends (the plans
after these are further from the choice), as it does on Ctrl-C.
``study.timeout`` stops starting new trials; the first ``rerank_top`` re-ranks of a run come
after it (they are part of choosing, as the final export is), further ones only within it. A
plan that prunes nothing is not fine-tuned: its trial figure is final already.

Stored on the study (a finished trial's own attributes cannot change), one attribute per trial
and fidelity: ``pruna.reranked.<trial>.<steps>``; a resumed or repeated run re-ranks only what
is missing. The fine-tune is seeded, so a plan re-ranked with the final recipe on the search's
data builds the very model the final step would: ``Reranked.models`` keeps it to ship as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..compress import Candidate
from ..core import names
from ..core.keys import RERANKED_PREFIX
from ..core.plan import Finetune, Plan
from ..core.progress import bar
from ..report.front import pareto_front
from ..space import SearchSpace
from .evaluate import Evaluator
from .objectives import Objective
from .rows import choice, study_rows
from .study import FixedTrial

log = logging.getLogger("pruna_search")


@dataclass
class Reranked:
    """What re-ranking did in this run."""

    plans: int = 0  # plans fine-tuned again
    seconds: float = 0.0
    recipe: Finetune | None = None  # the fine-tune the plans were re-ranked with
    # trial number -> the model its re-rank built (to ship as is when it is the final recipe)
    models: dict[int, Candidate] = field(default_factory=dict)


def candidates(rows: Sequence[Mapping[str, Any]], objective: Objective) -> list[Mapping[str, Any]]:
    """The study's rows in the order a higher-fidelity accuracy could change the choice (see
    the module's doc); repeats left out."""
    unique = [r for r in rows if r["duplicate_of"] is None]
    if objective.optimized == names.ACCURACY:  # accuracy is maximized within a latency budget
        within = [r for r in unique if r["feasible"]]
        return sorted(within, key=lambda r: (-r[names.ACCURACY], -r[names.SPEEDUP]))
    chosen = objective.choose(unique)
    floor = chosen[names.SPEEDUP] if chosen is not None else 0.0
    front = pareto_front(unique, (names.ACCURACY, names.LATENCY))
    faster = [r for r in front if r[names.SPEEDUP] >= floor and r is not chosen]
    ordered = sorted(faster, key=lambda r: (r[names.ACCURACY_DROP], -r[names.SPEEDUP]))
    return ([chosen] if chosen is not None else []) + ordered


def record(study, number: int, steps: int, accuracy: float, drop: float, seconds: float) -> None:
    """Store a trial's accuracy at ``steps`` fine-tune steps on the study."""
    study.set_user_attr(
        f"{RERANKED_PREFIX}{number}.{steps}",
        {
            "steps": steps,
            names.ACCURACY: accuracy,
            names.ACCURACY_DROP: drop,
            "seconds": round(seconds, 3),
        },
    )


class Reranker:
    """Re-ranks one study's candidates at ``recipe`` (see the module's doc)."""

    def __init__(
        self,
        study,
        space: SearchSpace,
        evaluator: Evaluator,
        objective: Objective,
        recipe: Finetune,
    ) -> None:
        self.study, self.space, self.evaluator, self.objective = study, space, evaluator, objective
        self.recipe = recipe
        self.outcome = Reranked(recipe=recipe)

    def plan_of(self, number: int) -> Plan:
        return self.space(FixedTrial(dict(self.study.trials[number].params))).with_finetune(
            self.recipe
        )

    def final_already(self, row: Mapping[str, Any]) -> bool:
        """Re-ranked at this fidelity or higher, or nothing to fine-tune."""
        steps = row["rerank_steps"]
        if steps is not None and steps >= self.recipe.steps:
            return True
        return self.plan_of(int(row["number"])).is_dense

    def todo(self, top: int) -> list[Mapping[str, Any]]:
        """The first ``top`` candidates not at this fidelity yet."""
        first = candidates(study_rows(self.study, self.objective), self.objective)[:top]
        return [r for r in first if not self.final_already(r)]

    def one(self, row: Mapping[str, Any]) -> None:
        """Fine-tune one candidate again, score its exported model, store the figure."""
        number = int(row["number"])
        start = time.perf_counter()
        plan = self.plan_of(number)
        candidate = self.evaluator.build(plan, f"rerank-{number}")
        accuracy = self.evaluator.score(candidate.onnx_path)
        seconds = time.perf_counter() - start
        drop = self.evaluator.baseline[names.ACCURACY] - accuracy
        record(self.study, number, self.recipe.steps, accuracy, drop, seconds)
        self.outcome.models[number] = candidate
        self.outcome.plans += 1
        self.outcome.seconds += seconds
        log.info(
            f"rerank trial {number:>4} {row.get('plan', ''):<38} acc {row[names.ACCURACY]:.4f} "
            f"-> {accuracy:.4f} ({-drop * 100:+.2f} pt) after {self.recipe.steps} steps, "
            f"{row[names.SPEEDUP]:.2f}x, {seconds:.1f} s"
        )

    def run(
        self, top: int, deadline: float | None, stop: Callable[[], bool] = lambda: False
    ) -> Reranked:
        """Rounds of re-ranking: each re-ranks the first ``top`` candidates not re-ranked yet;
        another round follows only when this one moved the choice (the plans after it are then
        read again), and none when ``stop()`` says so. Past ``deadline`` (``time.monotonic()``,
        the study's timeout) only the first ``top`` plans of the run are re-ranked: they are
        part of choosing, as the final export is, but further rounds are not."""
        progress = bar(total=None, desc="re-rank", leave=False)

        def may_go_on() -> bool:
            in_time = deadline is None or time.monotonic() < deadline
            return not stop() and (in_time or self.outcome.plans < top)

        try:
            while may_go_on():
                todo = self.todo(top)
                before = self.choice()
                if not todo or not self._round(todo, may_go_on, progress):
                    break
                if self.choice() == before:
                    break  # the choice held: the plans after these are further from it
        finally:
            progress.close()
        return self.outcome

    def choice(self) -> int | None:
        """The trial the objective ships now (at the highest fidelity each plan reached)."""
        chosen = choice(study_rows(self.study, self.objective), self.objective)
        return None if chosen is None else int(chosen["number"])

    def _round(
        self, todo: list[Mapping[str, Any]], may_go_on: Callable[[], bool], progress
    ) -> bool:
        """Re-rank ``todo`` while ``may_go_on()``; False when one failed (re-ranking stops, the
        choice is made on what was re-ranked)."""
        for row in todo:
            if not may_go_on():
                return True
            try:
                self.one(row)
            except Exception as exc:  # optional work: the trial figures stand
                log.warning(
                    f"rerank trial {row['number']:>4} failed ({type(exc).__name__}: {exc}); "
                    "re-ranking stops, the choice is made on what was re-ranked"
                )
                return False
            progress.update(1)
        return True


__all__ = ["Reranked", "Reranker", "candidates", "record"]
