"""measure.profile: ORT's profiler per node, mapped to torch modules (real exports, real runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pruna_search.compress.quantize import quantize
from pruna_search.export import module_to_node
from pruna_search.export.onnx_export import export_onnx
from pruna_search.measure.profile import (
    OTHER,
    LayerProfile,
    ProfileSettings,
    group_ms,
    layer_profile,
)
from pruna_search.models import build

SHAPE = (1, 32, 32)
# A batch of 8: ORT's per-run overhead (session.run plus the profiler's own bookkeeping, about
# 0.1 ms) is then small beside the kernels, so their sum can be compared with the wall clock.
BATCH = 8


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return build("resnet20", num_classes=10, in_channels=1, input_shape=SHAPE)


@pytest.fixture(scope="module")
def models(resnet20: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ResNet-20 exported at fp32 and quantized to QDQ int8 in every Conv/Linear layer (as the
    evaluator's int8 probe quantizes a dense model, calibrated on random inputs here)."""
    folder = tmp_path_factory.mktemp("profile")
    rng = np.random.default_rng(0)
    fp32 = export_onnx(resnet20, torch.randn(2, *SHAPE), folder / "r20.fp32.onnx")
    layers = sorted(module_to_node(onnx.load(str(fp32))))
    calib = rng.standard_normal((32, *SHAPE)).astype(np.float32)
    int8 = quantize(fp32, folder / "r20.int8.onnx", int8=layers, calib=calib)
    return {"fp32": fp32, "int8": int8}


def _inputs(batch: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((batch, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_node_times_add_up_to_the_run(models: dict[str, Path], precision: str) -> None:
    profile = layer_profile(models[precision], _inputs(BATCH), ProfileSettings(runs=60))
    ratio = profile.kernel_ms / profile.run_ms
    print(
        f"{precision}: kernels {profile.kernel_ms:.3f} / run {profile.run_ms:.3f} ms = {ratio:.3f}"
    )
    assert 0.85 <= ratio <= 1.15
    assert sum(profile.module_ms.values()) == pytest.approx(profile.kernel_ms)
    assert all(node.median_us >= 0 and node.op_type for node in profile.nodes)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("level", ["disabled", "extended", "all"])
def test_every_conv_of_resnet20_is_profiled(
    resnet20: nn.Module, models: dict[str, Path], precision: str, level: str
) -> None:
    settings = ProfileSettings(graph_optimization=level, runs=5, warmup=2)
    profile = layer_profile(models[precision], _inputs(1), settings)
    convs = {name for name, m in resnet20.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 21
    assert convs <= set(profile.module_ms)
    assert "fc" in profile.module_ms
    assert all(profile.module_ms[conv] > 0 for conv in convs)
    # one compute node per module (a weight's DequantizeLinear, unfused when the graph is not
    # optimized, counts for its module too); activation Q/DQ are not a module's
    compute = [n.module for n in profile.nodes if "Conv" in n.op_type or "Gemm" in n.op_type]
    assert OTHER not in compute
    assert len(compute) == len(set(compute)) == 22
    for node in profile.nodes:
        if node.module != OTHER and "Conv" not in node.op_type and "Gemm" not in node.op_type:
            assert node.op_type == "DequantizeLinear"
            assert node.name.startswith(f"{node.module}.weight") or node.name.startswith(
                f"{node.module}.bias"
            )


def _slow_in_one_layer(bias: bool) -> nn.Sequential:
    """Cheap convs around one 7x7 conv to 64 channels (about 40x the MACs of the others).
    Without bias, ORT's NCHWc Convs (level ``all``) read no initializer with a module's name:
    they are mapped through the tensor their name is made of."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(8, 64, 7, padding=3, bias=bias),
        nn.ReLU(),
        nn.Conv2d(64, 8, 1, bias=bias),
    ).eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("level", ["extended", "all"])
def test_the_slow_layer_ranks_first(tmp_path: Path, level: str, bias: bool) -> None:
    model = _slow_in_one_layer(bias)
    path = export_onnx(model, torch.randn(2, *SHAPE), tmp_path / "slow.onnx")
    settings = ProfileSettings(graph_optimization=level, runs=10, warmup=2)
    profile = layer_profile(path, _inputs(1), settings)
    assert next(iter(profile.module_ms)) == "4"
    assert set(profile.module_ms) >= {"0", "2", "4", "6"}
    assert profile.module_ms["4"] > 5 * profile.module_ms["2"]


def test_group_ms_sums_members(models: dict[str, Path]) -> None:
    profile = layer_profile(models["fp32"], _inputs(1), ProfileSettings(runs=5, warmup=1))
    groups = {"stem": ["conv1"], "block": ["layer1.0.conv1", "layer1.0.conv2"], "gone": ["x"]}
    result = group_ms(profile, groups)
    ms = profile.module_ms
    assert result["stem"] == ms["conv1"]
    assert result["block"] == pytest.approx(ms["layer1.0.conv1"] + ms["layer1.0.conv2"])
    assert result["gone"] == 0.0


def test_settings_are_checked(models: dict[str, Path]) -> None:
    from pruna_search.core.errors import TargetError

    with pytest.raises(TargetError, match="graph_optimization"):
        layer_profile(models["fp32"], _inputs(1), ProfileSettings(graph_optimization="max"))
    with pytest.raises(TargetError, match="runs"):
        layer_profile(models["fp32"], _inputs(1), ProfileSettings(runs=0))


def test_profile_is_frozen(models: dict[str, Path]) -> None:
    profile = layer_profile(models["fp32"], _inputs(1), ProfileSettings(runs=2, warmup=0))
    assert isinstance(profile, LayerProfile)
    assert len(profile.nodes) > 0 and profile.run_ms > 0
    with pytest.raises(AttributeError):
        profile.run_ms = 0.0  # type: ignore[misc]
