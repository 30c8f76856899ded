"""Torch-vs-ONNX Runtime parity on real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core import runtime
from ..core.errors import ExportError


def max_abs_diff(model: nn.Module, onnx_path: str | Path, inputs: torch.Tensor) -> float:
    """Largest difference between torch and ORT outputs on ``inputs``, relative to the output
    scale when that exceeds 1 (float32 rounding grows with the magnitude of the logits)."""
    with torch.no_grad():
        expected = model.eval()(inputs).numpy()
    got = runtime.run(runtime.session(onnx_path, threads=runtime.all_threads()), inputs.numpy())
    scale = max(1.0, float(np.max(np.abs(expected))))
    return float(np.max(np.abs(expected - got))) / scale


def check_parity(
    model: nn.Module, onnx_path: str | Path, inputs: torch.Tensor, *, atol: float = 1e-4
) -> float:
    """Raise ExportError when ORT disagrees with torch by more than ``atol`` (absolute for
    logits within [-1, 1], relative to the largest logit beyond)."""
    diff = max_abs_diff(model, onnx_path, inputs)
    if not diff <= atol:
        raise ExportError(
            f"export: ONNX Runtime output differs from torch by {diff:.2e} (> {atol:.0e}) "
            f"for {Path(onnx_path).name}; report this model, or export with exporter='dynamo'"
        )
    return diff
