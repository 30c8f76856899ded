"""Arrays from a ``.npz`` file: ``x_train/y_train/x_val/y_val`` or ``x``/``y`` split here."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..core.imports import keyword_settings
from .base import DataSplits, make_splits
from .digits import stratified_split

SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val")
_FIX = "save it with numpy.savez(path, x=..., y=...)"


def _inputs(x: np.ndarray, key: str) -> np.ndarray:
    """Inputs as (N, F) or (N, C, H, W); (N, H, W) gains a channel axis."""
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"data.path: array {key!r} has dtype {x.dtype}; inputs must be numeric arrays"
        )
    if x.ndim == 3:
        x = x[:, None, :, :]
    if x.ndim not in (2, 4):
        raise DataError(
            f"data.path: array {key!r} has shape {x.shape}; inputs must be (N, features), "
            "(N, H, W) or (N, C, H, W)"
        )
    return x


def _labels(y: np.ndarray, key: str) -> np.ndarray:
    """Labels as int64 (N,): integer dtype (or whole-valued floats), none negative."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"data.path: labels {key!r} have shape {y.shape}; store one class index per example"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(
                f"data.path: labels {key!r} must be integer class indices, got non-integer values "
                f"(dtype {y.dtype}); store class indices 0..K-1"
            )
    elif y.dtype.kind not in "iu":
        raise DataError(
            f"data.path: labels {key!r} have dtype {y.dtype}; store integer class indices 0..K-1"
        )
    if len(y) and y.min() < 0:
        raise DataError(
            f"data.path: labels {key!r} must not be negative (found {int(y.min())}); "
            "store class indices 0..K-1"
        )
    return y.astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class NpzOptions:
    """The options of ``load_npz``.

    Attributes:
        path: the ``.npz`` file.
        x_key: inputs key when the archive is not pre-split.
        y_key: labels key when the archive is not pre-split.
        val_fraction: stratified fraction held out for validation (not pre-split only).
        num_classes: number of classes; None: max label + 1.
        calib_size: size of the calibration subset drawn from train.
        seed: split and calibration seed.
    """

    path: str
    x_key: str = "x"
    y_key: str = "y"
    val_fraction: float = 0.2
    num_classes: int | None = None
    calib_size: int = 256
    seed: int = 0


def load_npz(**options: Any) -> DataSplits:
    """Load inputs and labels from an ``.npz`` archive.

    When the archive holds ``x_train``, ``y_train``, ``x_val`` and ``y_val`` they are used as
    given; otherwise ``x_key``/``y_key`` are split into train and val (stratified by class).
    Inputs are used as stored (no normalization): (N, F) for MLPs or (N, C, H, W); an
    (N, H, W) array gains a channel axis.

    Args:
        options: the fields of ``NpzOptions`` (``path`` required), as keywords.
    """
    return _load(keyword_settings(NpzOptions, options, caller="load_npz"))


def _load(opts: NpzOptions) -> DataSplits:
    file = Path(opts.path).expanduser().absolute()
    if not file.is_file():
        raise DataError(f"data.path: {str(file)!r} does not exist; set data.path to an .npz file")
    _check_num_classes(opts.num_classes)
    with _open(file) as archive:
        x_train, y_train, x_val, y_val = _arrays(archive, file, opts)
    _check_label_range(opts.num_classes, y_train, y_val)
    return make_splits(
        "npz",
        x_train,
        y_train,
        x_val,
        y_val,
        num_classes=opts.num_classes,
        calib_size=opts.calib_size,
        seed=opts.seed,
        options={
            "path": str(file),
            "x_key": opts.x_key,
            "y_key": opts.y_key,
            "val_fraction": opts.val_fraction,
            "num_classes": opts.num_classes,
            "calib_size": opts.calib_size,
            "seed": opts.seed,
        },
    )


def _check_num_classes(num_classes: object) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise DataError(f"data.num_classes: {num_classes!r} must be a positive integer or unset")


def _open(file: Path) -> np.lib.npyio.NpzFile:
    """The archive at ``file``; a DataError when it is a .npy file or no .npz archive."""
    with open(file, "rb") as fh:
        head = fh.read(6)
    if head == b"\x93NUMPY":
        raise DataError(
            f"data.path: {str(file)!r} holds a single array (.npy), not an .npz archive; {_FIX}"
        )
    if not zipfile.is_zipfile(file):
        raise DataError(
            f"data.path: {str(file)!r} is not a valid .npz file (not a zip archive); {_FIX}"
        )
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"data.path: {str(file)!r} is not a valid .npz file ({exc}); {_FIX}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data.path: {str(file)!r} is not an .npz archive; {_FIX}")
    return archive


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _arrays(archive: np.lib.npyio.NpzFile, file: Path, opts: NpzOptions) -> Arrays:
    """``x_train, y_train, x_val, y_val``: as stored, or ``x_key``/``y_key`` split here."""
    present = sorted(archive.files)

    def get(key: str) -> np.ndarray:
        try:
            return archive[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"data.path: cannot read {key!r} from {str(file)!r} ({exc}); "
                "re-save the file with numpy.savez"
            ) from None

    if all(k in present for k in SPLIT_KEYS):
        return _stored_splits(get)
    if opts.x_key in present and opts.y_key in present:
        x = _inputs(get(opts.x_key), opts.x_key)
        y = _labels(get(opts.y_key), opts.y_key)
        return _split_here(x, y, opts)
    raise DataError(
        f"data.path: {str(file)!r} has keys {present}; it needs "
        f"{', '.join(SPLIT_KEYS)} or {opts.x_key!r} and {opts.y_key!r} (set data.x_key / "
        "data.y_key to the right names)"
    )


def _stored_splits(get: Callable[[str], np.ndarray]) -> Arrays:
    x_train, x_val = _inputs(get("x_train"), "x_train"), _inputs(get("x_val"), "x_val")
    y_train, y_val = _labels(get("y_train"), "y_train"), _labels(get("y_val"), "y_val")
    for xs, ys, split in ((x_train, y_train, "train"), (x_val, y_val, "val")):
        if len(xs) != len(ys):
            raise DataError(
                f"data.path: 'x_{split}' has {len(xs)} rows but 'y_{split}' has {len(ys)}; "
                "store one label per example"
            )
    return x_train, y_train, x_val, y_val


def _split_here(x: np.ndarray, y: np.ndarray, opts: NpzOptions) -> Arrays:
    if len(x) != len(y):
        raise DataError(
            f"data.path: {opts.x_key!r} has {len(x)} rows but {opts.y_key!r} has {len(y)}; "
            "store one label per example"
        )
    if not 0.0 < opts.val_fraction < 1.0:
        raise DataError(f"data.val_fraction: {opts.val_fraction!r} must be between 0 and 1")
    train_idx, val_idx = stratified_split(y, opts.val_fraction, opts.seed)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def _check_label_range(num_classes: int | None, y_train: np.ndarray, y_val: np.ndarray) -> None:
    top = max((int(a.max()) for a in (y_train, y_val) if len(a)), default=-1)
    if num_classes is not None and num_classes < top + 1:
        raise DataError(
            f"data.num_classes: {num_classes} but labels go up to {top}; "
            f"set num_classes >= {top + 1} or leave it unset"
        )
