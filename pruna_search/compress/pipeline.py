"""Apply a Plan to a model: prune -> recover -> export -> quantize, timing every stage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import CompressionError, PrunaSearchError, StoppedEarly
from ..core.imports import keyword_settings
from ..core.plan import Plan
from ..core.precision import Precision
from ..export import check_parity, export_onnx
from ..train import CPU, Compute, Progress
from .finetune import finetune
from .prune import PruneReport, prune
from .quantize import Int8Settings, quantize


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


@dataclass(frozen=True, kw_only=True)
class ApplyOptions:
    """The options of ``apply_plan``.

    Attributes:
        train_set: fine-tuning data (a torch Dataset).
        calib: calibration inputs for int8 (float32, as fed to the model).
        example: a real input batch (>= 2) used for tracing, export and parity.
        workdir: folder for the ONNX files (``<name>.fp32.onnx`` and ``<name>.onnx``).
        exporter: the ONNX exporter (see ``export.export_onnx``).
        importance: how channels are ranked for pruning (see ``prune``).
        parity_atol: the largest difference allowed between torch and the fp32 ONNX file.
        reduce_range: 7-bit int8 weights (see ``measure.hardware.has_vnni``).
        name: the ONNX files' stem.
        teacher: the model distilled from, on ``compute.device`` (default: the model).
        compute: where the fine-tune runs; everything else runs on the CPU.
        on_progress: told the fine-tune's progress (see ``finetune``); its ``StoppedEarly``
            stops the build and passes through.
        fold_bn: fold BatchNorm into convolutions before export (ONNX Runtime also folds it at
            load unless graph optimization is off; False saves the fold, about 80 ms on a
            ResNet-20, for a model that is scored and never shipped or timed).
    """

    train_set: Any
    calib: np.ndarray
    example: torch.Tensor
    workdir: str | Path
    exporter: str = "torchscript"
    importance: str = "magnitude"
    parity_atol: float = 1e-4
    reduce_range: bool = False
    name: str = "candidate"
    teacher: nn.Module | None = None
    compute: Compute = CPU
    on_progress: Progress | None = None
    fold_bn: bool = True


def apply_plan(model: nn.Module, plan: Plan, **options: Any) -> Candidate:
    """Build the candidate for ``plan``; ``model`` itself is never modified.

    Args:
        model: the trained dense model.
        plan: a Plan already validated against the model's analysis and the target.
        options: the fields of ``ApplyOptions`` (``train_set``, ``calib``, ``example`` and
            ``workdir`` required), as keywords.
    """
    opts = keyword_settings(ApplyOptions, options, caller="apply_plan")
    workdir = Path(opts.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _build(model, plan, opts, workdir)
    except (PrunaSearchError, StoppedEarly):
        raise
    except Exception as exc:
        raise CompressionError(
            f"compress: applying the plan failed ({type(exc).__name__}: {exc})"
        ) from exc


def _build(model: nn.Module, plan: Plan, opts: ApplyOptions, workdir: Path) -> Candidate:
    """Prune, recover, export and quantize, timing every stage."""
    seconds: dict[str, float] = {}
    with _stage(seconds, "prune"):
        pruned, report = prune(
            model, opts.example, plan.prune, round_to=plan.multiple_of, importance=opts.importance
        )
    with _stage(seconds, "finetune"):
        # Recovery is for pruning loss: a plan that prunes nothing keeps the trained weights.
        if not plan.is_dense:
            finetune(
                pruned,
                opts.train_set,
                plan.finetune,
                teacher=model if opts.teacher is None else opts.teacher,
                compute=opts.compute,
                on_progress=opts.on_progress,
            )
    with _stage(seconds, "export"):
        fp32_path = export_onnx(
            pruned,
            opts.example,
            workdir / f"{opts.name}.fp32.onnx",
            exporter=opts.exporter,
            fold_bn=opts.fold_bn,
        )
        parity = check_parity(pruned, fp32_path, opts.example, atol=opts.parity_atol)
    with _stage(seconds, "quantize"):
        out = workdir / f"{opts.name}.onnx"
        quantize(
            fp32_path,
            out,
            int8=plan.layers_at(Precision.INT8),
            int4=plan.layers_at(Precision.INT4),
            calib=opts.calib,
            settings=Int8Settings(reduce_range=opts.reduce_range),
        )
    return Candidate(
        onnx_path=out,
        fp32_path=fp32_path,
        model=pruned,
        prune_report=report,
        seconds=seconds,
        parity=parity,
    )
