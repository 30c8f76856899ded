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

__version__ = "0.1.0"

from . import data, models  # noqa: E402
from .analysis import analyze  # noqa: E402
from .api import Config, Result, optimize  # noqa: E402
from .core import (  # noqa: E402
    CheckpointError,
    CompressionError,
    ConfigError,
    DataError,
    ExportError,
    Finetune,
    MeasurementError,
    ModelError,
    ModelInfo,
    Plan,
    PlanError,
    Precision,
    PrunaSearchError,
    Target,
    TargetError,
    get_target,
)

__all__ = [
    "CheckpointError",
    "CompressionError",
    "Config",
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
    "Result",
    "Target",
    "TargetError",
    "__version__",
    "analyze",
    "data",
    "get_target",
    "models",
    "optimize",
]
