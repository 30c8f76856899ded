"""Flagged latency figures measured again after the trial loop.

A figure is flagged when the host disturbed its window in a way that puts the speedup at risk
(``measure.latency``); the slow phase may have ended by the time the loop is done, so each
flagged trial's model is timed again: this run's from a kept copy, earlier runs' rebuilt from
their plans without fine-tune (latency does not depend on the weights). A steady figure is
stored on the study and replaces the flagged one in ``rows.study_rows``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core import names
from ..core.keys import NOISY_ATTR, REMEASURED_PREFIX
from ..core.plan import Plan
from ..core.progress import bar
from ..space import SearchSpace
from .evaluate import Evaluator
from .rows import remeasured
from .study import FixedTrial, evaluated

log = logging.getLogger("pruna_search")


@dataclass(frozen=True)
class Flagged:
    """A trial whose latency the noise gate flagged: its plan and a copy of its model (None
    for a trial of an earlier run: rebuilt without fine-tune), to measure again."""

    onnx_path: Path | None
    plan: Plan
    noise: str
    speedup: float


def flagged_earlier(study, space: SearchSpace, kept: Mapping[int, Flagged]) -> dict[int, Flagged]:
    """The study's evaluated trials flagged noisy, not of this run (``kept``) and not measured
    again steady yet."""
    again = remeasured(study)
    return {
        t.number: Flagged(
            None,
            space(FixedTrial(dict(t.params))),
            str(t.user_attrs[NOISY_ATTR]),
            float(t.user_attrs[names.SPEEDUP]),
        )
        for t in evaluated(study)
        if t.user_attrs.get(NOISY_ATTR) and t.number not in again and t.number not in kept
    }


def remeasure_noisy(
    study, space: SearchSpace, evaluator: Evaluator, kept: Mapping[int, Flagged]
) -> tuple[int, int]:
    """Measure again, after the loop, the trials whose latency was flagged noisy (a slow phase
    of the host that outlasted the noise gate's retries; it may have ended since): this run's
    from the copies in ``kept``, earlier runs' (not yet measured again steady) rebuilt from
    their plans without fine-tune — the same layers, channels and precisions, so the same
    latency. A figure that comes back steady is stored in the study (``REMEASURED_PREFIX`` +
    number) and replaces the flagged one in ``rows.study_rows``; one that is noisy again is left as
    it was. Returns how many came back steady and how many did not."""
    earlier = flagged_earlier(study, space, kept)
    flagged_all = {**earlier, **kept}
    if not flagged_all or not evaluator.measure_latency:
        return 0, 0
    log.info(
        f"measure  {len(flagged_all)} trial{'s' if len(flagged_all) != 1 else ''} flagged "
        "noisy, again"
        + (f" ({len(earlier)} of earlier runs, rebuilt without fine-tune)" if earlier else "")
    )
    steady = 0
    progress = bar(total=len(flagged_all), desc="re-measure", leave=False)
    try:
        for number, flagged in sorted(flagged_all.items()):
            try:
                path = flagged.onnx_path or evaluator.untuned(flagged.plan, f"again-{number}")
                latency = evaluator.measure(path, flagged.plan)
            except Exception as exc:  # optional work: a failure keeps the flagged figure
                log.warning(f"trial {number:>4} measured again: {exc}; keeps its flagged figure")
                continue
            finally:
                progress.update(1)
            if latency.noisy:
                log.info(
                    f"trial {number:>4} measured again: noisy again ({latency.noise}); keeps its "
                    f"flagged figure ({flagged.speedup:.2f}x)"
                )
                continue
            metrics = evaluator.latency_metrics(latency)
            study.set_user_attr(
                f"{REMEASURED_PREFIX}{number}",
                {**metrics, "was_speedup": flagged.speedup, "was": flagged.noise},
            )
            steady += 1
            log.info(
                f"trial {number:>4} measured again: {metrics[names.SPEEDUP]:.2f}x "
                f"({metrics[names.LATENCY]:.3f} ms), steady; was {flagged.speedup:.2f}x, flagged"
            )
    finally:
        progress.close()
    return steady, len(flagged_all) - steady


__all__ = ["Flagged", "flagged_earlier", "remeasure_noisy"]
