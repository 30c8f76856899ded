"""ORT quantization per layer: int8 static QDQ for exactly the chosen layers, int4 MatMulNBits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruna_search import CompressionError, models
from pruna_search.compress import quantize
from pruna_search.core import runtime
from pruna_search.export import export_onnx, load, node_to_module


def exported(tmp_path, name: str, shape=(1, 32, 32)):
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, in_channels=shape[0], input_shape=shape).eval()
    x = torch.randn(64, *shape)
    return model, x, export_onnx(model, x[:2], tmp_path / f"{name}.fp32.onnx")


def weight_kinds(path) -> dict[str, str]:
    """module -> 'int8' when its weight arrives through DequantizeLinear, 'int4' for
    MatMulNBits, else 'fp32'."""
    graph = load(path)
    producers = {o: n for n in graph.graph.node for o in n.output}
    kinds = {}
    for node_name, module in node_to_module(
        graph, ("Conv", "Gemm", "MatMul", "MatMulNBits")
    ).items():
        node = next(n for n in graph.graph.node if n.name == node_name)
        if node.op_type == "MatMulNBits":
            kinds[module] = "int4"
        elif node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear":
            kinds[module] = "int8"
        else:
            kinds[module] = "fp32"
    return kinds


def test_int4_on_mlp_quantizes_exactly_the_chosen_layers(tmp_path):
    model, x, fp32 = exported(tmp_path, "mlp")
    out = quantize(fp32, tmp_path / "q4.onnx", int4=["fc1", "fc"])
    graph = load(out)
    nbits = [n for n in graph.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2
    assert weight_kinds(out) == {"fc1": "int4", "fc2": "fp32", "fc": "int4"}
    # 4-bit weights: close to fp32, not equal
    got = runtime.run(runtime.session(out), x.numpy())
    want = model(x).detach().numpy()
    assert 0 < np.abs(got - want).max() < 0.5


def test_int8_on_chosen_layers_only(tmp_path):
    _, x, fp32 = exported(tmp_path, "cnn")
    names = sorted(node_to_module(load(fp32)).values())
    chosen = names[1:-1]
    out = quantize(fp32, tmp_path / "q8.onnx", int8=chosen, calib=x.numpy())
    kinds = weight_kinds(out)
    assert {m for m, k in kinds.items() if k == "int8"} == set(chosen)
    assert {m for m, k in kinds.items() if k == "fp32"} == {names[0], names[-1]}


def test_int8_and_int4_together(tmp_path):
    _, x, fp32 = exported(tmp_path, "mlp")
    out = quantize(fp32, tmp_path / "mixed.onnx", int8=["fc2"], int4=["fc1"], calib=x.numpy())
    assert weight_kinds(out) == {"fc1": "int4", "fc2": "int8", "fc": "fp32"}


def test_nothing_chosen_is_a_plain_copy(tmp_path):
    _, _, fp32 = exported(tmp_path, "cnn")
    out = quantize(fp32, tmp_path / "same.onnx")
    assert set(weight_kinds(out).values()) == {"fp32"}


def test_errors(tmp_path):
    _, x, fp32 = exported(tmp_path, "mlp")
    with pytest.raises(CompressionError, match="calibration split is empty"):
        quantize(
            fp32, tmp_path / "a.onnx", int8=["fc1"], calib=np.zeros((0, 1, 32, 32), np.float32)
        )
    with pytest.raises(CompressionError, match="both int8 and int4"):
        quantize(fp32, tmp_path / "b.onnx", int8=["fc1"], int4=["fc1"], calib=x.numpy())
    with pytest.raises(CompressionError, match="'nope' has no Conv/Gemm/MatMul node"):
        quantize(fp32, tmp_path / "c.onnx", int4=["nope"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.fp32.onnx"]


def test_gemm_rewrite_keeps_outputs(tmp_path):
    from pruna_search.compress.quantize import gemm_to_matmul
    from pruna_search.export import save

    _, x, fp32 = exported(tmp_path, "mlp")
    graph = load(fp32)
    gemms = [n.name for n in graph.graph.node if n.op_type == "Gemm"]
    path = save(gemm_to_matmul(graph, gemms), tmp_path / "mm.onnx")
    assert not [n for n in load(path).graph.node if n.op_type == "Gemm"]
    a = runtime.run(runtime.session(fp32), x.numpy())
    b = runtime.run(runtime.session(path), x.numpy())
    assert np.abs(a - b).max() < 1e-5
