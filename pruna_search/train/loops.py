"""Plain torch loops shared by baseline training (models/) and recovery fine-tuning (compress/)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeGuard

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..core.errors import ConfigError
from ..core.progress import bar
from ..core.runtime import batch_for

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Progress(Protocol):
    """``on_progress(step, model)``: told the steps done and the model being trained (in
    place), every ``every`` steps."""

    @property
    def every(self) -> int: ...

    def __call__(self, step: int, model: nn.Module) -> None: ...


@dataclass(frozen=True)
class Compute:
    """Where fine-tuning, BatchNorm recalibration and the teacher's logits run.

    Attributes:
        device: a torch device string (``cpu``, ``cuda``, ``cuda:1``), already checked.
        amp: ``bf16`` or ``fp16`` autocast on CUDA; None: full precision.
    """

    device: str = "cpu"
    amp: str | None = None

    @classmethod
    def resolve(cls, device: str = "auto", amp: str | None = None) -> Compute:
        """``auto`` is CUDA when torch sees a GPU, else the CPU; a device torch cannot use, or
        an unknown ``amp``, is a ConfigError naming the key. ``amp`` is dropped on the CPU."""
        if amp is not None and amp not in AMP_DTYPES:
            raise ConfigError(
                f"finetune.amp: {amp!r} is unknown; use bf16 or fp16 (autocast on CUDA), or null"
            )
        resolved = _device(str(device))
        return cls(device=resolved, amp=amp if resolved.startswith("cuda") else None)

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def autocast(self):
        """Autocast to ``amp`` on CUDA, or nothing."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=AMP_DTYPES[self.amp])


CPU = Compute()


def _device(name: str) -> str:
    if name in ("auto", "cpu"):
        return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"finetune.device: {name!r} is unknown; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"finetune.device: {name!r} but torch {torch.__version__} sees no CUDA device "
            "(no GPU, or a CPU build of torch); use finetune.device=auto or cpu"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ConfigError(
            f"finetune.device: {name!r} but torch sees {count} CUDA device(s) "
            f"(cuda:0 to cuda:{count - 1}); pick one of those"
        )
    return name


def release_memory() -> None:
    """Give freed memory back to the operating system.

    A fine-tune allocates and frees gigabytes of activations at 224x224; glibc keeps freed
    blocks in its heap (its mmap threshold rises after the first large free), so without this
    a study's resident memory grew by ~150 MB per trial of EfficientNet-Lite0 (to 5 GB after
    24 trials) while the live data stayed at ~0.6 GB. No-op where libc has no malloc_trim.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def reuse_freed_memory() -> None:
    """Serve every allocation from glibc's heap, never from a fresh mmap, once per process.

    glibc maps each block over its mmap threshold (at most 32 MB) afresh and unmaps it when
    freed; the kernel zeroes every page of it on first touch. At 224x224 a batch's activations
    are 25-100 MB each, so every layer of every forward paid that: an analysis of
    EfficientNet-Lite0 spent as much CPU time in the kernel as in torch (130 s of system time
    against 157 s of user time), and a 1x1 convolution over 16x96x112x112 ran 6x slower
    (docs/benchmarks.md). Served from the heap, a freed block is reused by the next batch;
    ``release_memory`` still returns the heap's free pages after each plan. No-op without glibc,
    or with the environment variable ``PRUNA_SEARCH_MALLOC=default`` (glibc as it is: a lower
    peak of resident memory, for hosts short of it).
    """
    global _HEAP_ONLY
    if _LIBC is None or _HEAP_ONLY or not hasattr(_LIBC, "mallopt"):
        return
    if os.environ.get("PRUNA_SEARCH_MALLOC", "heap") == "default":
        return
    _LIBC.mallopt(M_MMAP_MAX, 0)  # no block from mmap
    _LIBC.mallopt(M_TRIM_THRESHOLD, 1 << 30)  # nor trimmed between two batches
    _HEAP_ONLY = True


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_HEAP_ONLY = False


def _sliceable(dataset: Dataset) -> TypeGuard[TensorDataset]:
    """Inputs and labels held as tensors: batches are sliced from them, by example index."""
    return isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2


def _batches(
    dataset: Dataset, batch_size: int, seed: int, pin_memory: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Endless shuffled ``(inputs, labels, indices)`` batches with a seeded order (reshuffled
    every pass); ``indices`` are the examples' positions in ``dataset`` (None unless it is
    ``_sliceable``).

    A TensorDataset is sliced directly, in exactly the order a shuffled DataLoader with the
    same generator would give (the same random draws, in the same order: the loader's base
    seed, the sampler's permutation, then its empty remainder draw), without collating one
    example at a time. Any other dataset goes through a DataLoader with the dataset's
    ``workers`` reading processes (see ``data.base``).
    """
    generator = torch.Generator().manual_seed(seed)
    if _sliceable(dataset):
        inputs, labels = dataset.tensors[0], dataset.tensors[1]
        n = len(dataset)
        while True:
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield inputs[idx], labels[idx], idx
            torch.randperm(n, generator=generator)
    while True:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=False,
            generator=generator,
            num_workers=int(getattr(dataset, "workers", 0) or 0),
            pin_memory=pin_memory,
        )
        for x, y in loader:
            yield x, y, None


class _TeacherLogits:
    """A fixed teacher's logits for each example of one training set, computed the first time
    the example is drawn and reused by every later fine-tune.

    During a study every trial distils from the same dense model on the same (unaugmented)
    training set, so its forward pass (a fifth of a distilled step on ResNet-20) need not be
    repeated per step. The entry is dropped when the teacher's weights or buffers change in
    place (their version counters move) or another data set is used.
    """

    def __init__(self, inputs: torch.Tensor, key: tuple) -> None:
        self.key = key
        self.logits: torch.Tensor | None = None
        self.known = torch.zeros(len(inputs), dtype=torch.bool)

    @torch.no_grad()
    def get(self, teacher: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        missing = ~self.known[idx]
        if bool(missing.any()):
            fresh = teacher(x[missing.to(x.device)]).float().cpu()  # kept in host memory
            if self.logits is None:
                self.logits = torch.empty((len(self.known), *fresh.shape[1:]), dtype=fresh.dtype)
            self.logits[idx[missing]] = fresh
            self.known[idx[missing]] = True
        assert self.logits is not None
        return self.logits[idx].to(x.device)


_TEACHER_CACHE: weakref.WeakKeyDictionary[nn.Module, _TeacherLogits] = weakref.WeakKeyDictionary()


def _teacher_logits(teacher: nn.Module, inputs: torch.Tensor) -> _TeacherLogits:
    """The cache entry for ``teacher`` on ``inputs`` (a fresh one if either has changed)."""
    versions = tuple(t._version for t in (*teacher.parameters(), *teacher.buffers()))
    key = (inputs.data_ptr(), tuple(inputs.shape), inputs._version, versions)
    entry = _TEACHER_CACHE.get(teacher)
    if entry is None or entry.key != key:
        entry = _TeacherLogits(inputs, key)
        _TEACHER_CACHE[teacher] = entry
    return entry


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer: {name!r} is unknown; use sgd, adam or adamw")


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How ``train`` trains.

    Attributes:
        steps: optimizer steps (<= 0: no training).
        lr: peak learning rate, cosine-decayed over ``steps``.
        optimizer: ``sgd`` (Nesterov, momentum 0.9), ``adam`` or ``adamw``.
        batch_size: examples per step.
        weight_decay: the optimizer's weight decay.
        seed: seed of the initial torch state and of the batch order.
        desc: the progress bar's label.
        distill: weight of the distillation term (0: labels only; needs a teacher).
        temperature: distillation temperature ``T``.
    """

    steps: int
    lr: float
    optimizer: str = "sgd"
    batch_size: int = 64
    weight_decay: float = 5e-4
    seed: int = 0
    desc: str = "train"
    distill: float = 0.0
    temperature: float = 4.0


def train(
    model: nn.Module,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    teacher: nn.Module | None = None,
    compute: Compute = CPU,
    on_progress: Progress | None = None,
) -> float:
    """Train ``model`` in place for ``settings.steps`` optimizer steps with cosine-decayed
    ``settings.lr``, on ``compute.device`` (the model and the ``teacher`` must already be there).
    ``on_progress(step, model)`` is called every ``on_progress.every`` steps with the steps
    done (the model in train mode); what it raises stops the training and passes through.

    With a ``teacher`` and ``distill`` > 0 the loss is ``(1 - distill) * CE + distill * T^2 *
    KL(teacher || student)`` at temperature ``T`` (Hinton et al., 2015): the dense model's soft
    targets carry more signal per step than labels alone, which matters for short fine-tunes.

    Returns the mean loss of the last 10 % of steps (a cheap sanity figure).
    """
    reuse_freed_memory()
    s = settings
    if s.steps <= 0:
        return float("nan")
    torch.manual_seed(s.seed)
    model.train()
    opt = make_optimizer(model, s.optimizer, s.lr, s.weight_decay)
    if teacher is not None:
        teacher.eval()
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, s.steps) / s.steps))
    )
    distiller = _Distiller(teacher, dataset, s.distill, s.temperature) if s.distill > 0 else None
    scaler = torch.amp.GradScaler("cuda") if compute.amp == "fp16" else None
    batches = _batches(dataset, s.batch_size, s.seed, pin_memory=compute.on_cuda)
    tail: list[float] = []
    tail_from = int(s.steps * 0.9)
    progress = bar(total=s.steps, desc=s.desc)
    try:
        for step in range(s.steps):
            loss = _step(model, next(batches), opt, scaler, distiller, compute)
            sched.step()
            value = loss.item()
            if step >= tail_from:
                tail.append(value)
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(loss=f"{value:.3f}")
            if on_progress is not None and (step + 1) % on_progress.every == 0:
                on_progress(step + 1, model)
    finally:
        progress.close()
    model.eval()
    return sum(tail) / max(len(tail), 1)


def _step(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    distiller: _Distiller | None,
    compute: Compute,
) -> torch.Tensor:
    """One optimizer step on ``batch``; the step's loss."""
    x, y, idx = batch
    x, y = x.to(compute.device, non_blocking=True), y.to(compute.device, non_blocking=True)
    opt.zero_grad(set_to_none=True)
    with compute.autocast():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        if distiller is not None:
            loss = distiller.loss(loss, logits, x, idx)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss


class _Distiller:
    """The distillation term of ``train``'s loss, with the teacher's logits cached per example
    when the data set is sliceable (see ``_TeacherLogits``)."""

    def __init__(
        self, teacher: nn.Module | None, dataset: Dataset, weight: float, temperature: float
    ) -> None:
        self.teacher = teacher
        self.weight = weight
        self.temperature = temperature
        self.cached = (
            _teacher_logits(teacher, dataset.tensors[0])
            if teacher is not None and _sliceable(dataset)
            else None
        )

    def loss(
        self, ce: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, idx: torch.Tensor | None
    ) -> torch.Tensor:
        if self.teacher is None:
            return ce
        t = self.temperature
        with torch.no_grad():
            # idx is set exactly when the dataset is sliceable, as the cache is
            taught = None
            if self.cached is not None and idx is not None:
                taught = self.cached.get(self.teacher, x, idx)
            taught = self.teacher(x) if taught is None else taught
            soft = torch.softmax(taught.float() / t, dim=1)
        kd = (
            nn.functional.kl_div(
                torch.log_softmax(logits.float() / t, dim=1), soft, reduction="batchmean"
            )
            * t**2
        )
        return (1.0 - self.weight) * ce + self.weight * kd


@torch.no_grad()
def accuracy(
    model: nn.Module, dataset: Dataset, *, batch_size: int | None = None, device: str = "cpu"
) -> float:
    """Top-1 accuracy of a torch model on ``device``, where it must be (used for baselines and
    as a proxy during fine-tunes; shipped metrics come from ORT). Leaves it in eval mode.

    ``batch_size`` (None): as for an ONNX Runtime run, ``runtime.batch_for`` the input's shape:
    256 images at 32x32, 16 at 3x224x224 (a batch of 256 at 224x224 holds gigabytes of
    activations).
    """
    if batch_size is None:
        batch_size = batch_for(tuple(dataset[0][0].shape)) if len(dataset) else 1  # type: ignore[arg-type]
    model.eval()
    correct = total = 0
    # a generator of its own: a DataLoader draws its seed from torch's global one otherwise,
    # and a fine-tune that reads this between steps would draw other dropout masks after it
    for x, y in DataLoader(dataset, batch_size=batch_size, generator=torch.Generator()):
        predicted = model(x.to(device)).argmax(1).cpu()
        correct += int((predicted == y).sum())
        total += len(y)
    return correct / max(total, 1)


def proxy_accuracy(model: nn.Module, sample: Dataset) -> float:
    """Top-1 accuracy of a model being fine-tuned, where it is, on a small fixed ``sample``
    (eval mode, no gradients; its train or eval mode restored): a cheap figure to compare
    trials at the same step of their fine-tunes, not a metric to ship."""
    training = model.training
    weight = next(iter(model.parameters()), None)
    try:
        return accuracy(model, sample, device="cpu" if weight is None else str(weight.device))
    finally:
        model.train(training)
