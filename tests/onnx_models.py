"""Small real ONNX models: a fast and a slow one to time against each other, one that hangs
ONNX Runtime and one that fails at run time."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper

from pruna_search import models
from pruna_search.export import export_onnx


def small_and_big(folder: Path) -> tuple[Path, Path]:
    """A quarter-width CNN and a ResNet-20 (random weights; 1x32x32 inputs), exported."""
    torch.manual_seed(0)
    small = models.build("cnn", num_classes=10, in_channels=1, input_shape=(1, 32, 32), width=0.25)
    big = models.build("resnet20", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    x = torch.randn(2, 1, 32, 32)
    return export_onnx(small, x, folder / "small.onnx"), export_onnx(big, x, folder / "big.onnx")


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
