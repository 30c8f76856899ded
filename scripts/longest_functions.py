"""Print the package's longest functions and widest signatures (issue: no function over ~60
lines, none with over ~6 parameters without a settings object).

    python scripts/longest_functions.py [--top 10] [package folder]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def functions(root: Path):
    """(lines, parameters, 'path:line name') for every function under ``root``."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                names = [a.arg for a in params if a.arg not in ("self", "cls")]
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                yield lines, len(names), f"{path}:{node.lineno} {node.name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="pruna_search")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    found = list(functions(Path(args.root)))
    print(f"{len(found)} functions in {args.root}")
    print("longest (lines):")
    for lines, _, where in sorted(found, reverse=True)[: args.top]:
        print(f"  {lines:4d}  {where}")
    print("widest (parameters, self/cls not counted):")
    for _, params, where in sorted(found, key=lambda f: f[1], reverse=True)[: args.top]:
        print(f"  {params:4d}  {where}")


if __name__ == "__main__":
    main()
