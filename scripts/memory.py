"""Peak resident memory of a process and its children, sampled from /proc (Linux).

Used by the benchmarks that must stay under a memory target: ``Peak(pid)`` samples in a thread
until ``stop()``; ``tree_mb`` is the largest sum of the tree's proportional set sizes seen (PSS:
a page shared between a process and its forked loader workers is split between them, so the
sum is the memory the tree really holds), ``main_mb`` the main process's own high-water mark
of resident memory (VmHWM).
"""

from __future__ import annotations

import threading
from pathlib import Path


def _field(pid: int, file: str, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/<file> (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += _children(current)
    return pids


class Peak:
    """Samples the resident memory of ``pid``'s process tree every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        self.pid = pid
        self.interval = interval
        self.tree_kb = 0
        self.main_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        total = sum(_field(p, "smaps_rollup", "Pss") for p in tree(self.pid))
        self.tree_kb = max(self.tree_kb, total)
        self.main_kb = max(self.main_kb, _field(self.pid, "status", "VmHWM"))

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    @property
    def tree_mb(self) -> float:
        return self.tree_kb / 1024

    @property
    def main_mb(self) -> float:
        return self.main_kb / 1024
