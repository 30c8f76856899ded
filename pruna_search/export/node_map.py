"""The exact map between module names and the ONNX nodes computing them.

A Conv/Gemm/MatMul node's weight input is the initializer named ``<module>.weight`` (the
exporter keeps parameter names; BatchNorm was folded in torch so no rename happens). After
quantization the weight reaches the node through a DequantizeLinear whose input is
``<module>.weight_quantized``; MatMulNBits keeps ``<module>.weight`` in its name too.
"""

from __future__ import annotations

import onnx

from ..core.errors import ExportError

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
QUANT_SUFFIXES = ("_quantized", "_Q4", "_Q8", "_T")


def _module_of_weight(name: str) -> str | None:
    for suffix in QUANT_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".weight"):
        return name[: -len(".weight")]
    return None


def node_to_module(model: onnx.ModelProto, ops: tuple[str, ...] = WEIGHT_OPS) -> dict[str, str]:
    """ONNX node name -> module name, for every node of ``ops`` whose weight is a module's.

    Raises:
        ExportError: when two nodes claim the same module (the map would not be exact).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    result: dict[str, str] = {}
    owners: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in ops or len(node.input) < 2:
            continue
        weight = node.input[1]
        producer = producers.get(weight)
        if producer is not None and producer.op_type in ("DequantizeLinear", "Transpose"):
            weight = producer.input[0]
        module = _module_of_weight(weight)
        if module is None:
            continue
        if module in owners:
            raise ExportError(
                f"export: module {module!r} maps to two ONNX nodes ({owners[module]!r}, "
                f"{node.name!r}); the node map must be exact"
            )
        owners[module] = node.name
        result[node.name] = module
    return result


def module_to_node(model: onnx.ModelProto, ops: tuple[str, ...] = WEIGHT_OPS) -> dict[str, str]:
    """Module name -> ONNX node name (the inverse of ``node_to_module``)."""
    return {module: node for node, module in node_to_module(model, ops).items()}
