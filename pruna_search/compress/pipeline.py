"""Apply a Plan to a model: prune -> recover -> export -> quantize, timing every stage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.errors import CompressionError, PrunaSearchError
from ..core.loops import CPU, Compute
from ..core.plan import Plan
from ..core.precision import Precision
from ..export import check_parity, export_onnx
from .finetune import finetune
from .prune import PruneReport, prune
from .quantize import quantize


@dataclass
class Candidate:
    """The result of applying a Plan: the shippable ONNX file and how it was made."""

    onnx_path: Path
    fp32_path: Path
    model: nn.Module
    prune_report: PruneReport
    seconds: dict[str, float] = field(default_factory=dict)
    parity: float = 0.0


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def apply_plan(
    model: nn.Module,
    plan: Plan,
    *,
    train_set,
    calib: np.ndarray,
    example: torch.Tensor,
    workdir: str | Path,
    exporter: str = "torchscript",
    importance: str = "magnitude",
    parity_atol: float = 1e-4,
    reduce_range: bool = False,
    name: str = "candidate",
    teacher: nn.Module | None = None,
    compute: Compute = CPU,
) -> Candidate:
    """Build the candidate for ``plan``; ``model`` itself is never modified.

    Args:
        model: the trained dense model.
        plan: a Plan already validated against the model's analysis and the target.
        train_set: fine-tuning data (a torch Dataset).
        calib: calibration inputs for int8 (float32, as fed to the model).
        example: a real input batch (>= 2) used for tracing, export and parity.
        workdir: folder for the ONNX files (``<name>.fp32.onnx`` and ``<name>.onnx``).
        reduce_range: 7-bit int8 weights (see ``measure.hardware.has_vnni``).
        teacher: the model distilled from, on ``compute.device`` (default: ``model``).
        compute: where the fine-tune runs; everything else runs on the CPU.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    try:
        with _stage(seconds, "prune"):
            pruned, report = prune(
                model, example, plan.prune, round_to=plan.multiple_of, importance=importance
            )
        with _stage(seconds, "finetune"):
            # Recovery is for pruning loss: a plan that prunes nothing keeps the trained weights.
            if not plan.is_dense:
                finetune(
                    pruned,
                    train_set,
                    plan.finetune,
                    teacher=model if teacher is None else teacher,
                    compute=compute,
                )
        with _stage(seconds, "export"):
            fp32_path = export_onnx(
                pruned, example, workdir / f"{name}.fp32.onnx", exporter=exporter
            )
            parity = check_parity(pruned, fp32_path, example, atol=parity_atol)
        with _stage(seconds, "quantize"):
            out = workdir / f"{name}.onnx"
            quantize(
                fp32_path,
                out,
                int8=plan.layers_at(Precision.INT8),
                int4=plan.layers_at(Precision.INT4),
                calib=calib,
                reduce_range=reduce_range,
            )
    except PrunaSearchError:
        raise
    except Exception as exc:
        raise CompressionError(
            f"compress: applying the plan failed ({type(exc).__name__}: {exc})"
        ) from exc
    return Candidate(
        onnx_path=out,
        fp32_path=fp32_path,
        model=pruned,
        prune_report=report,
        seconds=seconds,
        parity=parity,
    )
