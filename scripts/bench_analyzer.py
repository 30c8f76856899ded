"""The Model Analyzer's cost against the cost of trial fine-tunes, in one window.

Issue 22's target: on ResNet-20 at 32x32 the analysis costs less than 3 trial fine-tunes. One
process opens the session ``pruna-search OVERRIDES`` would (default: ResNet-20 on digits), then,
``--rounds`` times (3), runs the whole analysis (latency profile, sensitivity, suggestions, as
``pruna-search-analyze`` does) and 3 trial builds of the uniform references at 50 % and 62.5 %
pruning and 25 % (the trial fine-tune of the config: ``finetune.trial_steps``), back to back so
both see the same host. Printed per round: each analysis step's seconds, the 3 fine-tunes'
seconds, and the ratio analysis / 3 fine-tunes (the target is below 1); then the median ratio.

    .venv/bin/python scripts/bench_analyzer.py [--rounds 3] [pruna-search overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RATIOS = (0.5, 0.625, 0.25)  # three trials' worth of pruning (uniform references)


def trial_finetunes(session) -> float:
    """Seconds of the fine-tune stage of 3 trial builds (uniform pruning, trial fine-tune)."""
    from pruna_search.core.plan import Plan

    evaluator, finetune = session.evaluator, session.space.options.finetune
    total = 0.0
    for ratio in RATIOS:
        plan = Plan.uniform(evaluator.info, pruning_ratio=ratio, finetune=finetune)
        total += evaluator.build(plan, f"bench-{ratio:g}").seconds["finetune"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()
    from search_compare import composed

    from pruna_search.analyzer.job import analyze_session
    from pruna_search.search.job import open_session, runner_for
    from pruna_search.search.settings import JobSettings

    settings = JobSettings.parse(composed(["tracking=none", *overrides]))
    session = open_session(settings, runner_for(settings.target))
    try:
        steps = session.space.options.finetune.steps
        print(
            f"model {settings.model_name}, data {settings.data['name']}, trial fine-tune "
            f"{steps} steps; {args.rounds} rounds"
        )
        print(
            "| round | latency profile s | sensitivity s | suggestions s | analysis s "
            "| 3 trial fine-tunes s | analysis / 3 fine-tunes |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        ratios = []
        for round_ in range(1, args.rounds + 1):
            seconds = analyze_session(session).seconds
            analysis = seconds["total"]
            finetunes = trial_finetunes(session)
            print(
                f"| {round_} | {seconds['latency_profile']:.1f} | {seconds['sensitivity']:.1f} "
                f"| {seconds['suggestions']:.1f} | {analysis:.1f} | {finetunes:.1f} "
                f"| {analysis / finetunes:.2f} |",
                flush=True,
            )
            ratios.append(analysis / finetunes)
        print(f"median analysis / 3 trial fine-tunes: {statistics.median(ratios):.2f}")
    finally:
        session.close()


if __name__ == "__main__":
    main()
