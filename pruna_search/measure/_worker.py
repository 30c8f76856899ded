"""Latency worker, run in its own process: ``python -m pruna_search.measure._worker``.

Reads a JSON request on stdin (``models``, ``settings``, optional ``input`` .npy path and
``max_input_bytes``) and prints one JSON object on stdout: the result of ``timing.measure``,
or ``{"error", "stage"}``.
Imports only numpy, onnxruntime and pruna_search's core and measure (no torch): the device
agent uses it too.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from pruna_search.core.timing import ModelRunError, TimingSettings
from pruna_search.measure.timing import measure


def main() -> None:
    try:
        request = json.loads(sys.stdin.read())
        settings = TimingSettings.from_mapping(request.get("settings") or {})
        x = np.load(request["input"]) if request.get("input") else None
        limit = request.get("max_input_bytes")
        reply = measure(request["models"], settings, x, max_input_bytes=limit)
    except ModelRunError as exc:
        reply = {"error": str(exc), "stage": exc.stage}
    except Exception as exc:  # anything else: report it rather than die with a traceback
        reply = {"error": f"{type(exc).__name__}: {exc}", "stage": "run"}
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
