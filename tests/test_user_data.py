"""A user's own photos: ImageFolder read per batch, the transforms, subsets, normalisation
presets, the metric, and where the fine-tune runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pruna_search import data
from pruna_search.core.errors import ConfigError, DataError, MeasurementError
from pruna_search.data.imagefolder import PRESETS, load_imagefolder
from pruna_search.data.images import EvalTransform, TrainTransform, random_crop_box
from pruna_search.data.subset import balanced_subset, per_class
from pruna_search.measure import metric
from pruna_search.search.objectives import make_objective
from pruna_search.train import Compute

IMAGENETTE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette-mini"


def make_folder(root: Path, per_class: dict[str, tuple[int, int]], side: int = 40) -> Path:
    """JPEG photos of noise, ``per_class[name] = (train, val)`` images, each class its own
    tint so a model can tell them apart."""
    rng = np.random.default_rng(0)
    for c, (name, counts) in enumerate(per_class.items()):
        for split, count in zip(("train", "val"), counts, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 128, (side, side + 8, 3)) + 40 * c
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


# ------------------------------------------------------------------------------- transforms


def test_centre_crop_keeps_the_centre() -> None:
    """A 60x40 image with a marked centre: resize the shorter side to 40 (no change), then
    crop 20x20 from the middle: the marked 20x20 block is exactly what is kept."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10:30, 20:40] = 255
    out = np.asarray(EvalTransform((20, 20), 40)(Image.fromarray(pixels)))
    assert out.shape == (20, 20, 3) and out.min() == 255
    # the shorter side goes to `resize` and the aspect is kept before the crop
    tall = EvalTransform((16, 16), 32)(Image.new("RGB", (64, 128)))
    assert tall.size == (16, 16)


def test_random_resized_crop_and_flip_are_seeded_and_in_bounds() -> None:
    img = Image.fromarray(
        np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)
    )
    torch.manual_seed(3)
    first = [np.asarray(TrainTransform((24, 24))(img)) for _ in range(4)]
    torch.manual_seed(3)
    again = [np.asarray(TrainTransform((24, 24))(img)) for _ in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(first[0], f) for f in first[1:])
    for _ in range(50):
        left, top, right, bottom = random_crop_box(64, 48)
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 48
        assert (right - left) * (bottom - top) >= 0.2 * 64 * 48


# ---------------------------------------------------------------------------------- subsets


def test_subsets_are_class_balanced_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 8, 40])
    pick = balanced_subset(labels, 26, seed=1)
    counts = per_class(labels[pick])
    assert sum(counts.values()) == 26 and set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) <= 1
    # a class with too few images gives what it has; the others share the rest
    counts = per_class(labels[balanced_subset(labels, 80, seed=1)])
    assert counts[2] == 8 and sum(counts.values()) == 80
    assert max(counts[c] for c in (0, 1, 3)) - min(counts[c] for c in (0, 1, 3)) <= 1
    assert np.array_equal(balanced_subset(labels, 26, seed=1), pick)
    assert not np.array_equal(balanced_subset(labels, 26, seed=2), pick)


def test_imagefolder_subsets_count_or_fraction(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": (12, 6), "b": (12, 6), "c": (12, 6)})
    d = load_imagefolder(root=str(root), size=16, train_subset=9, val_subset=0.5, workers=0)
    assert len(d.train) == 9 and len(d.val) == 9
    assert per_class(d.train.labels) == {0: 3, 1: 3, 2: 3}
    assert per_class(d.val.labels) == {0: 3, 1: 3, 2: 3}
    with pytest.raises(DataError, match="data.val_subset: 100 but the split has 18 images"):
        load_imagefolder(root=str(root), size=16, val_subset=100)
    with pytest.raises(DataError, match="data.train_subset: -3 must be a number of images"):
        load_imagefolder(root=str(root), size=16, train_subset=-3)


# ---------------------------------------------------------------------- streaming and memory


def test_imagefolder_streams_batches_in_order_with_workers(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": (10, 7), "b": (10, 7)})
    d = load_imagefolder(root=str(root), size=32, mean="half", std="half", workers=2)
    assert d.input_shape == (3, 32, 32) and len(d.val) == 14
    batches = list(d.batches("val", batch_size=4))
    assert [len(y) for _, y in batches] == [4, 4, 4, 2]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.tolist() == [0] * 7 + [1] * 7
    assert x.min() >= -1.0 and x.max() <= 1.0  # (x - 0.5) / 0.5
    # the same stream as reading example by example in the main process
    single = load_imagefolder(root=str(root), size=32, mean="half", std="half", workers=0)
    np.testing.assert_array_equal(single.val_arrays()[0], x)
    np.testing.assert_array_equal(d.head(3), x[:3])


STREAM_SCRIPT = """
import json, resource, sys
from pruna_search import data
d = data.load("imagefolder", root=sys.argv[1], size=128, workers=0, mean="imagenet",
              std="imagenet")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seen = 0
for split in ("train", "val"):
    for x, y in d.batches(split, batch_size=16):
        seen += len(y)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seen": seen, "grew_kb": after - before}))
"""


def test_reading_a_split_holds_only_the_batches_in_flight(tmp_path: Path) -> None:
    """400 photos at 128x128 are 75 MiB as float32 arrays; streaming them in batches of 16
    grows the process's peak memory by a fraction of that (measured in a fresh process)."""
    root = make_folder(tmp_path, {"a": (150, 50), "b": (150, 50)}, side=140)
    in_memory_kb = 400 * 3 * 128 * 128 * 4 / 1024
    proc = subprocess.run(
        [sys.executable, "-c", STREAM_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.splitlines()[-1])
    assert figures["seen"] == 400
    assert figures["grew_kb"] < in_memory_kb / 4, figures


# ----------------------------------------------------------------------------- normalising


def test_normalisation_presets_and_numbers(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": (4, 2), "b": (4, 2)})
    raw = load_imagefolder(root=str(root), size=16, mean=0.0, std=1.0, workers=0)
    x01 = raw.val_arrays()[0]
    for preset, (mean, std) in PRESETS.items():
        d = load_imagefolder(root=str(root), size=16, mean=preset, std=preset, workers=0)
        expected = (x01 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
        np.testing.assert_allclose(d.val_arrays()[0], expected, atol=1e-5)
        assert d.options["mean"] == list(mean) and d.fingerprint != raw.fingerprint
    with pytest.raises(DataError, match="data.mean: 'imagenett' is not a preset; use one of"):
        load_imagefolder(root=str(root), mean="imagenett")
    with pytest.raises(DataError, match="data.size: 0 must be positive"):
        load_imagefolder(root=str(root), size=0)
    with pytest.raises(DataError, match="data.resize: 100 must be an integer >= the crop size"):
        load_imagefolder(root=str(root), size=224, resize=100)
    with pytest.raises(DataError, match="data.workers: -1"):
        load_imagefolder(root=str(root), workers=-1)


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"only": (3, 1)})
    with pytest.raises(DataError, match="has 1 class\\(es\\); a classifier needs at least 2"):
        load_imagefolder(root=str(root), size=16)


def test_unreadable_image_found_at_load(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": (3, 1), "b": (3, 1)})
    (root / "val" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="cannot read image .*broken.jpg.*replace or delete"):
        load_imagefolder(root=str(root), size=16)


def test_a_file_that_breaks_while_streaming_is_one_line_from_the_worker(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a": (3, 2), "b": (3, 2)})
    d = load_imagefolder(root=str(root), size=16, workers=1, mean="half", std="half")
    (root / "val" / "b" / "1.jpg").write_bytes((root / "val" / "b" / "1.jpg").read_bytes()[:40])
    with pytest.raises(DataError) as info:
        list(d.batches("val", batch_size=2))
    assert str(info.value).startswith("data.root: cannot read image") and "\n" not in str(
        info.value
    )


# ----------------------------------------------------------------------------------- metric


def test_top1_top5_and_a_user_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logits = np.array([[0.1, 0.9, 0.0, 0, 0, 0], [0.8, 0.1, 0.05, 0.04, 0.01, 0.0]], np.float32)
    labels = np.array([1, 5])
    assert metric("top1")(logits, labels) == 0.5
    assert metric("top5")(logits, labels) == 0.5  # label 5 has the lowest logit of six
    assert metric("top5")(logits, np.array([1, 4])) == 1.0
    (tmp_path / "my_metrics.py").write_text(
        "import numpy as np\n"
        "def balanced(logits, labels):\n"
        "    hit = logits.argmax(1) == labels\n"
        "    return float(np.mean([hit[labels == c].mean() for c in np.unique(labels)]))\n"
        "def broken(logits, labels):\n"
        "    return float('nan')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert metric("my_metrics:balanced")(logits, labels) == 0.5
    with pytest.raises(MeasurementError, match="returned nan; it must return a finite number"):
        metric("my_metrics:broken")(logits, labels)
    with pytest.raises(ConfigError, match="objective.metric: 'top3' is unknown; use top1, top5"):
        metric("top3")
    with pytest.raises(ConfigError, match="objective.metric: top5 needs more than 5 classes"):
        metric("top5").check(5)
    with pytest.raises(
        ConfigError, match="objective.metric: 'my_metrics' has no 'nope'.*balanced"
    ):
        make_objective(metric="my_metrics:nope")


def test_a_val_split_too_small_for_the_budget() -> None:
    objective = make_objective(max_accuracy_drop=0.01)
    assert objective.small_val(300) is None
    problem = objective.small_val(120)
    assert problem is not None and "cannot be judged on 120 val images" in problem
    assert "it needs at least 300" in problem
    assert make_objective(name="best_within_latency", min_speedup=2.0).small_val(10) is None


# ------------------------------------------------------------------------ where it fine-tunes


def test_finetune_device() -> None:
    assert Compute.resolve("cpu") == Compute("cpu", None)
    auto = Compute.resolve("auto", "bf16")
    if torch.cuda.is_available():
        assert auto == Compute("cuda", "bf16")
    else:
        assert auto == Compute("cpu", None)  # amp is for CUDA; the CPU runs as before
        with pytest.raises(ConfigError, match="finetune.device: 'cuda' but torch .* sees no"):
            Compute.resolve("cuda")
        with pytest.raises(ConfigError, match="finetune.device: 'cuda:1' but torch"):
            Compute.resolve("cuda:1")
    with pytest.raises(ConfigError, match="finetune.device: 'tpu' is unknown"):
        Compute.resolve("tpu")
    with pytest.raises(ConfigError, match="finetune.amp: 'int8' is unknown"):
        Compute.resolve("cpu", "int8")


# ------------------------------------------------------------------------- real photos, slow


@pytest.mark.slow
@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason=f"{IMAGENETTE} is not here (shared data)")
def test_imagenette_mini_at_224(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real 224x224 photos: class-balanced subsets, resize-then-crop, and one compressed
    model scored batch by batch on the exported ONNX file."""
    import pruna_search as ps

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    d = data.load(
        "imagefolder",
        root=str(IMAGENETTE),
        size=224,
        mean="imagenet",
        std="imagenet",
        train_subset=200,
        val_subset=100,
        calib_size=32,
    )
    assert d.input_shape == (3, 224, 224) and d.num_classes == 10
    assert per_class(d.val.labels) == {c: 10 for c in range(10)}
    x, y = next(d.batches("val"))
    assert x.shape == (16, 3, 224, 224) and abs(float(x.mean())) < 1.0
    model = ps.models.build(
        "fixtures_models:tiny_factory",
        data=d,
        model_kwargs={"num_classes": 10, "in_channels": 3, "width": 32},
    )
    result = ps.optimize(
        model,
        ps.Config(pruning_ratio=0.5, quantization_bits=8, finetune_steps=4),
        data=d,
        measure_latency=False,
        verbose=False,
    )
    assert result.plan.finetune.steps == 4
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.prune_report is not None
