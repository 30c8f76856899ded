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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fuzz_cli import run_case as run_tool  # noqa: E402  (one runner for the tests and the fuzzer)


def run_case(workdir: Path, override: str) -> dict:
    run = run_tool(workdir, "pruna-search", override)
    return {
        "override": override,
        "code": run["code"],
        "stderr": "\n".join(run["lines"]),
        "left": run["left"],
    }


def main_driver(argv: list[str]) -> None:
    base = Path(argv[0]).resolve()
    results = [run_case(base / f"case{i}", override) for i, override in enumerate(argv[1:])]
    print(json.dumps(results))


if __name__ == "__main__":
    main_driver(sys.argv[1:])
