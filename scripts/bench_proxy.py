"""The early-stopping proxy against the trial's own accuracy: what a report can judge.

One process opens the session ``pruna-search OVERRIDES`` would (default: ResNet-20 on
Fashion-MNIST, the comparison's space), draws ``--plans`` random plans of the space (Optuna's
random sampler, ``--seed``), and builds each with the trial fine-tune and a progress callback
every ``--every`` steps that reads ``Evaluator.proxy_accuracy`` as the early-stopping reports do
(BatchNorm recalibrated for the weights at that step); then it scores the trial's exported
model on the val split. Printed per plan: its accuracy and proxy curve; then, by how far below
dense the trial ended, how far below the proxy budget (dense proxy less 1 point) each report
read, and what the budget rule (search/early_stop.py) would have stopped.

    .venv/bin/python scripts/bench_proxy.py [--plans 45] [--every 10] [pruna-search overrides ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BANDS = ((0.0, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 1.0))  # below dense at the end
BUDGET = 0.01
DEFAULTS = ["data=fashion_mnist", "space.ratios=[0,0.25,0.5,0.625,0.75]", "space.tie=none"]


class Curve:
    """A progress callback that reads the proxy every ``every`` steps."""

    def __init__(self, evaluator, every: int) -> None:
        self.evaluator, self.every, self.points = evaluator, every, []

    def __call__(self, step: int, model) -> None:
        self.points.append((step, self.evaluator.proxy_accuracy(model)))


def curves(session, plans: int, every: int, seed: int) -> list[tuple[float, list]]:
    """(the trial's accuracy, its proxy curve) of ``plans`` random plans that prune."""
    import optuna

    evaluator, space = session.evaluator, session.space
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows = []
    for i in range(plans):
        plan = space(draws.ask())
        if plan.is_dense:
            continue
        start, curve = time.perf_counter(), Curve(evaluator, every)
        accuracy = evaluator.score(evaluator.build(plan, f"plan-{i}", on_progress=curve).onnx_path)
        rows.append((accuracy, curve.points))
        points = " ".join(f"{step}:{value:.3f}" for step, value in curve.points)
        seconds = time.perf_counter() - start
        print(f"plan {i}: accuracy {accuracy:.4f}, proxy {points} ({seconds:.1f} s)")
    return rows


def summary(rows: list[tuple[float, list]], dense: float, floor: float, steps: int) -> None:
    from pruna_search.search.study import report_interval

    reported = sorted({step for _, curve in rows for step, _ in curve})
    print(f"\n| ended below dense | plans | {' | '.join(f'step {s}' for s in reported)} |")
    print(f"| --- | ---: |{' --- |' * len(reported)}")
    for low, high in BANDS:
        band = [curve for accuracy, curve in rows if low <= round(dense - accuracy, 6) < high]
        cells = []
        for step in reported:
            gaps = [(floor - dict(curve)[step]) * 100 for curve in band if step in dict(curve)]
            cells.append(f"{min(gaps):.1f} to {max(gaps):.1f}" if gaps else "-")
        print(f"| {low * 100:g} to {high * 100:g} pt | {len(band)} | {' | '.join(cells)} |")
    every = report_interval(None, steps)
    stopped = [(stop_step(c, steps, floor, every), a) for a, c in rows]
    stopped = [(step, accuracy) for step, accuracy in stopped if step is not None]
    lost = [a for _, a in stopped if a >= dense - 2 * BUDGET]
    best = max((a for _, a in stopped), default=dense)
    print(
        f"\nthe budget rule (reports every {every} steps) stops {len(stopped)} of {len(rows)} (at "
        f"steps {sorted(s for s, _ in stopped)}); ended within 2 points: {len(lost)}; the best "
        f"stopped ended {(dense - best) * 100:.1f} pt below dense"
    )


def stop_step(curve: list, steps: int, floor: float, every: int) -> int | None:
    """The report step the budget rule stops ``curve`` at (reports every ``every`` steps)."""
    from pruna_search.search.early_stop import misses_budget

    reports = [(step, value) for step, value in curve if step % every == 0]
    for i, (step, _) in enumerate(reports):
        if misses_budget(reports[: i + 1], steps, floor):
            return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=45)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args, overrides = parser.parse_known_args()
    from search_compare import composed

    from pruna_search.search.job import open_session, runner_for
    from pruna_search.search.settings import JobSettings

    settings = JobSettings.parse(composed(["tracking=none", *DEFAULTS, *overrides]))
    session = open_session(settings, runner_for(settings.target))
    try:
        evaluator = session.evaluator
        dense, proxy = float(evaluator.baseline["accuracy"]), evaluator.dense_proxy
        print(
            f"dense {dense:.4f}, its proxy {proxy:.4f}; budget on the proxy {proxy - BUDGET:.4f}"
        )
        rows = curves(session, args.plans, args.every, args.seed)
        steps = session.space.options.finetune.steps
        summary(rows, dense, proxy - BUDGET, steps)
    finally:
        session.close()


if __name__ == "__main__":
    main()
