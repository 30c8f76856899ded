"""Latency worker, run in its own process: ``python -m pruna_search.measure._latency_worker``.

Reads a JSON request on stdin, prints a JSON result on stdout. Models are timed alternately
(baseline, candidate, baseline, ...) so both see the same machine load (STACK.md).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main() -> None:
    request = json.loads(sys.stdin.read())
    threads = int(request["threads"])
    # Keep numpy/BLAS from competing with the timed session.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pruna_search.core import runtime

    x = np.load(request["input"])
    sessions = [runtime.session(path, threads=threads) for path in request["models"]]
    name = sessions[0].get_inputs()[0].name
    feeds = {name: x}
    for sess in sessions:
        for _ in range(int(request["warmup"])):
            sess.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    load_before = os.getloadavg()[0]
    clock = time.perf_counter
    for _ in range(int(request["repeats"])):
        for i, sess in enumerate(sessions):
            start = clock()
            sess.run(None, feeds)
            times[i].append((clock() - start) * 1e3)
    json.dump(
        {"times_ms": times, "load_before": load_before, "load_after": os.getloadavg()[0]},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
