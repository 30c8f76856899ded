"""ONNX Runtime inference sessions (the only place that creates them).

Quantization tools live in compress/quantize.py; everything that *runs* an ONNX model goes
through ``session`` so threads, provider and optimization level are set the same way everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import TargetError

ort.set_default_logger_severity(3)

CPU_PROVIDER = "CPUExecutionProvider"
# short names accepted in target configs (``provider: cuda``)
PROVIDER_ALIASES = {
    "cpu": CPU_PROVIDER,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}
GRAPH_OPTIMIZATION = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def provider_name(name: str) -> str:
    """The ONNX Runtime name of a provider given by its short or full name."""
    return PROVIDER_ALIASES.get(str(name).lower(), str(name))


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def check_provider(name: str, *, field: str = "target.provider") -> str:
    """``name`` resolved, or a TargetError saying what this ONNX Runtime has instead."""
    full = provider_name(name)
    have = available_providers()
    if full not in have:
        raise TargetError(
            f"{field}: {name!r} is not in this ONNX Runtime {ort.__version__} (it has "
            f"{', '.join(have)}); install the onnxruntime build for it (e.g. onnxruntime-gpu "
            "for cuda, onnxruntime-openvino for openvino) or use provider: cpu"
        )
    return full


def session(
    path: str | Path | bytes,
    *,
    threads: int = 1,
    provider: str = CPU_PROVIDER,
    provider_options: Mapping[str, Any] | None = None,
    graph_optimization: str = "all",
) -> ort.InferenceSession:
    """A session with ``threads`` intra-op threads, sequential execution, and the given
    provider and graph optimization level (by default: CPU, all optimizations — what a
    deployed model gets). Providers other than CPU keep CPU as the fallback for the ops they
    do not run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        options.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
    except KeyError:
        raise TargetError(
            f"target.graph_optimization: {graph_optimization!r} is unknown; use one of "
            f"{', '.join(GRAPH_OPTIMIZATION)}"
        ) from None
    full = provider_name(provider)
    providers: list[Any] = [(full, dict(provider_options or {}))]
    if full != CPU_PROVIDER:
        providers.append(CPU_PROVIDER)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=providers)


def run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """First output of ``sess`` for input ``x``."""
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


# A batch run to score or calibrate a model holds at most this many input values (16 images at
# 3x224x224, 256 at 3x32x32): ONNX Runtime's activation memory grows with the batch.
BATCH_VALUES = 1 << 22
MAX_BATCH = 256


def batch_for(
    input_shape: tuple[int, ...], limit: int = MAX_BATCH, budget: int = BATCH_VALUES
) -> int:
    """A batch size for running inputs of one example's ``input_shape``: a power of two, at
    most ``limit``, whose inputs hold at most ``budget`` values."""
    values = max(1, int(np.prod(input_shape)))
    batch = 1
    while batch * 2 <= limit and batch * 2 * values <= budget:
        batch *= 2
    return batch


def all_threads() -> int:
    return os.cpu_count() or 1


def version() -> str:
    return ort.__version__
