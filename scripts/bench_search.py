"""Benchmark the search (issue 3's targets) on ResNet-20: digits, and Fashion-MNIST when installed.

For each data set: two fresh 40-trial studies — ``pareto`` (accuracy and latency, ships the
fastest trial within 1 point) and ``fastest_within_drop`` (1 point) — then the uniform front once
(every ratio of the space at fp32 and at int8, with the same per-trial fine-tune, seeded), and
for each study the searched front, the hypervolume of the searched trials against the uniform
front's, the chosen model's speedup and accuracy drop after the final fine-tune, and seconds per
trial by stage. Targets, each judged on the study it is about: the ``pareto`` study's searched
hypervolume > uniform; the ``fastest_within_drop`` study's chosen model >= 2.5x within 1 point.
(A fastest_within_drop study is single-objective: it stops once the sampler only proposes plans
it has built or that latency alone rules out, so it does not trace a front.)

    .venv/bin/python scripts/bench_search.py [--data digits fashion_mnist] [--trials 40]
        [--trial-steps 300] [--tie stage] [--sampler tpe] [--objective both]

``--compare MINUTES`` runs issue 22's comparison instead (``scripts/search_compare.py``): the
search before the Model Analyzer against the search with it, at equal wall-clock time.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
from search_compare import compare, composed

from pruna_search.core import hardware, names
from pruna_search.core.keys import SECONDS_ATTR
from pruna_search.core.plan import Plan
from pruna_search.report.front import hypervolume, pareto_front
from pruna_search.search.job import open_session, run_job
from pruna_search.search.rows import study_rows
from pruna_search.search.settings import JobSettings

RATIOS = [0.0, 0.25, 0.5, 0.625, 0.75]


def config(data: str, args, storage: str, objective: str) -> dict:
    data_cfg = {"name": data}
    if data == "fashion_mnist":
        data_cfg.update(size=32, train_size=10000, val_size=2000)
    return {
        "model": {"name": "resnet20", "pretrained": True},
        "data": data_cfg,
        "target": {"name": "cpu", "min_runs": args.min_runs},
        "space": {"ratios": RATIOS, "tie": args.tie, "precision_tie": args.precision_tie},
        "objective": (
            {"name": "pareto", "select_max_drop": 0.01}
            if objective == "pareto"
            else {"name": "fastest_within_drop", "max_accuracy_drop": 0.01}
        ),
        "sampler": {"name": args.sampler, "seed": args.seed},
        "study": {"storage": storage, "n_trials": args.trials, "reference_ratios": [0.5, 0.75]},
        "finetune": {"trial_steps": args.trial_steps, "final_steps": args.final_steps},
    }


def uniform_front(settings: JobSettings) -> list[dict]:
    """Every ratio at fp32 and int8 (the per-trial fine-tune), measured like a trial."""
    session = open_session(settings)
    rows = []
    try:
        for ratio in RATIOS:
            for bits in (32, 8):
                plan = Plan.uniform(
                    session.info,
                    target=settings.target,
                    pruning_ratio=ratio,
                    quantization_bits=bits,
                    finetune=settings.trial_finetune,
                )
                evaluation = session.evaluator.evaluate(plan, name="uniform")
                label = f"uniform {ratio:g} {'int8' if bits == 8 else 'fp32'}"
                rows.append(
                    {
                        **evaluation.metrics,
                        "number": label,
                        "reference": label,
                        "feasible": evaluation.metrics[names.ACCURACY_DROP] <= 0.01,
                        "plan": label,
                    }
                )
                print(
                    f"  {label:<20} acc {evaluation.metrics[names.ACCURACY]:.4f} "
                    f"{evaluation.metrics[names.SPEEDUP]:.2f}x",
                    flush=True,
                )
    finally:
        session.close()
    return rows


def run_study(data: str, objective: str, args) -> dict:
    """A fresh study with ``objective``; its completed rows, the searched ones, its summary."""
    with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
        storage = f"sqlite:///{tmp}/study.db"
        cfg = config(data, args, storage, objective)
        start = time.perf_counter()
        result = run_job(cfg, Path(tmp) / "out")
        seconds = time.perf_counter() - start
        study = optuna.load_study(study_name=result.study_name, storage=storage)
        trials = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
        pruned = [t for t in study.get_trials() if t.state.name == "PRUNED"]
        report = (Path(tmp) / "out" / "report.md").read_text()
        # flagged figures measured again steady after the run replace the flagged ones
        rows = study_rows(study, JobSettings.parse(cfg).objective)
    return {
        "config": cfg,
        "objective": objective,
        "trials": trials,
        "pruned": pruned,
        "rows": rows,
        "searched": [r for r in rows if not r["reference"] and r["duplicate_of"] is None],
        "summary": result.summary,
        "seconds": seconds,
        "report": report,
    }


def print_study(data: str, run: dict, uniform: list[dict], args) -> dict:
    """The searched front, both hypervolumes, the chosen model and seconds per stage."""
    tag = f"[{data} {run['objective']}]"
    rows, searched, s = run["rows"], run["searched"], run["summary"]
    hv = {
        "hv_searched": hypervolume(searched),
        "hv_uniform": hypervolume(uniform),
        "hv_study": hypervolume(rows),
        # within the study's budget (drop <= 1 point): the region a fastest_within_drop study
        # searches; a plan over budget cannot be shipped
        "hv_searched_budget": hypervolume(searched, max_drop=0.01),
        "hv_uniform_budget": hypervolume(uniform, max_drop=0.01),
    }
    front = pareto_front(searched, (names.ACCURACY, names.LATENCY))
    print(f"\n{tag} searched front ({len(searched)} searched trials of {len(rows)}):")
    print(f"  {'trial':>5} {'accuracy':>8} {'drop pt':>7} {'ms':>7} {'speedup':>7}  plan")
    for r in front:
        noisy = " (noisy)" if r.get("latency_noisy") else ""
        print(
            f"  {r['number']:>5} {r[names.ACCURACY]:>8.4f} {r[names.ACCURACY_DROP] * 100:>7.2f} "
            f"{r[names.LATENCY]:>7.3f} {r[names.SPEEDUP]:>6.2f}x  {r['plan']}{noisy}"
        )
    stages: dict[str, list[float]] = {}
    for t in run["trials"]:
        for stage, seconds in (t.user_attrs.get(SECONDS_ATTR) or {}).items():
            stages.setdefault(stage, []).append(seconds)
    per_trial = [
        t.user_attrs[names.TRIAL_SECONDS]
        for t in run["trials"]
        if t.user_attrs.get(names.TRIAL_SECONDS)
    ]
    print(
        f"{tag} hypervolume (drop <= 5 pt x latency/dense): searched {hv['hv_searched']:.4f}, "
        f"uniform {hv['hv_uniform']:.4f} (whole study front, references included: "
        f"{hv['hv_study']:.4f}); within the budget (drop <= 1 pt): searched "
        f"{hv['hv_searched_budget']:.5f}, uniform {hv['hv_uniform_budget']:.5f}"
    )
    if s.get(names.SPEEDUP) is not None:
        print(
            f"{tag} chosen trial {s['chosen_trial']} after {args.final_steps} steps: "
            f"{s[names.SPEEDUP]:.2f}x, drop {s[names.ACCURACY_DROP] * 100:.2f} pt, "
            f"{s[names.COMPRESSION]:.2f}x smaller"
        )
    else:
        print(f"{tag} no trial met the 1-point budget")
    if per_trial:
        print(
            f"{tag} study {run['seconds']:.0f} s; seconds per trial: mean "
            f"{statistics.mean(per_trial):.1f}, by stage: "
            + ", ".join(f"{k} {statistics.mean(v):.2f}" for k, v in stages.items())
        )
    if run["pruned"]:
        each = statistics.mean(t.user_attrs.get(names.TRIAL_SECONDS, 0) for t in run["pruned"])
        print(
            f"{tag} {len(run['pruned'])} plans ruled out on latency before fine-tuning, "
            f"{each:.1f} s each (not counted in the trials above)"
        )
    if args.verbose:
        print(run["report"])
    return {"data": data, "objective": run["objective"], **hv, **s}


def verdicts(data: str, results: dict[str, dict]) -> list[str]:
    """Issue 3's two targets, each judged on the study it is about when both ran: the front
    (hypervolume) on the ``pareto`` study — a fastest_within_drop study is single-objective
    and stops once no faster plan within the budget is left to try — and the chosen model on
    the ``fastest_within_drop`` one."""
    front_of = results.get("pareto") or next(iter(results.values()))
    pick_of = results.get("fastest_within_drop") or next(iter(results.values()))
    lines = []
    ok = front_of["hv_searched"] > front_of["hv_uniform"]
    lines.append(
        f"[{data}] target searched front beats uniform ({front_of['objective']} study): "
        f"hypervolume {front_of['hv_searched']:.4f} vs {front_of['hv_uniform']:.4f} -> "
        + ("PASS" if ok else "MISS")
    )
    speedup = pick_of.get(names.SPEEDUP)
    if speedup is None:
        lines.append(
            f"[{data}] target >= 2.5x within 1 pt ({pick_of['objective']} study): no trial "
            "met the budget -> MISS"
        )
    else:
        drop = pick_of[names.ACCURACY_DROP]
        ok = speedup >= 2.5 and drop <= 0.01
        lines.append(
            f"[{data}] target >= 2.5x within 1 pt ({pick_of['objective']} study): "
            f"{speedup:.2f}x at {drop * 100:.2f} pt -> " + ("PASS" if ok else "MISS")
        )
    return lines


def bench(data: str, args) -> list[str]:
    """Each objective's study on ``data``, then the uniform front once (fine-tunes are seeded:
    the same for every study), then each study's figures and the targets."""
    runs = [run_study(data, objective, args) for objective in args.objectives]
    print(f"\n[{data}] uniform front ({args.trial_steps} fine-tune steps):", flush=True)
    uniform = uniform_front(JobSettings.parse(runs[0]["config"]))
    results = {run["objective"]: print_study(data, run, uniform, args) for run in runs}
    lines = verdicts(data, results)
    print("\n".join(["", *lines]), flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=None)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--trial-steps", type=int, default=300)
    parser.add_argument("--final-steps", type=int, default=300)
    parser.add_argument("--tie", default="stage", choices=("none", "stage"))
    parser.add_argument(
        "--precision-tie",
        default="model",
        choices=("none", "stage", "model"),
        help="model (the conf default): one precision for the whole model",
    )
    parser.add_argument(
        "--objective",
        default="both",
        choices=("both", "fastest_within_drop", "pareto"),
        help="both (default): a pareto study judges the front, a fastest_within_drop study "
        "the chosen model; pareto: two objectives, no budget, ships the fastest within 1 point",
    )
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-runs", type=int, default=300, help="timed runs per model, at least")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each report.md")
    parser.add_argument(
        "--compare",
        type=float,
        default=None,
        metavar="MINUTES",
        help="instead: the search before the analyzer against the search with it (warm start, "
        "early stopping, re-ranking) at equal wall-clock time, MINUTES each "
        "(fastest_within_drop, 1 point; scripts/search_compare.py)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="with --compare: pruna-search overrides that make the config compared (instead "
        "of --data), e.g. the 224x224 case of scripts/bench_real.py",
    )
    args = parser.parse_args()
    os.environ.setdefault("PRUNA_SEARCH_PROGRESS", "0")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.verbose:
        logging.getLogger("pruna_search").setLevel(logging.INFO)
    datasets = args.data or ["digits"] + (
        ["fashion_mnist"] if Path("/usr/share/datasets/fashion-mnist").is_dir() else []
    )
    machine = (
        f"machine: {hardware.cpu_model()}, {os.cpu_count()} cores, VNNI {hardware.has_vnni()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    if args.compare and args.overrides:  # the overrides say the rest
        print(machine)
    else:
        print(
            f"{machine}; {args.trials} trials, {args.trial_steps} steps each, space "
            f"tie={args.tie} precision_tie={args.precision_tie}, sampler {args.sampler}, "
            f"objective {args.objective}"
        )
    args.objectives = (
        ["pareto", "fastest_within_drop"] if args.objective == "both" else [args.objective]
    )
    if args.compare and args.overrides:  # any config: pruna-search's overrides
        print(f"\n== {' '.join(args.overrides)}: old vs new, {args.compare:g} min", flush=True)
        lines = compare(composed(args.overrides), args.compare)
    elif args.compare:
        lines = []
        for data in datasets:
            base = config(data, args, "sqlite:///unused.db", "fastest_within_drop")
            print(f"\n== {data}: old vs new search, {args.compare:g} min each", flush=True)
            lines += [f"[{data}] {line}" for line in compare(base, args.compare)]
    else:
        lines = [line for data in datasets for line in bench(data, args)]
    print("\n".join(["", "== targets", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
