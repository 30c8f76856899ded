"""ONNX export, parity with torch, and the exact module <-> node map for every built-in model."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from pruna_search import ExportError, models
from pruna_search.core import runtime
from pruna_search.export import check_parity, export_onnx, load, module_to_node, node_to_module

BUILTIN = ["resnet20", "resnet56", "mobilenetv2", "cnn", "mlp"]


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    # Non-trivial BatchNorm statistics so folding is really exercised.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", BUILTIN)
def test_fp32_export_matches_torch_and_maps_every_node(tmp_path, name):
    model = build(name)
    x = torch.randn(6, 1, 32, 32)
    path = export_onnx(model, x[:2], tmp_path / f"{name}.onnx")
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.onnx"]  # one file, no side data
    assert check_parity(model, path, x, atol=1e-4) <= 1e-4
    graph = load(path)
    onnx.checker.check_model(graph, full_check=True)
    weighted = [n for n in graph.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    node_map = node_to_module(graph)
    modules = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    # every node maps to exactly one module, every module to exactly one node
    assert {n.name for n in weighted} == set(node_map)
    assert sorted(node_map.values()) == sorted(modules)
    inverse = module_to_node(graph)
    assert all(node_map[inverse[m]] == m for m in modules)


def test_dynamic_batch_axis(tmp_path):
    model = build("cnn")
    path = export_onnx(model, torch.randn(2, 1, 32, 32), tmp_path / "cnn.onnx")
    sess = runtime.session(path)
    for batch in (1, 5):
        assert runtime.run(sess, torch.randn(batch, 1, 32, 32).numpy()).shape == (batch, 10)


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_map(tmp_path):
    model = build("resnet20")
    x = torch.randn(4, 1, 32, 32)
    fast = node_to_module(load(export_onnx(model, x[:2], tmp_path / "ts.onnx")))
    path = export_onnx(model, x[:2], tmp_path / "dy.onnx", exporter="dynamo")
    assert check_parity(model, path, x) <= 1e-4
    assert sorted(node_to_module(load(path)).values()) == sorted(fast.values())


class Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)  # no ONNX symbolic for this op


def test_export_failure_leaves_nothing_and_prints_nothing(tmp_path, capfd):
    with pytest.raises(ExportError, match="could not be exported") as failed:
        export_onnx(Unexportable(), torch.randn(2, 3), tmp_path / "bad.onnx", fold_bn=False)
    assert list(tmp_path.iterdir()) == []
    # one line naming what to change; the TorchScript graph the exporter's C++ side writes to
    # the terminal at an exception (tens of lines) is not shown
    assert "\n" not in str(failed.value) and "exporter='dynamo'" in str(failed.value)
    out, err = capfd.readouterr()
    assert "graph" not in out + err


def test_unknown_exporter(tmp_path):
    with pytest.raises(ExportError, match="export.exporter"):
        export_onnx(build("cnn"), torch.randn(2, 1, 32, 32), tmp_path / "m.onnx", exporter="tvm")
