"""Benchmark several workers on one study: one study run by 1, 2 and 3 ``pruna-search`` processes.

For each worker count, a fresh study of ``--trials`` plans (ResNet-20 on digits, the small settings
of tests/test_workers.py: ratios 0, 0.25, 0.5 tied per stage, the random sampler, no warm start,
5 fine-tune steps, latency never cached so every window is timed; heartbeat 2 s, grace 6 s, no
tracking) is run by that many ``pruna-search`` processes started together on one storage: a
fresh SQLite file per worker count by default, or with ``--storage-url`` one database (SQLite
or PostgreSQL) holding one study per worker count under distinct ``study.name`` values (no
admin rights needed). Then the study is read back with Optuna and for each worker count the
script prints: wall time (first start to last exit) and its ratio to the 1-worker run's,
evaluated plans per hour (COMPLETE trials not answered from an earlier one,
``pruna.duplicate_of``), evaluated plans, duplicate evaluations (evaluated trials sharing one
``pruna.claim``), lost plans (reference labels without an evaluated trial, plus plans missing to
reach ``study.n_trials``), the timing windows recorded on the trials (``pruna.timing_windows``),
overlapping windows (sorted by start, a window starting before the previous one ended), the
seconds waited for the timing lock (total and longest), the workers that exported (their
``summary.json`` says ``ok``; the others ``handed over``), and the speedup spread against the
1-worker run: for each model timed in both (matched by ``pruna.claim``; evaluated, or ruled out
on latency before its fine-tune), |speedup with k workers / speedup with 1 - 1|, median and
max. Each run's details line says how loaded the host was: the other CPU load the latency
protocol saw in the windows (the other workers' fine-tunes, and any other work), the trials
timed while the whole host drifted, and the load average before and after the run — wall
times compare only between runs on an equally quiet host.

Targets: no overlapping window, no duplicate evaluation, no lost plan, exactly one exporter, and
the speedup spread (median and max) within ``SPREAD_TARGET`` of scripts/bench_latency.py (3 %:
the speedup's spread between two rounds of the latency protocol, docs/benchmarks.md) — the
workers' fine-tunes run beside other workers' timing windows, which the timing lock does not
stop. The small settings time at most 40 runs per model (``target.max_runs=40``,
``target.noise_retries=0``): their speedups are noisier than the ``cpu`` target's default
protocol that the 3 % is stated for. A worker exiting non-zero makes the script exit 1.

    .venv/bin/python scripts/bench_workers.py [--workers 1,2,3] [--trials 12]
        [--storage-url postgresql://user:pw@host/db] [--keep] [-- PRUNA-SEARCH OVERRIDES...]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from bench_latency import SPREAD_TARGET

from pruna_search.core import hardware, names
from pruna_search.core.keys import (
    CLAIM_ATTR,
    DRIFT_ATTR,
    DUPLICATE_ATTR,
    FINAL_ATTR,
    LATENCY_ATTR,
    NOISY_ATTR,
    PLAN_ATTR,
    REFERENCE_ATTR,
    WINDOWS_ATTR,
)

BIN = Path(sys.executable).parent
# tests/test_cli.py's TINY and tests/test_workers.py's WORKER_ARGS
DEFAULTS = [
    "space.ratios=[0.0,0.25,0.5]",
    "space.tie=stage",
    "study.reference_ratios=[0.5]",
    "sampler=random",
    "target.warmup=5",
    "target.min_runs=20",
    "target.max_runs=40",
    "target.noise_retries=0",
    "target.cache=false",
    "finetune.trial_steps=5",
    "finetune.final_steps=10",
    "finetune.distill=0.0",
    "study.warm_start=none",
    "study.heartbeat_interval=2",
    "study.grace_period=6",
    "tracking=none",
]


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def overrides(trials: int, extra: list[str]) -> list[str]:
    """The defaults and ``study.n_trials``, less the keys ``extra`` sets, then ``extra``."""
    given = {key_of(o) for o in extra}
    base = [*DEFAULTS, f"study.n_trials={trials}"]
    return [o for o in base if key_of(o) not in given] + extra


def n_trials_of(args: list[str]) -> int:
    return int([o for o in args if key_of(o) == "study.n_trials"][-1].split("=", 1)[1])


def run_workers(k: int, args: list[str], url: str, name: str, folder: Path) -> dict:
    """``k`` pruna-search processes on study ``name`` in ``url``, started together; their wall
    time (first start to last exit) and exit codes (the stderr tail of any that failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PRUNA_SEARCH_PROGRESS": "0"}
    with contextlib.ExitStack() as stack:
        procs = []
        start = time.perf_counter()
        for i in range(k):
            log = stack.enter_context(open(folder / f"w{i}.log", "w"))
            command = [
                str(BIN / "pruna-search"),
                *args,
                f"study.storage={url}",
                f"study.name={name}",
                f"hydra.run.dir={folder}/w{i}",
            ]
            procs.append(subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log))
        codes = [proc.wait() for proc in procs]
        wall = time.perf_counter() - start
    for i, code in enumerate(codes):
        if code != 0:
            tail = (folder / f"w{i}.log").read_text().splitlines()[-20:]
            print(f"  worker {i} of {k} exited {code}:\n    " + "\n    ".join(tail))
    return {"wall": wall, "codes": codes}


def model_of(trial) -> str:
    """The model a trial evaluated: its claim (its plan summary when it has none)."""
    attrs = trial.user_attrs
    return str(attrs.get(CLAIM_ATTR) or attrs.get(PLAN_ATTR) or trial.params)


def window_figures(trials) -> dict:
    windows = sorted(w for t in trials for w in t.user_attrs.get(WINDOWS_ATTR) or [])
    overlaps = sum(1 for a, b in itertools.pairwise(windows) if b[0] < a[1])
    waits = [w[2] for w in windows]
    return {
        "windows": len(windows),
        "overlaps": overlaps,
        "waited": sum(waits),
        "waited_max": max(waits, default=0.0),
    }


def exporters(folder: Path, k: int) -> collections.Counter:
    """The workers' ``summary.json`` statuses (``missing``: none written)."""
    statuses = collections.Counter()
    for i in range(k):
        path = folder / f"w{i}" / "summary.json"
        statuses[json.loads(path.read_text())["status"] if path.is_file() else "missing"] += 1
    return statuses


def study_figures(url: str, name: str, n_trials: int, labels: set[str]) -> dict:
    """What the study holds after the run; ``labels``: the reference labels expected (any
    other run's), besides those on this study's own trials."""
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:  # no worker got as far as creating it
        print(f"  no study {name!r} in {url}")
        study = None
    trials = study.get_trials(deepcopy=False) if study is not None else []
    done = [t for t in trials if t.state.name == "COMPLETE"]
    evaluated = [t for t in done if DUPLICATE_ATTR not in t.user_attrs]
    claims = collections.Counter(model_of(t) for t in evaluated)
    references = labels | {
        t.user_attrs[REFERENCE_ATTR] for t in trials if REFERENCE_ATTR in t.user_attrs
    }
    answered = {t.user_attrs.get(REFERENCE_ATTR) for t in evaluated}
    missing = sorted(references - answered)
    final = study.user_attrs.get(FINAL_ATTR) if study is not None else None
    return {
        "evaluated": len(evaluated),
        "duplicates": sum(n - 1 for n in claims.values()),
        "missing_refs": missing,
        "lost": len(missing) + max(0, n_trials - len(evaluated)),
        "references": references,
        "states": collections.Counter(t.state.name for t in trials),
        "final": json.loads(final).get("output") if final else None,
        **window_figures(trials),
        **latency_figures(trials),
    }


def latency_figures(trials) -> dict:
    """The speedup of every model timed (evaluated, or ruled out on latency before its
    fine-tune: PRUNED with a speedup), trials flagged noisy, trials timed while the host
    drifted (``pruna.drift``) and the median of other CPU load seen in the windows (cores)."""
    timed = [
        t
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED")
        and DUPLICATE_ATTR not in t.user_attrs
        and t.user_attrs.get(names.SPEEDUP) is not None
    ]
    loads = [(t.user_attrs.get(LATENCY_ATTR) or {}).get("other_load") for t in trials]
    loads = [v for v in loads if v is not None]
    return {
        "speedups": {model_of(t): t.user_attrs[names.SPEEDUP] for t in timed},
        "noisy": sum(1 for t in timed if t.user_attrs.get(NOISY_ATTR)),
        "drift": sum(1 for t in timed if t.user_attrs.get(DRIFT_ATTR)),
        "timed": len(timed),
        # the same model timed by more than one trial (a plan ruled out on latency is not
        # remembered as evaluated: proposed again, it is built and timed again)
        "retimed": len(timed) - len({model_of(t) for t in timed}),
        "other_load": statistics.median(loads) if loads else float("nan"),
    }


def spread(base: dict[str, float], run: dict[str, float]) -> tuple[int, float, float]:
    """Models evaluated in both runs: how many, the median and max |run / base - 1|."""
    common = [m for m in run if m in base and base[m]]
    moved = [abs(run[m] / base[m] - 1) for m in common]
    if not moved:
        return 0, float("nan"), float("nan")
    return len(common), statistics.median(moved), max(moved)


def bench(k: int, args, cli: list[str], tmp: Path, labels: set[str]) -> dict:
    """One worker count: its run, then its study's figures."""
    folder = tmp / f"k{k}"
    if args.storage_url:
        url, name = args.storage_url, f"bench-workers-{args.run_id}-{k}w"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        url, name = f"sqlite:///{folder}/study.db", f"bench-workers-{k}w"
    print(f"\n== {k} worker(s): study {name}", flush=True)
    load = os.getloadavg()[0]
    run = run_workers(k, cli, url, name, folder)
    result = {"k": k, **run, **study_figures(url, name, n_trials_of(cli), labels)}
    result["load"] = (load, os.getloadavg()[0])
    result["statuses"] = exporters(folder, k)
    result["exporters"] = result["statuses"].get("ok", 0)
    describe(result)
    return result


def describe(r: dict) -> None:
    """A run's details: exit codes, trials by state, the host's state, who exported."""
    states = ", ".join(f"{s} {n}" for s, n in sorted(r["states"].items()))
    print(
        f"  {r['wall']:.0f} s, exit codes {r['codes']}; trials: {states}; models timed "
        f"{r['timed']} ({r['retimed']} timed before), flagged noisy {r['noisy']}, timed "
        f"while the host drifted {r['drift']} "
        f"(other load in the windows, median {r['other_load']:.2f} cores; load average "
        f"{r['load'][0]:.2f} before, {r['load'][1]:.2f} after); summaries: "
        f"{dict(r['statuses'])}; exported by {r['final']}"
        + (f"; references missing: {r['missing_refs']}" if r["missing_refs"] else ""),
        flush=True,
    )


COLUMNS = (
    ("workers", 7),
    ("wall s", 7),
    ("x 1w", 5),
    ("plans/h", 7),
    ("eval", 4),
    ("dup", 3),
    ("lost", 4),
    ("windows", 7),
    ("overlap", 7),
    ("waited s tot/max", 16),
    ("export", 6),
    ("spread med/max %", 16),
    ("common", 6),
)


def row(r: dict, base: dict) -> list[str]:
    """A table row; the speedup spread (models in common, median, max) is kept in ``r``."""
    if r is not base:
        r["spread"] = spread(base["speedups"], r["speedups"])
    n, median, worst = r.get("spread", (0, 0.0, 0.0))
    return [
        str(r["k"]),
        f"{r['wall']:.0f}",
        f"{base['wall'] / r['wall']:.2f}",
        f"{3600 * r['evaluated'] / r['wall']:.0f}",
        str(r["evaluated"]),
        str(r["duplicates"]),
        str(r["lost"]),
        str(r["windows"]),
        str(r["overlaps"]),
        f"{r['waited']:.1f}/{r['waited_max']:.1f}",
        str(r["exporters"]),
        "-" if r is base else f"{100 * median:.2f}/{100 * worst:.2f}",
        "-" if r is base else str(n),
    ]


def table(results: list[dict]) -> None:
    """One row per worker count; ``x 1w`` and the spread are against the 1-worker run (the
    first run when there is none)."""
    base = next((r for r in results if r["k"] == 1), results[0])
    print("\n" + " ".join(f"{title:>{width}}" for title, width in COLUMNS))
    for r in results:
        cells = row(r, base)
        print(" ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)))


def verdicts(results: list[dict]) -> list[str]:
    """The targets, each over every worker count."""
    lines = []
    for key, what in (
        ("overlaps", "overlapping timing windows == 0"),
        ("duplicates", "duplicate evaluations == 0"),
        ("lost", "lost plans == 0"),
        ("exporters", "exporters == 1"),
    ):
        values = [r[key] for r in results]
        ok = all(v == (1 if key == "exporters" else 0) for v in values)
        lines.append(f"{'PASS' if ok else 'MISS'} {what}: {values} (per worker count)")
    spreads = [(r["k"], *r["spread"]) for r in results if "spread" in r]
    ok = bool(spreads) and all(n and max(m, w) <= SPREAD_TARGET for _, n, m, w in spreads)
    shown = ", ".join(
        f"{k} workers {100 * m:.2f}/{100 * w:.2f} % over {n} models" for k, n, m, w in spreads
    )
    lines.append(
        f"{'PASS' if ok else 'MISS'} speedup spread vs 1 worker (median/max) <= "
        f"{100 * SPREAD_TARGET:g} % (bench_latency.py's SPREAD_TARGET): "
        + (shown or "no other worker count")
    )
    return lines


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        default=[1, 2, 3],
        help="worker counts, comma-separated (default 1,2,3); 1 is the spread's reference",
    )
    parser.add_argument("--trials", type=int, default=12, help="study.n_trials (default 12)")
    parser.add_argument(
        "--storage-url",
        default=None,
        help="one database for every run (one study.name per worker count) instead of a "
        "fresh SQLite file each, e.g. postgresql://user:pw@host/db",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("overrides", nargs="*", help="after --: more pruna-search overrides")
    args = parser.parse_args()
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers: worker counts >= 1, e.g. 1,2,3")
    args.workers = list(dict.fromkeys(args.workers))  # each count once: one folder each
    args.run_id = uuid.uuid4().hex[:8]
    return args


def main() -> int:
    args = parse()
    cli = overrides(args.trials, args.overrides)
    storage = args.storage_url or "a fresh SQLite file per worker count"
    print(
        f"machine: {hardware.cpu_model()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}; workers {args.workers}, {n_trials_of(cli)} plans, "
        f"storage: {storage}\npruna-search {' '.join(cli)}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_workers_"))
    results, labels = [], set()
    try:
        for k in args.workers:
            results.append(bench(k, args, cli, tmp, labels))
            labels |= results[-1]["references"]
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    table(results)
    print("\n".join(["", "== targets", *verdicts(results)]))
    failed = [r["k"] for r in results if any(r["codes"])]
    if failed:
        print(f"workers exited non-zero in the runs with {failed} worker(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
