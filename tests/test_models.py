"""Tests of pruna_search.models: architectures, build(), checkpoints and cached baselines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pruna_search import models
from pruna_search.core.errors import CheckpointError, ModelError
from pruna_search.models import pretrained as baselines
from pruna_search.models.checkpoint import load_checkpoint
from pruna_search.train import loops

BUILTINS = ("cnn", "mlp", "mobilenetv2", "resnet20", "resnet56")
CONV_COUNTS = {"resnet20": 21, "resnet56": 57, "mobilenetv2": 25, "cnn": 4, "mlp": 0}
TINY = "fixtures_models:TinyNet"


@pytest.fixture
def user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tests/fixtures_models.py importable whatever pytest's import mode."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture
def one_thread():
    """Train with one intra-op thread for this test only: on a busy 2-core machine two threads
    make training about 4x slower (OpenMP threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize(("shape", "classes"), [((1, 32, 32), 10), ((3, 32, 32), 7)])
def test_builtin_output_shape_and_classifier(name: str, shape: tuple, classes: int) -> None:
    model = models.build(name, num_classes=classes, input_shape=shape)
    assert not model.training
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert isinstance(model.fc, nn.Linear)
    assert model.fc.out_features == classes
    assert dict(model.named_modules())["fc"] is model.fc


def test_names_lists_builtins() -> None:
    assert set(BUILTINS) <= set(models.names())


@pytest.mark.parametrize("name", BUILTINS)
def test_half_width_has_fewer_params(name: str) -> None:
    full = models.build(name, num_classes=10, input_shape=(1, 32, 32))
    half = models.build(name, num_classes=10, input_shape=(1, 32, 32), width=0.5)
    assert _params(half) < 0.5 * _params(full)


@pytest.mark.parametrize("name", BUILTINS)
def test_conv_count(name: str) -> None:
    model = models.build(name, num_classes=10, input_shape=(1, 32, 32))
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == CONV_COUNTS[name]


def test_resnet_layout_and_widths() -> None:
    model = models.build("resnet20", num_classes=10, in_channels=3)
    named = dict(model.named_modules())
    assert isinstance(named["layer1.0.conv1"], nn.Conv2d)
    assert isinstance(named["layer1.0.shortcut"], nn.Identity)
    assert isinstance(named["layer2.0.shortcut.0"], nn.Conv2d)
    assert named["layer2.0.shortcut.0"].stride == (2, 2)
    assert isinstance(named["layer3.0.shortcut.1"], nn.BatchNorm2d)
    assert [named[f"layer{i}.0.conv2"].out_channels for i in (1, 2, 3)] == [16, 32, 64]
    narrow = models.build("resnet20", num_classes=10, in_channels=3, width=0.75)
    assert [narrow.get_submodule(f"layer{i}.0.conv2").out_channels for i in (1, 2, 3)] == [
        16,
        24,
        48,
    ]


def test_mobilenet_has_depthwise_and_residuals() -> None:
    model = models.build("mobilenetv2", num_classes=10, in_channels=1)
    depthwise = [
        m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1
    ]
    assert len(depthwise) == 8
    assert sum(block.use_residual for block in model.blocks) == 3


def test_build_is_deterministic_and_keeps_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = models.build("resnet20", num_classes=10, in_channels=1)
    after = torch.rand(3)
    b = models.build("resnet20", num_classes=10, in_channels=1)
    assert _same_weights(a, b)
    assert torch.equal(after, expected)


def test_build_takes_shapes_from_data(digits) -> None:
    model = models.build("resnet20", data=digits)
    assert model.conv1.in_channels == 1
    assert model.fc.out_features == 10
    mlp = models.build("mlp", data=digits)
    assert mlp.fc1.in_features == 32 * 32


def test_register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_FACTORIES", dict(models._FACTORIES))

    def factory(num_classes, in_channels, input_shape, width):
        return nn.Sequential(nn.Flatten(1), nn.Linear(int(np.prod(input_shape)), num_classes))

    models.register("linear", factory)
    assert "linear" in models.names()
    model = models.build("linear", num_classes=3, input_shape=(1, 4, 4))
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)


# ----------------------------------------------------------------------------- build errors
def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ModelError, match="did you mean 'resnet20'"):
        models.build("resnet_20", num_classes=10)


def test_num_classes_disagreeing_with_data(digits) -> None:
    with pytest.raises(ModelError) as info:
        models.build("cnn", data=digits, num_classes=5)
    message = str(info.value)
    assert "num_classes: 5" in message and "10" in message and "'digits'" in message
    assert "drop num_classes or set it to 10" in message


def test_in_channels_and_shape_disagreeing_with_data(digits) -> None:
    with pytest.raises(ModelError, match="in_channels: 3 .* set it to 1"):
        models.build("cnn", data=digits, in_channels=3)
    with pytest.raises(ModelError, match=r"input_shape: \(3, 32, 32\)"):
        models.build("cnn", data=digits, input_shape=(3, 32, 32))
    agreeing = models.build("cnn", data=digits, num_classes=10, in_channels=1)
    assert agreeing.fc.out_features == 10


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), "wide"])
def test_bad_width(width) -> None:
    with pytest.raises(ModelError, match="model.width"):
        models.build("cnn", num_classes=10, width=width)


def test_pretrained_without_data() -> None:
    with pytest.raises(ModelError, match="pass data"):
        models.build("cnn", num_classes=10, pretrained=True)


def test_builtin_needs_num_classes_and_mlp_needs_shape() -> None:
    with pytest.raises(ModelError, match="num_classes is unknown"):
        models.build("cnn")
    with pytest.raises(ModelError, match="input_shape"):
        models.build("mlp", num_classes=10)


def test_builtin_rejects_model_kwargs() -> None:
    with pytest.raises(ModelError, match="model_kwargs"):
        models.build("cnn", num_classes=10, model_kwargs={"depth": 3})


# ----------------------------------------------------------------------------- user models
@pytest.mark.usefixtures("user_models")
@pytest.mark.parametrize("layout", ["plain", "state_dict", "model_state_dict", "dataparallel"])
def test_user_model_checkpoint_round_trip(tmp_path: Path, layout: str) -> None:
    source = models.build(TINY, model_kwargs={"num_classes": 4, "hidden": 16})
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
        source.bn.running_mean.add_(0.5)
    state = source.state_dict()
    saved = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model_state_dict": {"model_state_dict": state, "optimizer": {"lr": 0.1}},
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
    }[layout]
    path = tmp_path / "weights.pt"
    torch.save(saved, path)
    loaded = models.build(
        "fixtures_models.TinyNet", model_kwargs={"num_classes": 4, "hidden": 16}, checkpoint=path
    )
    assert not loaded.training
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), source.eval()(x))
    assert _same_weights(loaded, source)


@pytest.mark.usefixtures("user_models")
def test_strip_prefix(tmp_path: Path) -> None:
    source = models.build(TINY)
    path = tmp_path / "lightning.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="strip_prefix='model.'"):
        models.build(TINY, checkpoint=path)
    loaded = models.build(TINY, checkpoint=path, strip_prefix="model.")
    assert _same_weights(loaded, source)


@pytest.mark.usefixtures("user_models")
def test_checkpoint_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = models.build(TINY).state_dict()
    del state["fc.weight"]
    state["head.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        models.build(TINY, checkpoint=str(path))
    message = str(info.value)
    assert "1 missing keys (fc.weight)" in message
    assert "1 unexpected keys (head.weight)" in message
    assert "check model.name and model.model_kwargs (or width), or set strip_prefix" in message
    assert "\n" not in message


@pytest.mark.usefixtures("user_models")
def test_checkpoint_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(models.build(TINY, model_kwargs={"hidden": 16}).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"conv\.weight has shape \(16, 1, 3, 3\).*\(8, 1"):
        models.build(TINY, checkpoint=path)


def test_checkpoint_missing_file(tmp_path: Path) -> None:
    model = models.build("cnn", num_classes=10, in_channels=1)
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="does not exist; check the path") as info:
        load_checkpoint(model, path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["random", "empty", "pickled_model", "not_a_state_dict"])
def test_checkpoint_unreadable(tmp_path: Path, content: str) -> None:
    model = models.build("cnn", num_classes=10, in_channels=1)
    path = tmp_path / "bad.pt"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "pickled_model":
        torch.save(model, path)
    else:
        torch.save({"epoch": 3, "notes": [1, 2]}, path)
    with pytest.raises(CheckpointError, match=r"torch\.save\(model\.state_dict\(\), path\)"):
        load_checkpoint(model, path)


@pytest.mark.usefixtures("user_models")
def test_bad_class_paths(digits) -> None:
    with pytest.raises(ModelError, match="'no_such_pkg.models:Net'.*package.module:ClassName"):
        models.build("no_such_pkg.models:Net")
    with pytest.raises(ModelError, match="did you mean 'TinyNet'"):
        models.build("fixtures_models:TinyNte")
    with pytest.raises(ModelError, match="not a class"):
        models.build("fixtures_models:NOT_A_CLASS")
    with pytest.raises(ModelError, match="model_kwargs"):
        models.build(TINY, model_kwargs={"depth": 3})
    with pytest.raises(ModelError, match="checkpoint="):
        models.build(TINY, pretrained=True, data=digits)


@pytest.mark.usefixtures("user_models")
def test_user_model_checked_against_data(digits) -> None:
    with pytest.raises(ModelError, match="gives 4 outputs but the data has 10 classes"):
        models.build(TINY, data=digits, model_kwargs={"num_classes": 4})
    with pytest.raises(ModelError, match="fails on inputs of shape"):
        models.build(TINY, data=digits, model_kwargs={"in_channels": 3})
    assert models.build(TINY, data=digits).fc.out_features == 10


# ----------------------------------------------------------------------------- baselines
def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRUNA_SEARCH_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
    monkeypatch.delenv("PRUNA_SEARCH_CACHE")
    assert models.cache_dir() == Path.home() / ".cache" / "pruna_search"


@pytest.mark.usefixtures("one_thread")
def test_pretrained_trains_once_then_loads(
    digits, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("PRUNA_SEARCH_CACHE", str(tmp_path))
    monkeypatch.setenv("PRUNA_SEARCH_PROGRESS", "0")
    first = models.build("cnn", data=digits, pretrained=True, train_epochs=2)
    files = list((tmp_path / "baselines").iterdir())
    assert [f.suffix for f in files] == [".pt"]
    assert "val accuracy" in capsys.readouterr().out
    assert loops.accuracy(first, digits.val) >= 0.8
    mtime = os.stat(files[0]).st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached baseline should have been loaded")

    monkeypatch.setattr(loops, "train", no_training)
    second = models.build("cnn", data=digits, pretrained=True, train_epochs=2)
    assert _same_weights(first, second)
    assert not second.training
    assert os.stat(files[0]).st_mtime_ns == mtime
    assert list((tmp_path / "baselines").iterdir()) == files
    assert capsys.readouterr().out == ""


def test_pretrained_corrupt_cache_warns_and_retrains(
    digits, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PRUNA_SEARCH_CACHE", str(tmp_path))
    monkeypatch.setenv("PRUNA_SEARCH_PROGRESS", "0")
    path = baselines.checkpoint_path("mlp", digits, 1.0, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half-written")
    with pytest.warns(RuntimeWarning, match="retraining"):
        model = models.build("mlp", data=digits, pretrained=True, train_epochs=1)
    reloaded = load_checkpoint(models.build("mlp", data=digits), path)
    assert _same_weights(model, reloaded)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_default_epochs_scale_with_data() -> None:
    small = models.default_epochs("resnet20", 1437)
    assert small >= 5
    assert models.default_epochs("resnet20", 60000) == 1
    assert models.default_epochs("my_model", 100) >= 1


# ----------------------------------------------------------------------------- compatibility
@pytest.mark.parametrize("name", BUILTINS)
def test_torch_pruning_traces_and_prunes(name: str) -> None:
    import torch_pruning as tp

    model = models.build(name, num_classes=10, input_shape=(1, 32, 32))
    example = torch.randn(2, 1, 32, 32)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    groups = list(graph.get_all_groups(ignored_layers=[model.fc]))
    assert groups
    before = _params(model)
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[model.fc],
        round_to=8,
    )
    pruner.step()
    assert _params(model) < before
    assert model.fc.out_features == 10
    with torch.no_grad():
        assert model(example).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", BUILTINS)
def test_onnx_export_matches_torch(name: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    model = models.build(name, num_classes=10, input_shape=(1, 32, 32))
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 1, 32, 32),),
        str(path),
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 32, 32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
