"""Images in class folders: ``root/train/<class>/*.png|jpg`` and ``root/val/<class>/*``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.progress import bar
from .base import DataSplits, make_splits

EXTENSIONS = (".jpg", ".jpeg", ".png")
_BAR_FROM = 200  # show a progress bar when a split has at least this many files


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise DataError(f"data.size: {size!r} must be an integer or [height, width]")
    if min(hw) < 1:
        raise DataError(f"data.size: {size!r} must be positive")
    return hw


def _stats(value: float | Sequence[float] | None, channels: int, field: str) -> np.ndarray | None:
    """A (channels,) float64 array from a scalar or per-channel list (None stays None)."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(
            f"data.{field}: {value!r} must be a number or a list of {channels} numbers"
        ) from None
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise DataError(
            f"data.{field}: {value!r} has {arr.size} values but the images have {channels} "
            f"channel(s); give one number or {channels}"
        )
    if field == "std" and np.any(arr <= 0):
        raise DataError(f"data.std: {value!r} must be > 0")
    return arr


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


def _read(path: Path, mode: str, hw: tuple[int, int]) -> np.ndarray:
    """One image as float32 (C, H, W) in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (hw[1], hw[0]):
                img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"data.root: cannot read image {str(path)!r} ({type(exc).__name__}: {exc}); "
            "replace or delete the file"
        ) from None
    arr = arr * (1.0 / 255.0)
    return arr[None, :, :] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_split(
    files: list[tuple[Path, int]], mode: str, hw: tuple[int, int], split: str
) -> tuple[np.ndarray, np.ndarray]:
    channels = 1 if mode == "L" else 3
    x = np.empty((len(files), channels, hw[0], hw[1]), dtype=np.float32)
    y = np.empty(len(files), dtype=np.int64)
    items = bar(files, desc=f"reading {split}") if len(files) >= _BAR_FROM else files
    for i, (path, label) in enumerate(items):
        x[i] = _read(path, mode, hw)
        y[i] = label
    return x, y


def load_imagefolder(
    *,
    root: str,
    size: int | tuple[int, int] = 32,
    grayscale: bool = False,
    mean: float | list[float] | None = None,
    std: float | list[float] | None = None,
    calib_size: int = 256,
    seed: int = 0,
) -> DataSplits:
    """Images from ``root/train/<class>/*`` and ``root/val/<class>/*`` as float32 (C, H, W).

    Classes are the sorted subfolder names of ``train`` (label = position); ``val`` may lack
    classes but may not add any. Files ending in .jpg, .jpeg or .png (any case) are read.

    Args:
        root: folder holding ``train`` and ``val``.
        size: side (or ``[height, width]``) every image is bilinearly resized to.
        grayscale: read one channel (L) instead of three (RGB).
        mean: per-channel (or single) mean subtracted; None: the train split's mean.
        std: per-channel (or single) std divided by; None: the train split's std.
        calib_size: size of the calibration subset drawn from train.
        seed: calibration subset seed.
    """
    hw = _size(size)
    mode = "L" if grayscale else "RGB"
    channels = 1 if grayscale else 3
    mean_arr = _stats(mean, channels, "mean")
    std_arr = _stats(std, channels, "std")
    mean_opt = None if mean_arr is None else [float(v) for v in mean_arr]
    std_opt = None if std_arr is None else [float(v) for v in std_arr]
    folder = Path(root).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(
            f"data.root: {str(folder)!r} is not a folder; set data.root to a folder holding "
            "train/<class>/* and val/<class>/* images"
        )
    split_dirs = {}
    for split in ("train", "val"):
        split_dir = folder / split
        if not split_dir.is_dir():
            raise DataError(
                f"data.root: {str(folder)!r} has no {split!r} subfolder; put the images in "
                f"{split}/<class>/*.png|jpg under it"
            )
        split_dirs[split] = split_dir

    classes = [p.name for p in _class_dirs(split_dirs["train"])]
    if not classes:
        raise DataError(
            f"data.root: {str(split_dirs['train'])!r} has no class folders; "
            "put the images in train/<class>/*"
        )
    index = {name: i for i, name in enumerate(classes)}
    listing: dict[str, list[tuple[Path, int]]] = {}
    for split, split_dir in split_dirs.items():
        files: list[tuple[Path, int]] = []
        for class_dir in _class_dirs(split_dir):
            if class_dir.name not in index:
                raise DataError(
                    f"data.root: val class {class_dir.name!r} has no folder in "
                    f"{str(split_dirs['train'])!r}; add train/{class_dir.name}/ or remove "
                    f"val/{class_dir.name}/"
                )
            label = index[class_dir.name]
            files.extend((path, label) for path in _images_in(class_dir))
        listing[split] = files

    x_train, y_train = _read_split(listing["train"], mode, hw, "train")
    x_val, y_val = _read_split(listing["val"], mode, hw, "val")
    if mean_arr is None:
        mean_arr = x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    if std_arr is None:
        std_arr = x_train.std(axis=(0, 2, 3), dtype=np.float64)
        std_arr[std_arr == 0] = 1.0
    m = mean_arr.astype(np.float32).reshape(1, channels, 1, 1)
    s = std_arr.astype(np.float32).reshape(1, channels, 1, 1)
    x_train = (x_train - m) / s
    x_val = (x_val - m) / s
    return make_splits(
        "imagefolder",
        x_train,
        y_train,
        x_val,
        y_val,
        num_classes=len(classes),
        calib_size=calib_size,
        seed=seed,
        options={
            "root": str(folder),
            "size": list(hw),
            "grayscale": grayscale,
            "mean": mean_opt,
            "std": std_opt,
            "calib_size": calib_size,
            "seed": seed,
        },
    )
