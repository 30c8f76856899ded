"""A user's own model: factories with keyword arguments, old and wrapped checkpoints, forwards
that return more than logits, and the one-shot API on such a model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import pruna_search as ps
from pruna_search import models
from pruna_search.core import names
from pruna_search.core.errors import CheckpointError, ModelError
from pruna_search.export import export_onnx
from pruna_search.measure import onnx_accuracy


@pytest.fixture
def user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


pytestmark = pytest.mark.usefixtures("user_models")
FACTORY = "fixtures_models:tiny_factory"
SHAPE = (3, 64, 64)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.add_(0.25)
    return model


def test_factory_function_with_kwargs_at_64x64() -> None:
    model = models.build(
        FACTORY,
        model_kwargs={"num_classes": 5, "in_channels": 3, "width": 16},
        input_shape=SHAPE,
        num_classes=5,
    )
    assert model.conv.out_channels == 16 and model.fc.out_features == 5
    assert model(torch.zeros(2, *SHAPE)).shape == (2, 5)


def test_old_dataparallel_checkpoint_without_bn_counters(tmp_path: Path, caplog) -> None:
    """A checkpoint as an older PyTorch saved it from DataParallel: ``module.`` keys, no
    ``num_batches_tracked``, nested under ``state_dict`` beside ``best_prec1``."""
    kwargs = {"num_classes": 5, "in_channels": 3, "width": 16}
    source = _perturbed(models.build(FACTORY, model_kwargs=kwargs)).eval()
    state = {
        f"module.{k}": v
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "old.pth.tar"
    torch.save({"epoch": 160, "best_prec1": 93.4, "state_dict": state}, path)
    with caplog.at_level(logging.INFO, logger="pruna_search"):
        loaded = models.build(FACTORY, model_kwargs=kwargs, checkpoint=path, input_shape=SHAPE)
    notes = [r.getMessage() for r in caplog.records if "num_batches_tracked" in r.getMessage()]
    assert len(notes) == 1 and "1 BatchNorm layers" in notes[0]
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


@pytest.mark.parametrize("key", ["net", "ema", "model"])
def test_checkpoint_nested_under_common_keys(tmp_path: Path, key: str) -> None:
    source = _perturbed(models.build(FACTORY)).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({key: source.state_dict(), "optimizer": {"lr": 0.1}}, path)
    loaded = models.build(FACTORY, checkpoint=path)
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_checkpoint_of_another_architecture_names_keys_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    other = models.build("cnn", num_classes=10, in_channels=1).state_dict()
    torch.save(other, path)
    with pytest.raises(CheckpointError) as info:
        models.build(FACTORY, checkpoint=path)
    message = str(info.value)
    assert "missing keys (conv.weight" in message and "unexpected keys" in message
    assert "check model.name and model.model_kwargs" in message and "\n" not in message
    wide = tmp_path / "wide.pt"
    torch.save(models.build(FACTORY, model_kwargs={"width": 16}).state_dict(), wide)
    with pytest.raises(CheckpointError, match=r"conv\.weight has shape \(16, 1, 3, 3\) in the"):
        models.build(FACTORY, checkpoint=wide)


def test_whole_pickled_module_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(models.build(FACTORY), path)
    with pytest.raises(
        CheckpointError, match=r"not loaded for safety; re-save it with torch\.save"
    ):
        models.build(FACTORY, checkpoint=path)


@pytest.mark.parametrize(
    "path, kwargs, message",
    [
        ("fixtures_models:NOT_A_CLASS", {}, "is a int, not a class or factory"),
        ("fixtures_models:not_a_model", {}, "returned a int, not a torch.nn.Module"),
        ("fixtures_models:raising_factory", {}, "raised ValueError: weights server unreachable"),
        (FACTORY, {"depth": 3}, "model.model_kwargs: .* unexpected keyword argument 'depth'"),
        ("fixtures_models:NoSuch", {}, "choose one of: MultiOutputNet, Output, TinyNet,"),
        ("json.decoder", {}, "is a module; name the ClassName in it, e.g. 'json.decoder:"),
    ],
)
def test_bad_factories(path: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        models.build(path, model_kwargs=kwargs, input_shape=(1, 12, 12))


@pytest.mark.parametrize("kind, key", [("dict", None), ("output", None), ("tuple", "1")])
def test_forward_returning_more_than_logits_is_scored_and_exported_on_logits(
    tmp_path: Path, kind: str, key: str | None
) -> None:
    model = models.build(
        "fixtures_models:MultiOutputNet",
        model_kwargs={"kind": kind, "num_classes": 4},
        input_shape=(1, 12, 12),
        output_key=key,
    )
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 4)
    # module names are the user's own (plans, checkpoints and parameters stay as written)
    assert {n for n, _ in model.named_modules()} >= {"conv", "bn", "fc"}
    path = export_onnx(model, x, tmp_path / "m.onnx")
    import onnx

    assert len(onnx.load(str(path)).graph.output) == 1
    labels = logits.argmax(1).numpy()
    assert onnx_accuracy(path, x.numpy(), labels) == 1.0


def test_output_key_not_in_the_output_is_refused() -> None:
    with pytest.raises(ModelError, match="model.output_key: 'nope' is not in the output.*logits"):
        models.build("fixtures_models:MultiOutputNet", input_shape=(1, 12, 12), output_key="nope")
    with pytest.raises(ModelError, match="model.output_key: 'x' but the model returns one"):
        models.build(FACTORY, input_shape=(1, 12, 12), output_key="x")


def test_tuple_default_takes_the_first_tensor() -> None:
    model = models.build(
        "fixtures_models:MultiOutputNet",
        model_kwargs={"kind": "tuple", "num_classes": 4},
        input_shape=(1, 12, 12),
        num_classes=None,
    )
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 12, 12)).shape == (2, 8)  # the features come first


@pytest.mark.slow
def test_optimize_recovers_by_default_on_a_dict_model(digits, capsys) -> None:
    """The one-shot API fine-tunes a pruned model by default and says so, on a model whose
    forward returns a dict (the user's model object is left as it was)."""
    model = models.build(
        "fixtures_models:MultiOutputNet", model_kwargs={"kind": "dict", "hidden": 16}
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        from pruna_search.train import TrainSettings, train

        class Logits(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)["logits"]

        train(Logits(model), digits.train, TrainSettings(steps=150, lr=0.05, seed=0))
    result = ps.optimize(
        model,
        ps.Config(pruning_ratio=0.5, quantization_bits=32),
        data=digits,
        measure_latency=False,
    )
    out = capsys.readouterr().out
    assert "fine-tune 300 steps (auto" in out and "before the fine-tune" in out
    assert result.plan.finetune.steps == 300
    before = result.accuracy_before_finetune
    assert before is not None and result.metrics[names.ACCURACY] > before
    with torch.no_grad():
        assert isinstance(model(digits.example()), dict)  # untouched
    assert np.isfinite(result.metrics[names.ACCURACY_DROP])
