"""pruna_search: search per-layer pruning and precision against latency measured on the
target and accuracy measured on the exported ONNX model.

The one-shot API::

    import pruna_search as ps
    data = ps.data.load("digits")
    model = ps.models.build("resnet20", data=data, pretrained=True)
    result = ps.optimize(model, ps.Config(pruning_ratio=0.5, quantization_bits=8), data=data)
    result.export("model.onnx")
"""

from __future__ import annotations

__version__ = "0.2.0.dev0"

import os as _os  # noqa: E402
from typing import Any as _Any  # noqa: E402

# ONNX Runtime 1.32 records telemetry by default: an event store in
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and a session file $TMPDIR/.ses in every
# process that loads it. A measuring tool (and the device agent) must not write outside its
# own folders; set ORT_DISABLE_TELEMETRY=0 to allow it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Names are imported on first use (PEP 562), so ``pruna_search.core`` and the device agent
# (``pruna_search.agent``: onnxruntime, numpy and its web library only) load without torch.
_LAZY = {
    "data": ".data",
    "models": ".models",
    "analyze": ".analysis",
    "Config": ".api",
    "Result": ".api",
    "optimize": ".api",
    "analyze_model": ".api",
}
_CORE = (
    "CheckpointError",
    "CompressionError",
    "ConfigError",
    "DataError",
    "ExportError",
    "Finetune",
    "MeasurementError",
    "ModelError",
    "ModelInfo",
    "Plan",
    "PlanError",
    "Precision",
    "PrunaSearchError",
    "Target",
    "TargetError",
    "get_target",
)


def __getattr__(name: str) -> _Any:
    import importlib

    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if name in ("data", "models") else getattr(module, name)
    elif name in _CORE:
        value = getattr(importlib.import_module(".core", __name__), name)
    else:
        raise AttributeError(f"module 'pruna_search' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = sorted([*_LAZY, *_CORE, "__version__"])
