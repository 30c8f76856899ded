"""Command-line entry points (Hydra lives only here): ``pruna-search``, ``pruna-search-export``,
``pruna-search-ui``. (The device agent's ``pruna-search-agent`` lives in ``agent/``.)"""

from __future__ import annotations

import importlib.util
import sys

_NEEDED = ("torch", "torch_pruning", "onnx", "optuna", "hydra", "mlflow")
_missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    # an agent-only install ("pruna_search[agent]") has none of the search's libraries
    print(
        f"error: the search needs {', '.join(_missing)}; install it with "
        "pip install 'pruna_search[search]'",
        file=sys.stderr,
    )
    raise SystemExit(2)
