"""ONNX Runtime inference sessions (the only place that creates them).

Quantization tools live in compress/quantize.py; everything that *runs* an ONNX model goes
through ``session`` so threads and optimization levels are set the same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

ort.set_default_logger_severity(3)


def session(path: str | Path | bytes, *, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, sequential execution, all graph
    optimizations (what a deployed model gets)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """First output of ``sess`` for input ``x``."""
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def all_threads() -> int:
    return os.cpu_count() or 1


def version() -> str:
    return ort.__version__
