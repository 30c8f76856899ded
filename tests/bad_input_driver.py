"""Run ``pruna-search <override>`` for many bad overrides in one process (one import of torch,
ONNX Runtime, Optuna and MLflow instead of one per case).

Each case gets its own working directory and its own file descriptor 2, so everything written to
stderr (Python or C++) is what a user would see. Usage::

    python tests/bad_input_driver.py WORKDIR OVERRIDES [OVERRIDES ...]

where each OVERRIDES is one case: one override, or several separated by spaces.

prints one JSON list: ``{"override", "code", "stderr", "left"}`` per case, where ``left`` lists
every file the run left in its working directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pruna_search.cli.search import main


def run_case(workdir: Path, override: str) -> dict:
    workdir.mkdir(parents=True)
    os.chdir(workdir)
    log = workdir.parent / f"{workdir.name}.stderr"
    saved = os.dup(2)
    with open(log, "w") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        sys.argv = ["pruna-search", *override.split()]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    return {"override": override, "code": code, "stderr": log.read_text(), "left": left}


def main_driver(argv: list[str]) -> None:
    base = Path(argv[0]).resolve()
    results = [run_case(base / f"case{i}", override) for i, override in enumerate(argv[1:])]
    print(json.dumps(results))


if __name__ == "__main__":
    main_driver(sys.argv[1:])
