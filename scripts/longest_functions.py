"""Print the package's longest functions and widest signatures, and with ``--check`` fail when
one is over the limits: ~60 lines (the docstring not counted: it documents, it does not grow
the logic) and 6 parameters (self/cls not counted; a def marked ``noqa: PLR0913`` with its
reason is exempt from the parameter limit, as ruff's check is).

    python scripts/longest_functions.py [--top 10] [--check] [package folder]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MAX_LINES = 60
MAX_PARAMS = 6


def functions(root: Path):
    """(lines, parameters, exempt, 'path:line name') for every function under ``root``."""
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        lines_of = source.splitlines()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                names = [a.arg for a in params if a.arg not in ("self", "cls")]
                exempt = "noqa: PLR0913" in lines_of[node.lineno - 1]
                yield _length(node), len(names), exempt, f"{path}:{node.lineno} {node.name}"


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the def to the end, less the docstring's."""
    total = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if docstring and isinstance(first.value.value, str):
        total -= (first.end_lineno or first.lineno) - first.lineno + 1
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="pruna_search")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--check", action="store_true", help="exit 1 when over the limits")
    args = parser.parse_args()
    found = list(functions(Path(args.root)))
    print(f"{len(found)} functions in {args.root}")
    print("longest (lines, docstring not counted):")
    for lines, _, _, where in sorted(found, reverse=True)[: args.top]:
        print(f"  {lines:4d}  {where}")
    print("widest (parameters, self/cls not counted):")
    for _, params, exempt, where in sorted(found, key=lambda f: f[1], reverse=True)[: args.top]:
        print(f"  {params:4d}  {where}" + ("  (noqa: PLR0913, public API)" if exempt else ""))
    over = [f for f in found if f[0] > MAX_LINES or (f[1] > MAX_PARAMS and not f[2])]
    for lines, params, _, where in over:
        print(
            f"over the limits ({MAX_LINES} lines, {MAX_PARAMS} parameters): {where} "
            f"({lines} lines, {params} parameters)"
        )
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
