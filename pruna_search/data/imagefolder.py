"""Photos in class folders, ``root/train/<class>/*`` and ``root/val/<class>/*``, read per batch.

Nothing is decoded up front: a split is a list of files, and each batch is read, resized,
cropped and normalised by the loader's worker processes (``workers``) while the model runs, so
a folder of any size fits in memory. Validation and calibration see the evaluation transform
(shorter side to ``resize``, centre crop ``size``); fine-tuning sees random resized crops and
flips (``augment``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import DataError
from ..core.imports import keyword_settings
from ..core.progress import bar
from .base import DataSplits
from .images import (
    HW,
    EvalTransform,
    Normalize,
    TrainTransform,
    check_image,
    default_resize,
    open_image,
)
from .subset import balanced_subset, subset_size

EXTENSIONS = (".jpg", ".jpeg", ".png")
# mean / std presets: ImageNet's statistics, and (x - 0.5) / 0.5 (TensorFlow-trained models)
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
TRAIN = "train"  # the preset that computes the statistics on train images
STATS_IMAGES = 500  # train images (seeded) read to compute `train` statistics
_BAR_FROM = 2000  # show a progress bar when checking at least this many files


class ImageFiles(Dataset):
    """Image files and their labels; ``[i]`` reads one as a float32 ``(C, H, W)`` tensor.

    Attributes:
        files: the image paths.
        labels: int64 class of each file.
        workers: loader processes that read this dataset (0: the calling process).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: np.ndarray,
        *,
        mode: str,
        transform,
        normalize: Normalize,
        workers: int,
    ) -> None:
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode = mode
        self.transform = transform
        self.normalize = normalize
        self.workers = workers

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(open_image(self.files[index], self.mode))
        return torch.from_numpy(self.normalize(image)), int(self.labels[index])

    def select(self, indices: np.ndarray, *, transform=None) -> ImageFiles:
        """The files at ``indices`` (with another ``transform`` when given)."""
        return ImageFiles(
            [self.files[i] for i in indices],
            self.labels[indices],
            mode=self.mode,
            transform=transform or self.transform,
            normalize=self.normalize,
            workers=self.workers,
        )


def _size(size: int | Sequence[int]) -> HW:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise DataError(f"data.size: {size!r} must be an integer or [height, width], e.g. 224")
    if min(hw) < 1:
        raise DataError(f"data.size: {size!r} must be positive, e.g. 224")
    return hw


def _resize(resize: int | None, hw: HW) -> int:
    if resize is None:
        return default_resize(hw)
    if isinstance(resize, bool) or not isinstance(resize, int) or resize < max(hw):
        raise DataError(
            f"data.resize: {resize!r} must be an integer >= the crop size {max(hw)} (the shorter "
            f"side before the centre crop); null gives {default_resize(hw)}"
        )
    return resize


def _stats(value: object, channels: int, field: str) -> tuple[float, ...] | None:
    """Per-channel values from a preset name, a number or a list; None for the ``train`` preset
    (computed later)."""
    if isinstance(value, str):
        if value == TRAIN:
            return None
        if value not in PRESETS:
            names = ", ".join([*PRESETS, TRAIN])
            raise DataError(
                f"data.{field}: {value!r} is not a preset; use one of {names}, or numbers"
            )
        values = PRESETS[value][0 if field == "mean" else 1]
        return values if channels == 3 else (float(np.mean(values)),)
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise DataError(
            f"data.{field}: {value!r} must be a preset ({', '.join([*PRESETS, TRAIN])}), a number "
            f"or a list of {channels} numbers"
        )
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise DataError(
            f"data.{field}: {value!r} has {arr.size} values but the images have {channels} "
            f"channel(s); give one number or {channels}"
        )
    if field == "std" and np.any(arr <= 0):
        raise DataError(f"data.std: {value!r} must be > 0")
    return tuple(float(v) for v in arr)


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(
        (p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _images_in(class_dir: Path) -> list[Path]:
    files = sorted(
        p
        for p in class_dir.iterdir()
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DataError(
            f"data.root: class folder {str(class_dir)!r} has no images "
            f"({', '.join(EXTENSIONS)}); add images or remove the folder"
        )
    return files


def _split_dirs(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(
            f"data.root: {str(folder)!r} is not a folder; set data.root to a folder holding "
            "train/<class>/* and val/<class>/* images"
        )
    dirs = {}
    for split in ("train", "val"):
        split_dir = folder / split
        if not split_dir.is_dir():
            raise DataError(
                f"data.root: {str(folder)!r} has no {split!r} subfolder; put the images in "
                f"{split}/<class>/*.png|jpg under it"
            )
        dirs[split] = split_dir
    return dirs


def _listing(folder: Path) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]]]:
    """Class names (sorted train folders) and each split's files and labels."""
    dirs = _split_dirs(folder)
    classes = [p.name for p in _class_dirs(dirs["train"])]
    if not classes:
        raise DataError(
            f"data.root: {str(dirs['train'])!r} has no class folders; put the images in "
            "train/<class>/*"
        )
    index = {name: i for i, name in enumerate(classes)}
    listing = {}
    for split, split_dir in dirs.items():
        files: list[Path] = []
        labels: list[int] = []
        for class_dir in _class_dirs(split_dir):
            if class_dir.name not in index:
                raise DataError(
                    f"data.root: val class {class_dir.name!r} has no folder in "
                    f"{str(dirs['train'])!r}; add train/{class_dir.name}/ or remove "
                    f"val/{class_dir.name}/"
                )
            found = _images_in(class_dir)
            files.extend(found)
            labels.extend([index[class_dir.name]] * len(found))
        listing[split] = (files, np.asarray(labels, dtype=np.int64))
    return classes, listing


def _subset(
    files: list[Path], labels: np.ndarray, value: object, seed: int, field: str
) -> tuple[list[Path], np.ndarray]:
    size = subset_size(value, len(files), field)
    if size is None or size == len(files):
        return files, labels
    keep = balanced_subset(labels, size, seed)
    return [files[i] for i in keep], labels[keep]


def _check_files(files: list[Path], split: str) -> None:
    items = bar(files, desc=f"checking {split}") if len(files) >= _BAR_FROM else files
    for path in items:
        check_image(path)


def _content(folder: Path, files: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times (a file changed in place
    gets a new fingerprint, so no baseline trained on its old contents is reused)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _train_statistics(files: list[Path], mode: str, crop: EvalTransform, seed: int):
    """Per-channel mean and std of up to ``STATS_IMAGES`` train images (seeded sample), as the
    evaluation transform shows them."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(files))[:STATS_IMAGES])
    channels = 1 if mode == "L" else 3
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for i in bar(pick, desc="train statistics") if len(pick) >= 200 else pick:
        arr = Normalize((0.0,) * channels, (1.0,) * channels)(crop(open_image(files[i], mode)))
        total += arr.sum(axis=(1, 2), dtype=np.float64)
        squares += np.square(arr, dtype=np.float64).sum(axis=(1, 2))
        count += arr.shape[1] * arr.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std == 0] = 1.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _normalizer(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, sample: tuple
) -> Normalize:
    """``Normalize`` with the given values, computing the ``train`` preset's (None) on
    ``sample`` = (train files, mode, evaluation transform, seed)."""
    if mean is None or std is None:
        computed = _train_statistics(*sample)
        mean, std = mean or computed[0], std or computed[1]
    return Normalize(mean, std)


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(
            f"data.workers: {workers!r} must be an integer >= 0 (processes that read images; "
            "0 reads them in the main process)"
        )
    return workers


@dataclass(frozen=True, kw_only=True)
class ImageFolderOptions:
    """The options of ``load_imagefolder``.

    Attributes:
        root: folder holding ``train`` and ``val``.
        size: the crop the model sees: a side, or ``[height, width]``.
        resize: the shorter side before the centre crop (None: ``size`` x 256/224).
        grayscale: read one channel (L) instead of three (RGB).
        mean: ``imagenet``, ``half`` (0.5), ``train`` (computed on train images), a number or
            one per channel; subtracted after scaling pixels to [0, 1].
        std: the same choices; divided by.
        augment: fine-tune on random resized crops and flips (False: the centre crop).
        workers: loader processes reading images (0: the main process).
        train_subset: keep this many train images, or this fraction (class-balanced, seeded).
        val_subset: the same for val.
        calib_size: size of the calibration subset drawn from train.
        seed: seed of the subsets, the calibration subset and the statistics sample.
    """

    root: str
    size: int | tuple[int, int] = 224
    resize: int | None = None
    grayscale: bool = False
    mean: str | float | list[float] = TRAIN
    std: str | float | list[float] = TRAIN
    augment: bool = True
    workers: int = 2
    train_subset: int | float | None = None
    val_subset: int | float | None = None
    calib_size: int = 256
    seed: int = 0


def load_imagefolder(**options: Any) -> DataSplits:
    """Images from ``root/train/<class>/*`` and ``root/val/<class>/*``, read per batch.

    Classes are the sorted subfolder names of ``train`` (label = position); ``val`` may lack
    classes but may not add any. Files ending in .jpg, .jpeg or .png (any case) are read.

    Args:
        options: the fields of ``ImageFolderOptions`` (``root`` required), as keywords.
    """
    return _load(keyword_settings(ImageFolderOptions, options, caller="load_imagefolder"))


def _load(opts: ImageFolderOptions) -> DataSplits:
    hw = _size(opts.size)
    crop_side = _resize(opts.resize, hw)
    mode = "L" if opts.grayscale else "RGB"
    channels = 1 if opts.grayscale else 3
    mean_values = _stats(opts.mean, channels, "mean")
    std_values = _stats(opts.std, channels, "std")
    workers = _check_workers(opts.workers)
    _check_calib_size(opts.calib_size)
    folder = Path(opts.root).expanduser().absolute()
    classes, listing = _listing(folder)
    train_files, train_labels = _subset(
        *listing["train"], opts.train_subset, opts.seed, "train_subset"
    )
    val_files, val_labels = _subset(*listing["val"], opts.val_subset, opts.seed + 1, "val_subset")
    _check_files(train_files, "train")
    _check_files(val_files, "val")
    evaluation = EvalTransform(hw, crop_side)
    normalize = _normalizer(mean_values, std_values, (train_files, mode, evaluation, opts.seed))
    train = ImageFiles(
        train_files,
        train_labels,
        mode=mode,
        transform=TrainTransform(hw) if opts.augment else evaluation,
        normalize=normalize,
        workers=workers,
    )
    rng = np.random.default_rng(opts.seed)
    calib_idx = np.sort(
        rng.permutation(len(train_files))[: min(opts.calib_size, len(train_files))]
    )
    return DataSplits(
        name="imagefolder",
        train=train,
        calib=train.select(calib_idx, transform=evaluation),
        val=ImageFiles(
            val_files,
            val_labels,
            mode=mode,
            transform=evaluation,
            normalize=normalize,
            workers=workers,
        ),
        input_shape=(channels, *hw),
        num_classes=len(classes),
        options=_recorded(opts, folder, hw, crop_side, normalize),
        content=_content(folder, [*train_files, *val_files]),
    )


def _check_calib_size(calib_size: object) -> None:
    if isinstance(calib_size, bool) or not isinstance(calib_size, int) or calib_size < 1:
        raise DataError(f"data.calib_size: {calib_size!r} must be an integer >= 1")


def _recorded(
    opts: ImageFolderOptions, folder: Path, hw: HW, crop_side: int, normalize: Normalize
) -> dict[str, Any]:
    """The options as used (``DataSplits.options``): the resolved folder, size, resize and
    normalization values."""
    return {
        "root": str(folder),
        "size": list(hw),
        "resize": crop_side,
        "grayscale": opts.grayscale,
        "mean": list(normalize.mean),
        "std": list(normalize.std),
        "augment": opts.augment,
        "train_subset": opts.train_subset,
        "val_subset": opts.val_subset,
        "calib_size": opts.calib_size,
        "seed": opts.seed,
    }
