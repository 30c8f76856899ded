"""``bench_search.py --compare MINUTES``: the search before the Model Analyzer against the search
with it, at equal wall-clock time, on one model and data set (issue 22's benchmark).

- **old**: ``study.pruner=none study.warm_start=none study.rerank_top=null`` (the search as it
  was: every trial fine-tuned in full, the choice made on the trial fine-tune's accuracy);
- **new**: the defaults: an analysis first (``pruna-search-analyze``, timed), its suggestions
  enqueued after the references, weak trials stopped early, the top plans re-ranked at the
  final fine-tune.

The new search runs first with ``study.timeout`` = MINUTES less the analysis; its trial loop
and re-ranking together take W seconds. The old search then runs with ``study.timeout`` = W +
the analysis, so both spend the same wall-clock time on analysing, searching and choosing (the
opening, the budget check and the final export are counted apart). Same seed, same machine,
back to back. Hypervolumes are on the trials' own figures (trial fine-tune, both arms alike).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from pruna_search.analyzer.job import run_analysis
from pruna_search.analyzer.warmstart import warm_start_plans
from pruna_search.core import names
from pruna_search.core.keys import DUPLICATE_ATTR, STOPPED_ATTR
from pruna_search.report.front import hypervolume
from pruna_search.search.job import run_job
from pruna_search.search.rows import at_trial_fidelity, study_rows
from pruna_search.search.settings import JobSettings

OLD = {"pruner": "none", "warm_start": "none", "rerank_top": None}
NEW = {"pruner": "successive_halving", "warm_start": "auto", "rerank_top": 3}
MANY = 10_000  # n_trials: the timeout is what ends both searches


def composed(overrides: list[str]) -> dict:
    """The config ``pruna-search OVERRIDES`` runs (its defaults composed by Hydra)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pruna_search.cli import schema
    from pruna_search.cli.errors import CONF_DIR

    schema.register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("search", overrides=overrides), resolve=True)


def arm_config(base: dict, arm: dict, timeout: float) -> dict:
    cfg = copy.deepcopy(base)
    cfg["study"].update(arm, n_trials=MANY, timeout=max(1.0, timeout))
    cfg["tracking"] = {"name": "none"}
    return cfg


def timeline(study, rows: list[dict], offset: float) -> list[tuple[float, dict]]:
    """(seconds since the arm started, row) per evaluated trial, in completion order, on the
    trials' own figures."""
    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    by_number = {t.number: t for t in study.trials}
    done = []
    for row in at_trial_fidelity([r for r in rows if r["duplicate_of"] is None]):
        trial = by_number[int(row["number"])]
        done.append((offset + (trial.datetime_complete - start).total_seconds(), row))
    return sorted(done, key=lambda pair: pair[0])


def run_arm(name: str, base: dict, arm: dict, timeout: float, analysis_s: float) -> dict:
    """One search with ``arm``'s study settings; its rows, timeline, summary and seconds."""
    with tempfile.TemporaryDirectory(prefix=f"bench_compare_{name}_") as tmp:
        storage = f"sqlite:///{tmp}/study.db"
        cfg = arm_config({**base, "study": {**base["study"], "storage": storage}}, arm, timeout)
        start = time.perf_counter()
        result = run_job(cfg, Path(tmp) / "out", warm_start=warm_start_plans)
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name=result.study_name, storage=storage)
        rows = study_rows(study, JobSettings.parse(cfg).objective)
        states = [t.state.name for t in study.get_trials()]
        return {
            "name": name,
            "summary": result.summary,
            "rows": rows,
            "timeline": timeline(study, rows, analysis_s),
            "wall": wall,
            "loop": result.summary.get("loop_seconds_now", 0.0),
            "trials": study.get_trials(),
            "states": {s: states.count(s) for s in set(states)},
            "analysis_s": analysis_s,
        }


def hv_at(timeline: list[tuple[float, dict]], seconds: float) -> float:
    return hypervolume([row for at, row in timeline if at <= seconds])


def time_to_reach(timeline: list[tuple[float, dict]], target: float) -> float | None:
    """The first moment the arm's study hypervolume reaches ``target`` (None: never)."""
    for at, _ in timeline:
        if hv_at(timeline, at) >= target - 1e-12:
            return at
    return None


def saved_seconds(run: dict) -> tuple[int, float, float]:
    """Trials stopped early, what they cost, and what they would have cost in full (the mean
    seconds of the evaluated searched trials that were fine-tuned)."""
    stopped = [t for t in run["trials"] if STOPPED_ATTR in t.user_attrs]
    full = [
        t.user_attrs[names.TRIAL_SECONDS]
        for t in run["trials"]
        if t.state.name == "COMPLETE"
        and DUPLICATE_ATTR not in t.user_attrs
        and t.user_attrs.get(names.TRIAL_SECONDS, 0) > 5
    ]
    each = sum(full) / len(full) if full else 0.0
    cost = sum(t.user_attrs.get(names.TRIAL_SECONDS, 0.0) for t in stopped)
    return len(stopped), cost, each * len(stopped) - cost


def print_arm(run: dict, equal_n: int) -> dict[str, Any]:
    s, rows = run["summary"], run["rows"]
    unique = at_trial_fidelity([r for r in rows if r["duplicate_of"] is None])
    references = [r for r in unique if r["reference"]]
    searched = [r for r in unique if not r["reference"]]
    stopped, cost, saved = saved_seconds(run)
    out = {
        "hv_study": hypervolume(unique),
        "hv_uniform": hypervolume(references),
        "hv_searched": hypervolume(searched),
        "hv_searched_equal": hypervolume(searched[:equal_n]),
        "evaluated": len(unique),
        "searched": len(searched),
        "stopped": stopped,
        "speedup": s.get(names.SPEEDUP),
        "drop": s.get(names.ACCURACY_DROP),
        "chosen_accuracy": s.get("chosen_accuracy"),
        "final_accuracy": s.get(names.ACCURACY),
    }
    tag = f"[{run['name']}]"
    print(
        f"{tag} analysis {run['analysis_s']:.0f} s + search job {run['wall']:.0f} s; trials "
        f"{run['states']}; {out['evaluated']} plans evaluated ({len(references)} references, "
        f"{len(searched)} searched); {stopped} stopped early costing {cost:.0f} s, about "
        f"{saved:.0f} s saved; {s.get('pruned_now', 0)} ruled out on latency; re-ranked "
        f"{s.get('reranked_now', 0)} ({s.get('reranked_seconds_now', 0):.0f} s)"
    )
    print(
        f"{tag} hypervolume: study {out['hv_study']:.4f}, searched {out['hv_searched']:.4f} "
        f"(first {equal_n}: {out['hv_searched_equal']:.4f}), uniform references "
        f"{out['hv_uniform']:.4f}"
    )
    marks = [t for t, _ in run["timeline"]]
    checkpoints = [marks[i] for i in range(0, len(marks), max(1, len(marks) // 8))] + marks[-1:]
    print(
        f"{tag} study hypervolume by trial count (at s): "
        + ", ".join(
            f"{i + 1}: {hv_at(run['timeline'], at):.4f} ({at:.0f})"
            for i, at in enumerate(marks)
            if at in checkpoints
        )
    )
    if out["speedup"] is not None:
        print(
            f"{tag} shipped trial {s['chosen_trial']}: {out['speedup']:.2f}x, "
            f"{-out['drop'] * 100:+.2f} pt after the final fine-tune; chosen on accuracy "
            f"{out['chosen_accuracy']:.4f}, measured {out['final_accuracy']:.4f} after it "
            f"({(out['final_accuracy'] - out['chosen_accuracy']) * 100:+.2f} pt)"
        )
    else:
        print(f"{tag} no plan met the budget")
    return out


def verdicts(old: dict, new: dict, runs: dict[str, dict]) -> list[str]:
    lines = []
    reached = time_to_reach(runs["new"]["timeline"], old["hv_study"])
    total = runs["old"]["loop_total"]
    ok = reached is not None and reached <= total / 2
    lines.append(
        f"new reaches the old search's final hypervolume ({old['hv_study']:.5f}) at "
        + (
            f"{reached:.0f} s"
            if reached is not None
            else f"never (new ends at {new['hv_study']:.5f})"
        )
        + f" of {total:.0f} s (target <= half) -> "
        + ("PASS" if ok else "MISS")
    )
    ratio = new["hv_searched_equal"] / max(new["hv_uniform"], 1e-12)
    lines.append(
        f"new searched front vs uniform references (equal count): {ratio:.2f}x (target >= 1.10) "
        + ("-> PASS" if ratio >= 1.10 else "-> MISS")
    )
    if new["speedup"] is None or old["speedup"] is None:
        lines.append("shipped model: one arm shipped nothing -> MISS")
    else:
        ok = new["speedup"] >= old["speedup"] and new["drop"] <= 0.01
        lines.append(
            f"shipped within 1 pt: new {new['speedup']:.2f}x ({-new['drop'] * 100:+.2f} pt) vs "
            f"old {old['speedup']:.2f}x ({-old['drop'] * 100:+.2f} pt) -> "
            + ("PASS" if ok else "MISS")
        )
        gap = abs(new["final_accuracy"] - new["chosen_accuracy"]) * 100
        lines.append(
            f"new: accuracy after the final fine-tune within 0.3 pt of the one chosen on: "
            f"{gap:.2f} pt -> " + ("PASS" if gap <= 0.3 else "MISS")
        )
    return lines


def compare(base: dict, minutes: float) -> list[str]:
    """Analysis + new search within ``minutes``, then the old search for the same time."""
    budget = minutes * 60
    with tempfile.TemporaryDirectory(prefix="bench_compare_analysis_") as tmp:
        start = time.perf_counter()
        run_analysis({**base, "tracking": {"name": "none"}}, Path(tmp))
        analysis_s = time.perf_counter() - start
    print(f"[new] analysis {analysis_s:.0f} s", flush=True)
    runs = {"new": run_arm("new", base, NEW, budget - analysis_s, analysis_s)}
    new_total = analysis_s + runs["new"]["summary"]["loop_seconds_now"]
    runs["new"]["loop_total"] = new_total
    print(f"[new] analysis + trial loop + re-ranking: {new_total:.0f} s", flush=True)
    runs["old"] = run_arm("old", base, OLD, new_total, 0.0)
    runs["old"]["loop_total"] = runs["old"]["summary"]["loop_seconds_now"]
    print(f"[old] trial loop: {runs['old']['loop_total']:.0f} s", flush=True)
    equal_n = sum(1 for r in runs["new"]["rows"] if r["reference"] and r["duplicate_of"] is None)
    figures = {name: print_arm(run, equal_n) for name, run in runs.items()}
    return verdicts(figures["old"], figures["new"], runs)


__all__ = ["compare", "composed"]
