"""Reading photos and transforming them (the only importer of PIL; no torchvision).

Validation and calibration: resize the shorter side to ``resize``, then centre-crop ``size`` —
the usual evaluation of ImageNet-style models. Fine-tuning: a random resized crop and a
horizontal flip. Both end as float32 ``(C, H, W)``, scaled to [0, 1] and normalised as
``(x - mean) / std``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.errors import DataError

# Crops of the fine-tuning transform cover 25-100 % of the image: a short recovery fine-tune of
# a trained model wants mild crops (ImageNet training from scratch uses 8-100 %).
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
HW = tuple[int, int]


def default_resize(size: HW) -> int:
    """The shorter side before the centre crop: ``size`` x 256/224, as ImageNet models expect."""
    return math.ceil(max(size) * 256 / 224)


_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"data.root: cannot read image {str(path)!r} ({type(exc).__name__}: {exc}); "
        "replace or delete the file"
    )


def open_image(path: Path, mode: str):
    """One image, decoded in ``mode`` (L or RGB)."""
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None


def check_image(path: Path) -> None:
    """Open the file's header only (fast): a file that is not an image fails here, at load."""
    try:
        with Image.open(path):
            pass
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from None


@dataclass(frozen=True)
class Normalize:
    """Scale 8-bit pixels to [0, 1], then ``(x - mean) / std`` per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, img) -> np.ndarray:
        arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
        arr = arr[None, :, :] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray((arr - mean) / std)


def _resize_shorter(img, side: int):
    w, h = img.size
    scale = side / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if new == (w, h) else img.resize(new, Image.Resampling.BILINEAR)


def centre_box(width: int, height: int, size: HW) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a centred ``size`` = (height, width) crop."""
    top = int(round((height - size[0]) / 2.0))
    left = int(round((width - size[1]) / 2.0))
    return left, top, left + size[1], top + size[0]


@dataclass(frozen=True)
class EvalTransform:
    """Resize the shorter side to ``resize``, centre-crop ``size`` (height, width)."""

    size: HW
    resize: int

    def __call__(self, img):
        img = _resize_shorter(img, self.resize)
        return img.crop(centre_box(img.size[0], img.size[1], self.size))


@dataclass(frozen=True)
class TrainTransform:
    """A random crop of ``CROP_SCALE`` of the area and ``CROP_RATIO`` aspect, resized to
    ``size``, flipped left-right half the time. Draws from torch's generator, which a
    DataLoader seeds per worker from its own seeded generator."""

    size: HW

    def __call__(self, img):
        box = random_crop_box(img.size[0], img.size[1])
        img = img.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR, box=box)
        if float(torch.rand(())) < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


def random_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box of a random resized crop; the largest centred
    box of an allowed aspect when ten draws do not fit (as torchvision does)."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(*CROP_SCALE))
        ratio = math.exp(float(torch.empty(()).uniform_(*log_ratio)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, ()))
            left = int(torch.randint(0, width - w + 1, ()))
            return left, top, left + w, top + h
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        w, h = int(round(height * CROP_RATIO[1])), height
    else:
        w, h = width, height
    return centre_box(width, height, (h, w))
