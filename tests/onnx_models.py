"""Small real ONNX models that misbehave: one hangs ONNX Runtime, one fails at run time."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def hanging_model(path: Path) -> Path:
    """A real ONNX model that never finishes: a Loop with 2^62 iterations feeding the output."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, []),
        ],
    )
    const = helper.make_tensor
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["trips"], value=const("t", 7, [], [2**62])),
            helper.make_node("Constant", [], ["cond"], value=const("c", 9, [], [True])),
            helper.make_node("Constant", [], ["v"], value=const("v0", 1, [], [0.0])),
            helper.make_node("Loop", ["trips", "cond", "v"], ["v_final"], body=body),
            helper.make_node("Add", ["x", "v_final"], ["y"]),
        ],
        "hang",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 32, 32])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def failing_model(path: Path) -> Path:
    """Loads fine, fails at run time: reshapes 1024 values of a batch-1 input into [3, 7]."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["shape"], value=helper.make_tensor("s", 7, [2], [3, 7])
            ),
            helper.make_node("Reshape", ["x", "shape"], ["y"]),
        ],
        "fails",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 7])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
