"""BatchNorm recalibration against the trained model (train/batchnorm.py), on the real trained
ResNet-20 and digits; "other photos" are digits brightened and shifted, so re-estimated
statistics move away from the trained ones the way a pretrained model's do on a user's data."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pruna_search import models
from pruna_search.compress.prune import prune
from pruna_search.train import BatchDraw, accuracy, recalibrate_batchnorm

DRAW = BatchDraw(batches=4, batch_size=64, seed=0)


def _stats(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        name: (m.running_mean.clone(), m.running_var.clone())
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    }


@pytest.fixture(scope="module")
def other_photos(digits) -> TensorDataset:
    x, y = digits.train.tensors[0], digits.train.tensors[1]
    return TensorDataset(x * 1.5 + 0.3, y)


@pytest.fixture(scope="module")
def example(digits) -> torch.Tensor:
    return digits.example()


def test_nothing_pruned_keeps_the_trained_statistics(resnet20_trained, other_photos):
    trained = _stats(resnet20_trained)
    kept, moved = copy.deepcopy(resnet20_trained), copy.deepcopy(resnet20_trained)
    recalibrate_batchnorm(kept, other_photos, DRAW, reference=resnet20_trained)
    recalibrate_batchnorm(moved, other_photos, DRAW)
    for name, (mean, var) in _stats(kept).items():
        assert torch.allclose(mean, trained[name][0], atol=1e-6), name
        assert torch.allclose(var, trained[name][1], rtol=1e-5), name
    shifts = [float((m - trained[n][0]).abs().max()) for n, (m, _) in _stats(moved).items()]
    assert max(shifts) > 0.05  # without the reference the statistics follow the other photos


def test_statistics_before_the_pruned_layer_stay_and_after_it_move(
    resnet20_trained, other_photos, example
):
    pruned, report = prune(resnet20_trained, example, {"layer3.1.conv1": 0.5})
    assert report.channels["layer3.1.conv1"][1] < report.channels["layer3.1.conv1"][0]
    trained = _stats(resnet20_trained)
    recalibrate_batchnorm(pruned, other_photos, DRAW, reference=resnet20_trained)
    after = _stats(pruned)
    for name in ("bn1", "layer1.0.bn1", "layer2.2.bn2", "layer3.0.bn2"):  # run before it
        assert torch.equal(after[name][0], trained[name][0]), name
    # the pruned conv's own BatchNorm: its kept channels' inputs are unchanged
    mean = after["layer3.1.bn1"][0]
    assert mean.numel() < trained["layer3.1.bn1"][0].numel()
    assert set(mean.tolist()) <= set(trained["layer3.1.bn1"][0].tolist())
    # the next one sees fewer input channels: moved by the change, not to the other photos
    moved = (after["layer3.1.bn2"][0] - trained["layer3.1.bn2"][0]).abs().max()
    assert float(moved) > 1e-4


def test_a_pruned_model_keeps_its_accuracy_when_recalibrated_on_other_photos(
    resnet20_trained, other_photos, example, digits
):
    pruned, _ = prune(resnet20_trained, example, {"layer3.1.conv1": 0.25})
    with_reference, alone = copy.deepcopy(pruned), copy.deepcopy(pruned)
    recalibrate_batchnorm(with_reference, other_photos, DRAW, reference=resnet20_trained)
    recalibrate_batchnorm(alone, other_photos, DRAW)
    dense = accuracy(resnet20_trained, digits.val)
    kept = accuracy(with_reference, digits.val)
    lost = accuracy(alone, digits.val)
    assert kept >= dense - 0.02
    assert lost < kept - 0.05


class _Noisy(Dataset):
    """Each read adds noise from torch's generator, as random crops and flips do."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index]
        return x + 0.1 * torch.rand(x.shape), y


def test_the_same_batches_are_drawn_every_time(resnet20_trained, digits):
    noisy = _Noisy(digits.train)
    first, second = copy.deepcopy(resnet20_trained), copy.deepcopy(resnet20_trained)
    draw = BatchDraw(batches=2, batch_size=32, seed=3)
    torch.manual_seed(0)
    recalibrate_batchnorm(first, noisy, draw)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    recalibrate_batchnorm(second, noisy, draw)
    assert torch.equal(state, torch.get_rng_state())  # torch's generator left as it was
    for name, (mean, var) in _stats(first).items():
        assert torch.equal(mean, _stats(second)[name][0]), name
        assert torch.equal(var, _stats(second)[name][1]), name


def test_channels_that_cannot_be_matched_are_re_estimated(digits, example, other_photos):
    fresh = models.build("resnet20", data=digits, pretrained=False)  # every mean 0, var 1
    pruned, _ = prune(fresh, example, {"layer3.1.conv1": 0.5})
    alone = copy.deepcopy(pruned)
    recalibrate_batchnorm(pruned, other_photos, DRAW, reference=fresh)
    recalibrate_batchnorm(alone, other_photos, DRAW)
    mean, var = _stats(pruned)["layer3.1.bn1"]
    assert torch.allclose(mean, _stats(alone)["layer3.1.bn1"][0])
    assert torch.isfinite(var).all()


class _Unhashable(TensorDataset):
    __hash__ = None  # type: ignore[assignment]  # as a dataclass with eq=True


def test_a_dataset_that_cannot_be_a_dictionary_key_still_recalibrates(resnet20_trained, digits):
    photos = _Unhashable(*digits.train.tensors)
    first, second = copy.deepcopy(resnet20_trained), copy.deepcopy(resnet20_trained)
    recalibrate_batchnorm(first, photos, DRAW, reference=resnet20_trained)
    recalibrate_batchnorm(second, digits.train, DRAW, reference=resnet20_trained)
    for name, (mean, _) in _stats(first).items():
        assert torch.allclose(mean, _stats(second)[name][0]), name


def test_statistics_recalibrated_after_a_fine_tune_fit_the_weights_it_trained(
    resnet20_trained, example, digits
):
    """The running averages a fine-tune gathers while its weights move fit none of them;
    ``finetune`` recalibrates again at the end (same weights, other statistics)."""
    from pruna_search.compress.finetune import finetune
    from pruna_search.core.plan import Finetune
    from pruna_search.train import TrainSettings, train

    groups = ["conv1", "layer2.0.shortcut.0", "layer3.0.shortcut.0"]  # and each block's conv1
    groups += [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in (0, 1, 2)]
    half = {group: 0.5 for group in groups}
    pruned, _ = prune(resnet20_trained, example, half)
    options = Finetune(steps=30, lr=0.01, bn_recalibration=4, distill=0.7)
    again = finetune(copy.deepcopy(pruned), digits.train, options, teacher=resnet20_trained)
    as_left = copy.deepcopy(pruned)  # before: recalibrated once, then fine-tuned
    recalibrate_batchnorm(as_left, digits.train, DRAW, reference=resnet20_trained)
    settings = TrainSettings(steps=30, lr=0.01, distill=0.7)
    train(as_left, digits.train, settings, teacher=resnet20_trained)
    as_left.eval()
    for name, weight in again.named_parameters():
        assert torch.equal(weight, dict(as_left.named_parameters())[name]), name
    fitted, stale = accuracy(again, digits.val), accuracy(as_left, digits.val)
    assert fitted > stale + 0.05  # measured: 0.967 against 0.735
