"""ONNX Runtime quantization (the only importer of onnxruntime.quantization).

int8: static QDQ, per-channel int8 weights, uint8 activations (the fast combination on CPU),
calibrated on real inputs, for exactly the layers the plan marks int8.
int4: weight-only MatMulNBits for Linear layers marked int4; a Linear exports as Gemm, which
MatMulNBits ignores, so those Gemm nodes are first rewritten as MatMul (+ Add for the bias).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from ..core import runtime
from ..core.errors import CompressionError
from ..export import module_to_node, save

logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
# A calibration batch holds at most this many input values (4 images at 3x224x224, 64 at
# 3x32x32): the calibrating session keeps every calibrated tensor of the batch alive, so
# EfficientNet-Lite0 at 224x224 peaked 1.6 GB higher with 16 images, 0.17 GB with 4.
CALIBRATION_VALUES = 1 << 20


class _Batches(CalibrationDataReader):
    """Feeds calibration inputs to the quantizer in batches (the batch axis is dynamic)."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        batch_size = runtime.batch_for(x.shape[1:], limit=64, budget=CALIBRATION_VALUES)
        self._items = iter(
            {input_name: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)}
            for i in range(0, len(x), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs warnings on the root logger
    stack.callback(root.setLevel, level)
    return stack


def gemm_to_matmul(model: onnx.ModelProto, nodes: Iterable[str]) -> onnx.ModelProto:
    """Rewrite the named Gemm nodes (y = x W^T + b) as MatMul(x, W^T) + Add(b), in place.

    The transposed weight is stored as ``<module>.weight_T`` so the node map still finds it.
    """
    wanted = set(nodes)
    inits = {init.name: init for init in model.graph.initializer}
    new_nodes = []
    for node in model.graph.node:
        if node.name not in wanted or node.op_type != "Gemm":
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
            or attrs.get("transA", 0)
        ):
            raise CompressionError(
                f"quantize: Gemm {node.name!r} has alpha/beta/transA set; cannot run it as int4"
            )
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = node.input[1] + "_T"
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(weight), w_name)
        )
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = node.output[0] + "_mm" if has_bias else node.output[0]
        new_nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], w_name], [mm_out], name=node.name + "_MatMul"
            )
        )
        if has_bias:
            new_nodes.append(
                helper.make_node(
                    "Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_Add"
                )
            )
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def _nodes_for(mapping: dict[str, str], layers: Sequence[str]) -> list[str]:
    missing = [layer for layer in layers if layer not in mapping]
    if missing:
        raise CompressionError(
            f"quantize: layer {missing[0]!r} has no Conv/Gemm/MatMul node in the exported model; "
            "it may have been removed or fused — drop it from the plan"
        )
    return [mapping[layer] for layer in layers]


@dataclass(frozen=True, kw_only=True)
class Int8Settings:
    """How int8 layers are quantized.

    Attributes:
        per_channel: one weight scale per output channel (else one per tensor).
        calibration: how activation ranges are calibrated: ``minmax``, ``percentile`` or
            ``entropy``.
        reduce_range: 7-bit int8 weights (see ``measure.hardware.has_vnni``).
        calibration_cache: a JSON file of the activation ranges of the model quantized on its
            calibration inputs (ONNX Runtime's own cache): written by the first quantization,
            read by the next ones instead of calibrating again. The ranges cover every
            quantizable tensor whatever layers are chosen, so one cache serves every layer
            choice of one model and one set of calibration inputs (and only those).
    """

    per_channel: bool = True
    calibration: str = "minmax"
    reduce_range: bool = False
    calibration_cache: Path | None = None


CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


def quantize_int8(
    src: Path,
    dst: Path,
    layers: Sequence[str],
    calib: np.ndarray,
    settings: Int8Settings = Int8Settings(),
) -> Path:
    """Static QDQ int8 for ``layers``; every other Conv/Gemm/MatMul stays fp32."""
    if len(calib) == 0:
        raise CompressionError("quantize: the calibration split is empty; give data a calib split")
    model = onnx.load(str(src))
    mapping = module_to_node(model)
    chosen = set(_nodes_for(mapping, layers))
    excluded = [n for n in mapping.values() if n not in chosen]
    input_name = model.graph.input[0].name
    method = settings.calibration
    if method not in CALIBRATION_METHODS:
        raise CompressionError(
            f"quantize.calibration: {method!r} is unknown; use one of "
            f"{sorted(CALIBRATION_METHODS)}"
        )
    with tempfile.TemporaryDirectory(prefix="pruna_q8_") as tmp, _quiet():
        out = Path(tmp) / "q8.onnx"
        quantize_static(
            str(src),
            str(out),
            _Batches(input_name, calib),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            nodes_to_exclude=excluded,
            calibrate_method=CALIBRATION_METHODS[method],
            calibration_cache_path=settings.calibration_cache,
        )
        save(onnx.load(str(out)), dst)
    return dst


def quantize_int4(src: Path, dst: Path, layers: Sequence[str], *, block_size: int = 32) -> Path:
    """Weight-only 4-bit (MatMulNBits) for exactly the Linear ``layers``."""
    model = onnx.load(str(src))
    mapping = module_to_node(model)
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm"}
    targets = _nodes_for(mapping, layers)
    model = gemm_to_matmul(model, [n for n in targets if n in gemms])
    mapping = module_to_node(model)
    chosen = set(_nodes_for(mapping, layers))
    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in chosen]
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=exclude,
    )
    with _quiet():
        quantizer.process()
    save(quantizer.model.model, dst)
    return dst


def quantize(
    src: str | Path,
    dst: str | Path,
    *,
    int8: Sequence[str] = (),
    int4: Sequence[str] = (),
    calib: np.ndarray | None = None,
    settings: Int8Settings = Int8Settings(),
) -> Path:
    """Quantize the fp32 ONNX model ``src`` into ``dst`` per layer (a copy when none is chosen);
    the ``int8`` layers as ``settings`` say, calibrated on ``calib``."""
    src, dst = Path(src), Path(dst)
    overlap = set(int8) & set(int4)
    if overlap:
        raise CompressionError(
            f"quantize: layer {sorted(overlap)[0]!r} is marked both int8 and int4"
        )
    with tempfile.TemporaryDirectory(prefix="pruna_q_") as tmp:
        current = src
        if int8:
            if calib is None:
                raise CompressionError("quantize: int8 needs calibration inputs (data.calib)")
            current = quantize_int8(current, Path(tmp) / "int8.onnx", int8, calib, settings)
        if int4:
            current = quantize_int4(current, Path(tmp) / "int4.onnx", int4)
        if current == src:
            save(onnx.load(str(src)), dst)
        else:
            os.replace(current, dst)
    return dst
