"""pruna_search: search per-layer pruning and precision against measured latency and accuracy."""

from __future__ import annotations

__version__ = "0.1.0"
