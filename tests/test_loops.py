"""Tests of pruna_search.train.loops: batch order and the teacher-logit cache of distillation."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pruna_search.train import loops


def _data(n: int = 200) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    return TensorDataset(x, (x.mean(dim=(1, 2, 3)) > 0).long())


def _net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)
    )


class _CountingTeacher(nn.Module):
    """Wraps a model and counts how many examples went through its forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.inner(x)


class _Plain(Dataset):
    """The same examples behind a non-TensorDataset (the uncached path)."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[i]


def test_tensor_batches_follow_the_dataloader_order() -> None:
    data = _data(150)
    generator = torch.Generator().manual_seed(7)
    expected = [y for _ in range(3) for _x, y in DataLoader(data, 32, True, generator=generator)]
    batches = loops._batches(data, 32, 7)
    got = [next(batches) for _ in expected]
    assert all(torch.equal(y, want) for (_x, y, _i), want in zip(got, expected, strict=True))
    x, y, idx = got[0]
    assert torch.equal(x, data.tensors[0][idx]) and torch.equal(y, data.tensors[1][idx])
    # every pass shows each example exactly once
    first_pass = torch.cat([i for _x, _y, i in got[:5]])
    assert sorted(first_pass.tolist()) == list(range(150))


def test_teacher_logits_are_computed_once_per_example_and_match_the_uncached_run() -> None:
    data = _data(200)
    teacher = _CountingTeacher(_net()).eval()
    student_a, student_b = _net(), _net()
    settings = loops.TrainSettings(steps=30, lr=0.05, batch_size=40, distill=0.7)
    loops.train(student_a, data, settings, teacher=teacher)
    assert teacher.seen == 200  # 30 steps x 40 = 1200 draws, each example taught once
    loops.train(copy.deepcopy(student_b), data, settings, teacher=teacher)
    assert teacher.seen == 200  # a second fine-tune reuses every logit
    uncached = _net()
    loops.train(uncached, _Plain(data), settings, teacher=teacher)
    assert teacher.seen == 200 + 30 * 40
    for a, b in zip(student_a.parameters(), uncached.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_teacher_cache_is_dropped_when_the_teacher_changes() -> None:
    data = _data(100)
    teacher = _CountingTeacher(_net()).eval()
    settings = loops.TrainSettings(steps=4, lr=0.05, distill=0.5)
    loops.train(_net(), data, settings, teacher=teacher)
    assert teacher.seen == 100
    with torch.no_grad():
        next(teacher.parameters()).add_(0.1)
    loops.train(_net(), data, settings, teacher=teacher)
    assert teacher.seen == 200
    loops.train(_net(), _data(100), settings, teacher=teacher)
    assert teacher.seen == 300  # another data set (other tensors): taught again


class _Watch:
    """An ``on_progress``: records the steps it is told and the proxy accuracy there."""

    def __init__(self, data: Dataset, every: int) -> None:
        self.data, self.every, self.told, self.tracked = data, every, [], []

    def __call__(self, step: int, model: nn.Module) -> None:
        assert model.training
        self.told.append((step, loops.proxy_accuracy(model, self.data)))
        norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        self.tracked.append(int(norm.num_batches_tracked))
        assert model.training


def test_reading_the_proxy_during_a_fine_tune_changes_nothing_it_learns() -> None:
    """``on_progress`` is told every ``every`` steps with the model in train mode; reading
    the proxy accuracy there restores that mode and draws nothing from torch's global
    generator, so the fine-tune (dropout included) ends with the same weights as without it."""
    data = _data()
    settings = loops.TrainSettings(steps=12, lr=0.05, batch_size=32)

    def net() -> nn.Module:
        model = _net()
        model.insert(4, nn.Dropout(0.5))
        return model

    plain = net()
    loops.train(plain, data, settings)
    watched, watch = net(), _Watch(data, every=3)
    loops.train(watched, data, settings, on_progress=watch)
    assert [step for step, _ in watch.told] == [3, 6, 9, 12]
    assert all(0.0 <= acc <= 1.0 for _, acc in watch.told)
    for key, tensor in plain.state_dict().items():
        assert torch.equal(tensor, watched.state_dict()[key]), key


def test_a_fine_tune_recalibrates_before_each_report_and_learns_the_same() -> None:
    """Through ``finetune`` the reports see BatchNorm statistics recalibrated for the weights
    at that step, the last step is not reported, and the fine-tuned model (its statistics
    recalibrated at the end) is the same, to the bit, with or without reports."""
    from pruna_search.compress.finetune import finetune
    from pruna_search.core.plan import Finetune

    data = _data()
    options = Finetune(steps=12, lr=0.05, batch_size=32, bn_recalibration=2, distill=0.0)
    plain = finetune(_net(), data, options)
    watch = _Watch(data, every=4)
    watched = finetune(_net(), data, options, on_progress=watch)
    assert [step for step, _ in watch.told] == [0, 4, 8]
    assert watch.tracked == [2, 2, 2]  # the recalibration's 2 batches, not the steps since
    for key, tensor in plain.state_dict().items():
        assert torch.equal(tensor, watched.state_dict()[key]), key


def test_accuracy_reads_photos_in_small_batches():
    """At 224x224 the torch accuracy loop (the proxy a trial reports during its fine-tune) reads
    16 images at a time, not 256: a batch of 256 held gigabytes of activations (10.4 GB peak in
    bench-real); the figure does not depend on the batch."""

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
            self.batches: list[int] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.batches.append(x.shape[0])
            return self.head(x)

    torch.manual_seed(0)
    photos = TensorDataset(torch.randn(40, 3, 224, 224), torch.randint(0, 4, (40,)))
    model = Counting()
    small = loops.accuracy(model, photos)
    assert max(model.batches) == 16 and sum(model.batches) == 40
    assert loops.accuracy(model, photos, batch_size=40) == small
    digits = TensorDataset(torch.randn(300, 3, 8, 8), torch.randint(0, 4, (300,)))
    model.batches.clear()
    loops.accuracy(model, digits)
    assert model.batches == [256, 44]  # small inputs keep large batches
