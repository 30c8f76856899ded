"""Replay bad inputs through the command-line tools and print, per case, the exit code, the lines
on stderr and what was left behind (issue 23). A clean row: exit code 2, one line on stderr,
nothing left in its working folder but at most an empty ``outputs/``.

All cases run in this one process (one import of torch, ONNX Runtime, Optuna and MLflow), each
in its own empty working folder with its own file descriptor 2, so everything written to stderr
(Python or C++) is what a user would see. Exit status 1 when a row is not clean.

    .venv/bin/python scripts/fuzz_cli.py [--only SUBSTRING] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pruna_search.cli import analyze, export, search

TOOLS: dict[str, Callable[[], None]] = {
    "pruna-search": search.main,
    "pruna-search-export": export.main,
    "pruna-search-analyze": analyze.main,
}

# (tool, arguments); the search's cases run on the default model and data (digits, ResNet-20)
SEARCH = [
    "modle=cnn",
    "sampler=annealing",
    "objective=fastest",
    "experiment=nope",
    "model=nope",
    "data=nope",
    "target=gpu",
    "tracking=mlfow",
    "study=nope",
    "seed=abc",
    "seed=-1",
    "study.n_trials=0",
    "study.n_trials=-3",
    "study.n_trials=abc",
    "study.n_trials=1.5",
    "study.timeout=0",
    "study.timeout=-5",
    "study.heartbeat_interval=0",
    "study.grace_period=10 study.heartbeat_interval=30",
    "study.max_retry=-1",
    "study.storage=notaurl",
    "study.storage=sqlite:///missing/dir/s.db",
    "study.pruner=halving",
    "study.warm_start=always",
    "study.report_every=0",
    "study.rerank_top=0",
    "study.rerank_top=-1",
    "study.rerank_steps=0",
    "study.rerank_steps=30",
    "study.nope=1",
    "objective.max_accuracy_drop=-0.5",
    "objective.max_accuracy_drop=5",
    "objective.max_accuracy_drop=abc",
    "objective.metric=top3",
    "objective=best_within_latency objective.min_speedup=null",
    "objective=best_within_latency objective.min_speedup=1000",
    "objective=best_within_latency objective.max_latency_ms=0.00001",
    "objective.nope=1",
    "space.ratios=abc",
    "space.ratios=[1.5]",
    "space.ratios=[-0.1,0.5]",
    "space.tie=layer",
    "space.precision_tie=all",
    "space.round_to=0",
    "space.round_to={fp32:8,int8:0}",
    "target.provider=cuda",
    "target.min_runs=0",
    "target.max_runs=1",
    "target.batch_size=0",
    "target.intra_op_threads=-1",
    "target.interleave=sometimes",
    "target.repeats=3",
    "target=remote target.url=notaurl",
    "target.url=http://device:8765",
    "study.storage=mysql://user@localhost/studies",
    "finetune.trial_steps=-1",
    "finetune.final_steps=-1",
    "finetune.lr=-1",
    "finetune.optimizer=rmsprop",
    "finetune.batch_size=0",
    "finetune.device=cuda",
    "finetune.amp=fp8",
    "finetune.distill=2",
    "tracking.uri=./mlruns",
    "data.val_subset=100000",
    "data.val_subset=0",
    "analysis.val_subset=0",
    "analysis.val_subset=100000",
    "analysis.budgets=[0]",
    "model.checkpoint=/nonexistent/weights.pt",
    "model=custom model.name=mypkg.nets:NoSuch",
    "model=custom model.name=os.path:join",
    "hydra.run.dir=/proc/forbidden",
    "-m study.n_trials=3,0",
    "-m sampler=tpe,annealing",
    "-m seed=abc,1",
]
EXPORT = [
    "study.storage=sqlite:///missing.db study.name=x",
    "study.storage=notaurl study.name=x",
    "trial=abc study.name=x",
]
ANALYZE = [
    "analysis.val_subset=0",
    "analysis.budgets=[2]",
    "modle=cnn",
]
CASES = (
    [("pruna-search", c) for c in SEARCH]
    + [("pruna-search-export", c) for c in EXPORT]
    + [("pruna-search-analyze", c) for c in ANALYZE]
)


def run_case(workdir: Path, tool: str, args: str) -> dict:
    """Run ``tool args`` in ``workdir`` with stderr captured at the file descriptor."""
    workdir.mkdir(parents=True)
    os.chdir(workdir)
    log = workdir.parent / f"{workdir.name}.stderr"
    saved = os.dup(2)
    with open(log, "w") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        sys.argv = [tool, *shlex.split(args)]
        try:
            TOOLS[tool]()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return {"tool": tool, "args": args, "code": code, "lines": lines, "left": left}


def clean(row: dict) -> bool:
    return row["code"] == 2 and len(row["lines"]) == 1 and row["left"] in ([], ["outputs"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose arguments contain this")
    parser.add_argument("--keep", action="store_true", help="keep the working folders")
    args = parser.parse_args()
    os.environ["PRUNA_SEARCH_PROGRESS"] = "0"
    os.environ.setdefault("PRUNA_AGENT_TOKEN", "")
    cases = [(tool, a) for tool, a in CASES if args.only in a]
    base = Path(tempfile.mkdtemp(prefix="fuzz_cli_"))
    rows = [run_case(base / f"case{i}", tool, a) for i, (tool, a) in enumerate(cases)]
    print(f"{'clean':<5} {'code':>4} {'lines':>5} {'left':<24} case -> first stderr line")
    for row in rows:
        left = ",".join(row["left"])[:24] or "-"
        first = row["lines"][0][:110] if row["lines"] else ""
        print(
            f"{'yes' if clean(row) else 'NO':<5} {row['code']:>4} {len(row['lines']):>5} "
            f"{left:<24} {row['tool']} {row['args']} -> {first}"
        )
    bad = [r for r in rows if not clean(r)]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} bad inputs clean ({len(bad)} not)")
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
