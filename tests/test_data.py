"""Data loaders: digits, fashion_mnist (IDX files), imagefolder (PNG/JPEG) and npz."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pruna_search.core.errors import DataError, PrunaSearchError
from pruna_search.data import load, names
from pruna_search.data.fashion_mnist import load_fashion_mnist
from pruna_search.data.imagefolder import load_imagefolder
from pruna_search.data.npz import load_npz

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _rows_of(rows: np.ndarray, table: np.ndarray) -> bool:
    """Whether every row of ``rows`` appears in ``table`` (exactly)."""
    flat = table.reshape(len(table), -1)
    return all(np.any(np.all(flat == r.reshape(1, -1), axis=1)) for r in rows)


# --------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_digits_shapes_and_splits(digits):
    assert digits.input_shape == (1, 32, 32)
    assert digits.num_classes == 10
    assert 340 <= len(digits.val) <= 380
    assert len(digits.train) + len(digits.val) == 1797
    x, y = digits.val_arrays()
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (len(digits.val), 1, 32, 32)
    assert set(y.tolist()) == set(range(10))


def test_digits_calib_is_subset_of_train(digits):
    cx, cy = digits.calib_arrays()
    assert len(cx) == 256 and len(cy) == 256
    tx, ty = digits.train.tensors
    assert _rows_of(cx, tx.numpy())
    assert digits.example(3).shape == (3, 1, 32, 32)


def test_fingerprint_changes_with_options(digits):
    assert load("digits").fingerprint == digits.fingerprint
    assert load("digits", seed=1).fingerprint != digits.fingerprint
    assert load("digits", size=16).fingerprint != digits.fingerprint


def test_unknown_name_suggests():
    with pytest.raises(DataError, match="digits"):
        load("digit")
    assert issubclass(DataError, PrunaSearchError)
    assert {"digits", "fashion_mnist", "imagefolder", "npz"} <= set(names())


def test_unknown_option_is_data_error():
    with pytest.raises(DataError, match="bogus"):
        load("digits", bogus=1)


# -------------------------------------------------------------------------------- fashion_mnist


def _write_idx_images(path: Path, images: np.ndarray, magic: int = 2051) -> None:
    n, rows, cols = images.shape
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, n, rows, cols))
    with gzip.open(path, "wb") as fh:
        fh.write(header + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray, magic: int = 2049) -> None:
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, len(labels)))
    with gzip.open(path, "wb") as fh:
        fh.write(header + labels.astype(np.uint8).tobytes())


def _fake_fashion(root: Path, n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    data = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    _write_idx_images(root / "train-images-idx3-ubyte.gz", data["train_x"])
    _write_idx_labels(root / "train-labels-idx1-ubyte.gz", data["train_y"])
    _write_idx_images(root / "t10k-images-idx3-ubyte.gz", data["test_x"])
    _write_idx_labels(root / "t10k-labels-idx1-ubyte.gz", data["test_y"])
    return data


def test_fashion_mnist_from_idx_files(tmp_path):
    raw = _fake_fashion(tmp_path / "fm")
    d = load("fashion_mnist", root=str(tmp_path / "fm"), calib_size=16)
    assert d.name == "fashion_mnist"
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.train) == 50 and len(d.val) == 20 and len(d.calib) == 16
    x, y = d.val_arrays()
    assert x.dtype == np.float32
    np.testing.assert_array_equal(y, raw["test_y"].astype(np.int64))
    expected = (raw["test_x"].astype(np.float32) / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(x[:, 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d.train.tensors[1].numpy(), raw["train_y"])
    assert d.options["root"] == str((tmp_path / "fm").absolute())


def test_fashion_mnist_resize_subsets_and_fingerprint(tmp_path):
    _fake_fashion(tmp_path / "fm")
    root = str(tmp_path / "fm")
    d = load_fashion_mnist(root=root, size=16, train_size=30, val_size=10, calib_size=8)
    assert d.input_shape == (1, 16, 16)
    assert len(d.train) == 30 and len(d.val) == 10 and len(d.calib) == 8
    full = load_fashion_mnist(root=root, calib_size=8)
    assert d.fingerprint != full.fingerprint
    other_seed = load_fashion_mnist(root=root, size=16, train_size=30, val_size=10, seed=1)
    assert not np.array_equal(other_seed.train.tensors[1].numpy(), d.train.tensors[1].numpy())


def test_fashion_mnist_env_root(tmp_path, monkeypatch):
    _fake_fashion(tmp_path / "env", n_train=12, n_test=5)
    monkeypatch.setenv("PRUNA_SEARCH_FASHION_MNIST", str(tmp_path / "env"))
    d = load_fashion_mnist(calib_size=4)
    assert len(d.train) == 12 and len(d.val) == 5


def test_fashion_mnist_missing_root(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        load_fashion_mnist(root=str(tmp_path / "nowhere"))
    assert "data.root" in str(info.value) and "\n" not in str(info.value)


def test_fashion_mnist_missing_file(tmp_path):
    _fake_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz") as info:
        load_fashion_mnist(root=str(tmp_path / "fm"))
    assert "apt-get install dataset-fashion-mnist" in str(info.value)


def test_fashion_mnist_bad_magic(tmp_path):
    raw = _fake_fashion(tmp_path / "fm")
    _write_idx_images(tmp_path / "fm" / "train-images-idx3-ubyte.gz", raw["train_x"], magic=7)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*magic"):
        load_fashion_mnist(root=str(tmp_path / "fm"))


def test_fashion_mnist_truncated(tmp_path):
    _fake_fashion(tmp_path / "fm")
    path = tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])  # truncated gzip stream
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*re-download"):
        load_fashion_mnist(root=str(tmp_path / "fm"))


def test_fashion_mnist_short_data(tmp_path):
    raw = _fake_fashion(tmp_path / "fm")
    path = tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"
    header = b"".join(int(v).to_bytes(4, "big") for v in (2051, 20, 28, 28))
    with gzip.open(path, "wb") as fh:  # valid gzip, but fewer pixels than the header says
        fh.write(header + raw["test_x"].tobytes()[:-10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(root=str(tmp_path / "fm"))


def test_fashion_mnist_not_gzip(tmp_path):
    _fake_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "train-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_fashion_mnist(root=str(tmp_path / "fm"))


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_data():
    d = load("fashion_mnist", train_size=1000, val_size=500)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.train) == 1000 and len(d.val) == 500 and len(d.calib) == 256
    x, y = d.val_arrays()
    assert set(y.tolist()) == set(range(10))
    assert set(d.train.tensors[1].tolist()) == set(range(10))
    assert -1.0 < float(x.mean()) < 1.0 and 0.5 < float(x.std()) < 1.5


# ---------------------------------------------------------------------------------- imagefolder


def _image(path: Path, hw: tuple[int, int], value: int, mode: str = "RGB") -> None:
    color = (value, 255 - value, value // 2) if mode == "RGB" else value
    Image.new(mode, (hw[1], hw[0]), color).save(path)


def _fake_folder(root: Path) -> None:
    """train: cat (3, mixed png/JPG), dog (2), fox (2); val: cat (1), fox (1)."""
    spec = {
        "train": {
            "cat": [("a.png", (20, 30)), ("b.JPG", (40, 40)), ("c.jpeg", (12, 9))],
            "dog": [("a.png", (32, 32)), ("b.PNG", (50, 25))],
            "fox": [("z.jpg", (16, 16)), ("y.png", (33, 17))],
        },
        "val": {"cat": [("v.png", (24, 24))], "fox": [("w.jpg", (10, 40))]},
    }
    for split, classes in spec.items():
        for value, (cls, files) in enumerate(classes.items()):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for name, hw in files:
                _image(folder / name, hw, 40 + 80 * value, mode="L" if cls == "dog" else "RGB")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_imagefolder_rgb(tmp_path):
    _fake_folder(tmp_path)
    d = load("imagefolder", root=str(tmp_path), size=16, calib_size=4, augment=False, workers=0)
    assert d.input_shape == (3, 16, 16) and d.num_classes == 3
    assert len(d.train) == 7 and len(d.val) == 2 and len(d.calib) == 4
    np.testing.assert_array_equal(d.train.labels, [0, 0, 0, 1, 1, 2, 2])
    x, y = d.val_arrays()
    assert x.dtype == np.float32 and y.tolist() == [0, 2]
    # `train` statistics (the default) normalise the train images as validation sees them
    tx = np.concatenate([b[0] for b in d.batches("train")])
    np.testing.assert_allclose(tx.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(tx.std(axis=(0, 2, 3)), 1.0, atol=1e-3)


def test_imagefolder_grayscale_tuple_size_and_fixed_stats(tmp_path):
    _fake_folder(tmp_path)
    d = load_imagefolder(root=str(tmp_path), size=(8, 12), grayscale=True, mean=0.5, std=0.5)
    assert d.input_shape == (1, 8, 12)
    x, _ = d.val_arrays()
    # val cat is a flat RGB image (40, 215, 20): L = 0.299*40 + 0.587*215 + 0.114*20 ~= 140
    expected = (round(0.299 * 40 + 0.587 * 215 + 0.114 * 20) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(x[0], expected, atol=0.02)
    rgb = load_imagefolder(root=str(tmp_path), size=(8, 12), mean=[0.5, 0.5, 0.5], std=0.5)
    assert rgb.input_shape == (3, 8, 12)
    assert rgb.fingerprint != d.fingerprint


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(DataError, match="data.root.*nowhere"):
        load_imagefolder(root=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagefolder_missing_split(tmp_path, split):
    (tmp_path / ("val" if split == "train" else "train") / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=f"no '{split}' subfolder"):
        load_imagefolder(root=str(tmp_path))


def test_imagefolder_val_class_not_in_train(tmp_path):
    _fake_folder(tmp_path)
    (tmp_path / "val" / "wolf").mkdir()
    _image(tmp_path / "val" / "wolf" / "x.png", (8, 8), 10)
    with pytest.raises(DataError, match="'wolf'"):
        load_imagefolder(root=str(tmp_path))


def test_imagefolder_empty_class(tmp_path):
    _fake_folder(tmp_path)
    (tmp_path / "train" / "owl").mkdir()
    (tmp_path / "train" / "owl" / "readme.md").write_text("no images")
    with pytest.raises(DataError, match="owl.*no images"):
        load_imagefolder(root=str(tmp_path))


def test_imagefolder_unreadable_image(tmp_path):
    _fake_folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_imagefolder(root=str(tmp_path))


def test_imagefolder_bad_options(tmp_path):
    _fake_folder(tmp_path)
    with pytest.raises(DataError, match="data.mean"):
        load_imagefolder(root=str(tmp_path), mean=[0.1, 0.2])
    with pytest.raises(DataError, match="data.std"):
        load_imagefolder(root=str(tmp_path), std=0)
    with pytest.raises(DataError, match="data.size"):
        load_imagefolder(root=str(tmp_path), size="big")


# ------------------------------------------------------------------------------------------ npz


def test_npz_single_arrays_stratified(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)).astype(np.float64)
    y = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load("npz", path=str(tmp_path / "d.npz"), val_fraction=0.2, calib_size=10)
    assert d.input_shape == (6,) and d.num_classes == 4
    assert len(d.train) == 80 and len(d.val) == 20 and len(d.calib) == 10
    _, vy = d.val_arrays()
    assert np.bincount(vy).tolist() == [5, 5, 5, 5]
    assert d.train.tensors[0].dtype.is_floating_point
    assert d.options["path"] == str((tmp_path / "d.npz").absolute())


def test_npz_presplit_and_custom_keys(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "s.npz",
        x_train=rng.normal(size=(30, 2, 5, 5)),
        y_train=np.arange(30) % 3,
        x_val=rng.normal(size=(9, 2, 5, 5)),
        y_val=np.arange(9) % 3,
    )
    d = load_npz(path=str(tmp_path / "s.npz"), num_classes=5, calib_size=300)
    assert d.input_shape == (2, 5, 5) and d.num_classes == 5
    assert len(d.train) == 30 and len(d.val) == 9 and len(d.calib) == 30
    np.testing.assert_array_equal(d.val_arrays()[1], np.arange(9) % 3)

    np.savez(tmp_path / "k.npz", feats=rng.normal(size=(20, 3)), target=np.arange(20) % 2)
    k = load_npz(path=str(tmp_path / "k.npz"), x_key="feats", y_key="target", val_fraction=0.5)
    assert k.input_shape == (3,) and len(k.val) == 10
    assert (
        k.fingerprint
        != load_npz(path=str(tmp_path / "k.npz"), x_key="feats", y_key="target").fingerprint
    )


def test_npz_adds_channel_axis(tmp_path):
    np.savez(tmp_path / "hw.npz", x=np.zeros((20, 7, 9), np.uint8), y=np.arange(20) % 2)
    d = load_npz(path=str(tmp_path / "hw.npz"))
    assert d.input_shape == (1, 7, 9)
    assert d.val_arrays()[0].dtype == np.float32


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="data.path.*nope.npz"):
        load_npz(path=str(tmp_path / "nope.npz"))


def test_npz_not_an_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="not a valid .npz"):
        load_npz(path=str(tmp_path / "bad.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_npz(path=str(tmp_path / "single.npy"))


def test_npz_missing_keys_lists_present(tmp_path):
    np.savez(tmp_path / "k.npz", inputs=np.zeros((4, 2)), labels=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"\['inputs', 'labels'\]"):
        load_npz(path=str(tmp_path / "k.npz"))


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        (np.linspace(0, 1, 10), "integer class indices"),
        (np.array(["a", "b"] * 5), "integer class indices"),
        (np.array([0, 1, -1, 2, 0, 1, 2, 0, 1, 2]), "negative"),
    ],
)
def test_npz_bad_labels(tmp_path, labels, pattern):
    np.savez(tmp_path / "l.npz", x=np.zeros((10, 3)), y=labels)
    with pytest.raises(DataError, match=pattern):
        load_npz(path=str(tmp_path / "l.npz"))


def test_npz_whole_float_labels_accepted(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((10, 3)), y=(np.arange(10) % 2).astype(np.float32))
    d = load_npz(path=str(tmp_path / "f.npz"))
    assert d.num_classes == 2 and d.val_arrays()[1].dtype == np.int64


def test_npz_num_classes_too_small(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((40, 3)), y=np.arange(40) % 10)
    with pytest.raises(DataError) as info:
        load_npz(path=str(tmp_path / "c.npz"), num_classes=3)
    assert str(info.value) == (
        "data.num_classes: 3 but labels go up to 9; set num_classes >= 10 or leave it unset"
    )


def test_npz_length_mismatch_and_bad_shape(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((10, 3)), y=np.zeros(9, np.int64))
    with pytest.raises(DataError, match="10 rows.*9"):
        load_npz(path=str(tmp_path / "m.npz"))
    np.savez(tmp_path / "s.npz", x=np.zeros(10), y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match="shape"):
        load_npz(path=str(tmp_path / "s.npz"))


def test_fingerprint_follows_the_file_contents(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 4)).astype(np.float32), np.arange(40) % 2
    np.savez(path, x=x, y=y)
    first = load("npz", path=str(path)).fingerprint
    assert load("npz", path=str(path)).fingerprint == first
    np.savez(path, x=x + 1, y=y)  # same path and options, new contents
    assert load("npz", path=str(path)).fingerprint != first


def test_empty_calibration_split_is_refused():
    from pruna_search.data import make_splits

    x, y = np.zeros((10, 1, 8, 8), np.float32), np.arange(10) % 2
    with pytest.raises(DataError, match="data.calib_size: 0 must be >= 1"):
        make_splits("tiny", x, y, x, y, calib_size=0)
    with pytest.raises(DataError, match="the train split of 'tiny' is empty"):
        make_splits("tiny", x[:0], y[:0], x, y)
