"""Benchmark streaming a large photo folder: memory and seconds for one pass at 224x224.

Builds an ImageFolder of ``--images`` files (default 50,000) in a temporary folder as symbolic
links to the real photos of imagenette-mini (so every file is a real JPEG), loads it with
``data=imagefolder`` at 224x224 (resize 256, centre crop, ``--workers`` loader processes), and
scores a small exported ONNX model on the whole split batch by batch, as every trial does.
Prints the files per second and the peak resident memory (target: under 2 GB for 50,000
images; held in memory as float32 they would be 28 GiB).

    .venv/bin/python scripts/bench_data.py [--root ../shared/data/imagenette-mini]
        [--images 50000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from memory import Peak
from torch import nn

from pruna_search import data
from pruna_search.export import export_onnx
from pruna_search.measure import onnx_score

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = ROOT.parent / "shared" / "data" / "imagenette-mini"
TARGET_MB = 2048


def link_folder(source: Path, dest: Path, images: int) -> int:
    """``dest/{train,val}/<class>/`` holding ``images`` links (val) to the source photos; train
    gets one link per class (the loader needs a train split)."""
    photos = sorted(source.glob("*/*/*.JPEG"))
    classes = sorted({p.parent.name for p in photos})
    for i in range(images):
        photo = photos[i % len(photos)]
        folder = dest / "val" / photo.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(photo, folder / f"{i:06d}.jpg")
    for name in classes:
        (dest / "train" / name).mkdir(parents=True, exist_ok=True)
        first = next(p for p in photos if p.parent.name == name)
        os.symlink(first, dest / "train" / name / "0.jpg")
    return len(classes)


def small_model(classes: int) -> nn.Module:
    """A cheap convolutional classifier: the benchmark is about reading, not the model."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    ).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.root.is_dir():
        print(f"error: --root {args.root} is not a folder (imagenette-mini)", file=sys.stderr)
        return 2
    peak = Peak(os.getpid())
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        start = time.perf_counter()
        classes = link_folder(args.root, Path(tmp) / "photos", args.images)
        linked = time.perf_counter() - start
        start = time.perf_counter()
        splits = data.load(
            "imagefolder",
            root=str(Path(tmp) / "photos"),
            size=224,
            mean="imagenet",
            std="imagenet",
            workers=args.workers,
            calib_size=8,
        )
        loaded = time.perf_counter() - start
        model = small_model(classes)
        onnx_path = export_onnx(model, splits.example(2), Path(tmp) / "small.onnx")
        start = time.perf_counter()
        with torch.no_grad():
            score = onnx_score(onnx_path, splits.batches("val"))
        passed = time.perf_counter() - start
    peak.stop()
    in_memory_gb = args.images * 3 * 224 * 224 * 4 / 2**30
    print(f"images            {args.images} at 224x224 ({in_memory_gb:.1f} GiB as float32)")
    print(f"links made        {linked:.1f} s")
    print(f"load (list+check) {loaded:.1f} s")
    print(
        f"one scored pass   {passed:.1f} s ({args.images / passed:.0f} images/s, "
        f"{args.workers} workers); top-1 of an untrained model {score:.3f}"
    )
    print(
        f"peak memory       main process {peak.main_mb:.0f} MB; process tree "
        f"{peak.tree_mb:.0f} MB (target < {TARGET_MB} MB)"
    )
    ok = peak.tree_mb < TARGET_MB
    print(f"target            {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
