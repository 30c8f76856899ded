"""Score plans for one model, data set and target: the engine plus the measurements.

The dense fp32 baseline is exported and its accuracy measured once; every plan is then applied,
exported, quantized and measured against it (accuracy in ORT on val, latency alternating with
the dense model in the same window). A quantized plan's window also times the dense model at
int8 (``target.int8_probe``), built once on first use: a probe of slow phases that slow int8
kernels only. ``optimize()`` scores one plan; the study scores many.

``latency_ms``, the latency the search ranks by, is ``dense_ms / speedup``: the candidate's
latency when the dense model runs at the *dense reference* ``dense_ms``. The speedup is a ratio
of two models timed in one window, so a window in which the whole host ran a few per cent
slower moves both p10s and leaves it alone; ``latency_ms_p10`` is the raw figure of the window.
``dense_ms`` is fixed once per study: the dense model's floor on the measuring machine when the
first window is timed (without a floor, the dense p10 of the first window the noise gate did
not flag), or the value the study stored (``run_trials`` reads and writes it), so every trial
of a study, resumed or run by many workers, is scaled by the same figure.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..analysis import analyze as analyze_model
from ..analysis import count_macs, count_params, example_input
from ..compress import Candidate, Int8Settings, apply_plan, quantize
from ..core import hardware, names
from ..core.plan import Plan
from ..core.precision import Precision
from ..core.target import Target, get_target
from ..export import export_onnx
from ..measure import (
    Floors,
    LatencyCache,
    LatencyComparison,
    LatencyRunner,
    Measurer,
    Metric,
    baseline_floor,
    compare_latency,
    onnx_score,
    runner_for,
)
from ..measure.metrics import TOP1
from ..train import CPU, Compute, Progress, proxy_accuracy, release_memory

# val examples the proxy accuracy of a fine-tune in progress is read on (the first ones)
PROXY_IMAGES = 256


@dataclass
class Evaluation:
    """One plan's candidate and its metrics (names as design decision 8)."""

    plan: Plan
    candidate: Candidate
    metrics: dict[str, float]
    latency: LatencyComparison | None
    seconds: dict[str, float] = field(default_factory=dict)


def dense_reference(floor: float | None, window: LatencyComparison) -> float | None:
    """The dense reference of ``latency_ms`` a study fixes at its first window: the dense
    ``floor``, or without one the window's dense p10 unless the noise gate flagged the window
    (None: not yet)."""
    if floor is not None:
        return floor
    return None if window.noisy else window.baseline.p10


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


@dataclass(frozen=True)
class EvaluatorOptions:
    """How an ``Evaluator`` exports, scores and times.

    Attributes:
        exporter: ``torchscript`` or ``dynamo``.
        measure_latency: time candidates against the dense model.
        latency_cache: reuse latency figures of identical files on identical settings; its
            file also keeps the floors (``target.floor_max_age_h``).
        runner: where latency is measured; None: the target's (a local process, or the device
            agent for ``runner: remote``, asked for its health here).
        metric: what "accuracy" is (``objective.metric``), measured on the val split batch by
            batch.
        compute: where fine-tuning, BatchNorm recalibration and the teacher's logits run.
    """

    exporter: str = "torchscript"
    measure_latency: bool = True
    latency_cache: LatencyCache | None = None
    runner: LatencyRunner | None = None
    metric: Metric = TOP1
    compute: Compute = CPU


class Evaluator:
    """Applies and measures plans for one trained model.

    Args:
        model: the trained dense model (never modified).
        data: a DataSplits (train for fine-tuning, calib for int8, val for accuracy).
        target: the target whose settings latency is measured with.
        workdir: where ONNX files are written.
        options: how it exports, scores and times (``EvaluatorOptions``).
    """

    def __init__(
        self,
        model: nn.Module,
        data,
        target: str | Target,
        *,
        workdir: str | Path,
        options: EvaluatorOptions = EvaluatorOptions(),
    ) -> None:
        self.model = model.eval()
        options.metric.check(data.num_classes)
        self.metric = options.metric
        self.compute = compute = options.compute
        # the dense model distilled from, where the fine-tune runs (a copy off the CPU)
        self.teacher = model if compute == CPU else copy.deepcopy(model).to(compute.device)
        self.data = data
        self.target = get_target(target)
        self.workdir = Path(workdir)
        self.exporter = options.exporter
        self.measure_latency = options.measure_latency
        self.latency_cache = options.latency_cache
        runner = options.runner
        self.runner = runner or (runner_for(self.target) if self.measure_latency else None)
        # the lowest dense (and int8 probe) figures every window of this evaluator is judged by
        self.floors = Floors.of(self.target, self.latency_cache)
        self.example = example_input(data)
        # the inputs latency windows time (the target's batch of the first val examples)
        self.timing_input = data.head(max(2, self.target.batch_size))
        self.x_calib, _ = data.calib_arrays()
        self.reduce_range = self._reduce_range()
        self.seconds: dict[str, float] = {}
        self.baseline = self._dense()
        self._int8_probe: Path | None = None
        # the dense reference of latency_ms (see the module's doc); set by the first window
        self.dense_ms: float | None = None
        self._proxy_sample: TensorDataset | None = None
        self._dense_proxy: float | None = None

    def _reduce_range(self) -> bool:
        """7-bit int8 weights: the target's setting, or decided by the CPU that runs the model
        (the device's, for a remote target): on when it lacks VNNI."""
        if self.target.reduce_range is not None:
            return bool(self.target.reduce_range)
        vnni = self.runner.fingerprint().get("vnni") if self.runner else None
        return not (hardware.has_vnni() if vnni is None else bool(int(vnni)))

    def _dense(self) -> dict[str, float]:
        """Analyze, export and score the dense model: its baseline metrics."""
        start = time.perf_counter()
        self.info = analyze_model(self.model, self.data)
        self.seconds["analyze"] = time.perf_counter() - start
        start = time.perf_counter()
        self.dense_path = export_onnx(
            self.model, self.example, self.workdir / "dense.fp32.onnx", exporter=self.exporter
        )
        self.calibration_cache.unlink(missing_ok=True)  # ranges of an earlier dense export
        self.seconds["export_dense"] = time.perf_counter() - start
        start = time.perf_counter()
        baseline = {
            names.ACCURACY: self.score(self.dense_path),
            names.SIZE_MB: _size_mb(self.dense_path),
            names.MACS: float(self.info.macs),
            names.PARAMS: float(self.info.params),
        }
        self.seconds["evaluate_dense"] = time.perf_counter() - start
        return baseline

    def score(self, onnx_path: Path) -> float:
        """The metric of an exported model on the val split, read batch by batch."""
        return onnx_score(onnx_path, self.data.batches("val"), self.metric)

    def steady_ms(self, latency: LatencyComparison) -> float:
        """``latency_ms``: ``dense_ms / speedup``, fixing ``dense_ms`` on first use: the dense
        floor, or without one the dense p10 of a window the noise gate did not flag (a flagged
        window's own dense p10 scales only its own figure, which is flagged anyway)."""
        if self.dense_ms is None:
            floor = baseline_floor(
                self.dense_path, self.timing_input, self.target, self.floors, self.runner
            )
            self.dense_ms = dense_reference(floor, latency)
            if self.dense_ms is None:
                return latency.candidate.p10  # its own dense p10 over its speedup
        return self.dense_ms / latency.speedup

    def measure(self, onnx_path: Path, plan: Plan) -> LatencyComparison:
        """Time ``onnx_path`` (the model ``plan`` built) against dense, in one window; a
        quantized plan's window also times the int8 probe."""
        probe = None if plan.is_fp32 or not self.target.int8_probe else self.int8_probe()
        return compare_latency(
            onnx_path,
            self.dense_path,
            self.timing_input,
            self.target,
            reference=probe,
            measurer=Measurer(self.runner, self.latency_cache, self.floors),
        )

    def latency_metrics(self, latency: LatencyComparison) -> dict[str, float]:
        """The latency metrics of one window (names as design decision 8, and latency_ms)."""
        return {
            names.LATENCY: self.steady_ms(latency),
            names.LATENCY_P10: latency.candidate.p10,
            names.LATENCY_P50: latency.candidate.p50,
            names.LATENCY_P90: latency.candidate.p90,
            names.SPEEDUP: latency.speedup,
        }

    def untuned(self, plan: Plan, name: str) -> Path:
        """The model ``plan`` (validated first) builds without its fine-tune: the same layers,
        channels and precisions, so the same latency, in about a second instead of the
        fine-tune."""
        plan.validate(self.info, self.target)
        finetune = dataclasses.replace(plan.finetune, steps=0, bn_recalibration=0)
        return self._build(plan.with_finetune(finetune), name).onnx_path

    def score_without_finetune(self, plan: Plan, *, fold_bn: bool = True) -> float:
        """The metric of the model ``plan`` builds with BatchNorm recalibrated but no
        fine-tune: what the fine-tune starts from (``fold_bn``: see ``recalibrated``)."""
        return self.score(self.recalibrated(plan, "recalibrated", fold_bn=fold_bn))

    def recalibrated(self, plan: Plan, name: str, *, fold_bn: bool = True) -> Path:
        """The model ``plan`` builds with BatchNorm recalibrated but no fine-tune (validated
        first); ``fold_bn=False`` exports BatchNorm unfolded, for a model only scored (ONNX
        Runtime folds it at load: the same figures, without the fold's cost)."""
        plan.validate(self.info, self.target)
        plan = plan.with_finetune(dataclasses.replace(plan.finetune, steps=0))
        return self._build(plan, name, fold_bn=fold_bn).onnx_path

    def at_precisions(self, plan: Plan, name: str) -> Path:
        """The dense model with ``plan``'s precisions, for a plan that prunes nothing and is
        not fine-tuned (validated first): its fp32 export is the dense one, so only the
        quantization runs (no copy, export or parity check), on activation ranges calibrated
        once for the dense model."""
        plan.validate(self.info, self.target)
        if not plan.is_dense or plan.finetune.steps > 0:
            raise ValueError("at_precisions: the plan prunes or fine-tunes; use build()")
        out = self.workdir / f"{name}.onnx"
        return quantize(
            self.dense_path,
            out,
            int8=plan.layers_at(Precision.INT8),
            int4=plan.layers_at(Precision.INT4),
            calib=self.x_calib,
            settings=Int8Settings(
                reduce_range=self.reduce_range, calibration_cache=self.calibration_cache
            ),
        )

    @property
    def calibration_cache(self) -> Path:
        """The dense export's activation ranges on ``x_calib`` (``at_precisions``)."""
        return self.workdir / "dense.calibration.json"

    def keep(self, onnx_path: Path, name: str) -> Path:
        """A copy of ``onnx_path`` in the work folder that later evaluations do not overwrite
        (to measure it again later); removed with the folder."""
        folder = self.workdir / "kept"
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(onnx_path, folder / f"{name}.onnx"))

    def int8_probe(self) -> Path | None:
        """The dense model quantized as ``Plan.uniform`` at 8 bits (no fine-tune), exported on
        first use; None when the target runs no layer of this model at int8."""
        if self._int8_probe is None:
            plan = Plan.uniform(self.info, target=self.target, quantization_bits=8)
            if plan.is_fp32:
                return None
            start = time.perf_counter()
            self._int8_probe = self._build(plan, "dense.int8").onnx_path
            self.seconds["build_int8_probe"] = time.perf_counter() - start
        return self._int8_probe

    def proxy_sample(self) -> TensorDataset:
        """The first ``PROXY_IMAGES`` val examples, read once: what ``proxy_accuracy`` reads."""
        if self._proxy_sample is None:
            examples = [self.data.val[i] for i in range(min(PROXY_IMAGES, self.data.size("val")))]
            inputs = np.stack([np.asarray(x, dtype=np.float32) for x, _ in examples])
            labels = torch.as_tensor([int(y) for _, y in examples], dtype=torch.int64)
            self._proxy_sample = TensorDataset(torch.from_numpy(inputs), labels)
        return self._proxy_sample

    def proxy_accuracy(self, model: nn.Module) -> float:
        """Top-1 of a torch model (a fine-tune in progress, where it runs) on ``proxy_sample``:
        a cheap figure that ranks trials against each other at the same fine-tune step; a
        trial's value stays its exported model's metric on the whole val split."""
        return proxy_accuracy(model, self.proxy_sample())

    @property
    def dense_proxy(self) -> float:
        """``proxy_accuracy`` of the dense model, measured once."""
        if self._dense_proxy is None:
            self._dense_proxy = self.proxy_accuracy(self.model)
        return self._dense_proxy

    def _build(
        self,
        plan: Plan,
        name: str,
        on_progress: Progress | None = None,
        *,
        fold_bn: bool = True,
    ) -> Candidate:
        return apply_plan(
            self.model,
            plan,
            train_set=self.data.train,
            calib=self.x_calib,
            example=self.example,
            workdir=self.workdir,
            exporter=self.exporter,
            reduce_range=self.reduce_range,
            name=name,
            teacher=self.teacher,
            compute=self.compute,
            on_progress=on_progress,
            fold_bn=fold_bn,
        )

    def build(self, plan: Plan, name: str, on_progress: Progress | None = None) -> Candidate:
        """Apply ``plan`` (validated first): prune, fine-tune, export, quantize."""
        plan.validate(self.info, self.target)
        return self._build(plan, name, on_progress)

    def evaluate(
        self,
        plan: Plan,
        *,
        name: str = "candidate",
        on_progress: Progress | None = None,
        built: Candidate | None = None,
    ) -> Evaluation:
        """Apply ``plan`` (validated first) and measure the result; ``built``: the candidate
        ``plan`` built already (``build``), measured as is. ``on_progress(step, model)`` is
        told the fine-tune's progress (see ``compress.finetune``); the ``StoppedEarly`` it may
        raise stops the evaluation and passes through."""
        candidate = built if built is not None else self.build(plan, name, on_progress)
        seconds = dict(candidate.seconds)
        start = time.perf_counter()
        accuracy = self.score(candidate.onnx_path)
        seconds["evaluate"] = time.perf_counter() - start
        size = _size_mb(candidate.onnx_path)
        metrics = {
            names.ACCURACY: accuracy,
            names.ACCURACY_DROP: self.baseline[names.ACCURACY] - accuracy,
            names.SIZE_MB: size,
            names.COMPRESSION: self.baseline[names.SIZE_MB] / size,
            names.MACS: float(count_macs(candidate.model, self.example)),
            names.PARAMS: float(count_params(candidate.model)),
        }
        latency = None
        if self.measure_latency:
            start = time.perf_counter()
            latency = self.measure(candidate.onnx_path, plan)
            seconds["measure"] = time.perf_counter() - start
            metrics.update(self.latency_metrics(latency))
        release_memory()  # the sessions and calibration buffers of this plan
        return Evaluation(
            plan=plan, candidate=candidate, metrics=metrics, latency=latency, seconds=seconds
        )
