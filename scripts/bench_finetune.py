"""Benchmark distilled fine-tuning on ResNet-20 / digits: the teacher-logit cache.

Every trial of a study distils from the same dense model on the same training set, so the
teacher's logits are computed the first time an example is drawn and reused after
(``train.loops``). Prints seconds per step of a 50 %-pruned ResNet-20 fine-tune (batch 64,
distill 0.7) three ways: the old path (DataLoader batches, the teacher run on every batch),
the first trial of a study (cache empty) and every later trial (cache warm); target: later
trials >= 1.2x faster than the old path.

    .venv/bin/python scripts/bench_finetune.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import pruna_search as ps
from pruna_search.compress.prune import prune
from pruna_search.train import loops


class _NotTensorDataset:
    """The same examples, not as a TensorDataset: batches come from a DataLoader and the
    teacher runs on every one (the path every fine-tune took before the cache)."""

    def __init__(self, data: object) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> object:
        return self.data[i]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PRUNA_SEARCH_PROGRESS", "0")

    data = ps.data.load("digits")
    teacher = ps.models.build("resnet20", data=data, pretrained=True).eval()
    info = ps.analyze(teacher, data)
    plan = ps.Config(pruning_ratio=0.5, quantization_bits=32).to_plan(info)
    student, _report = prune(teacher, data.example(), plan.prune, round_to=plan.round_to)

    old_path = _NotTensorDataset(data.train)

    def run(mode: str) -> float:
        if mode == "cold":
            loops._TEACHER_CACHE.clear()
        model = copy.deepcopy(student)
        train_set = old_path if mode == "old" else data.train
        start = time.perf_counter()
        settings = loops.TrainSettings(steps=args.steps, lr=0.01, distill=0.7)
        loops.train(model, train_set, settings, teacher=teacher)
        return (time.perf_counter() - start) / args.steps

    modes = ("old", "cold", "warm")
    run("warm")  # warm up torch and fill the cache
    rows = [[run(mode) for mode in modes] for _ in range(args.repeats)]  # interleaved
    median = {m: statistics.median(r[i] for r in rows) for i, m in enumerate(modes)}
    print(
        f"ResNet-20 50 % pruned, digits ({len(data.train)} examples), {args.steps} steps, "
        f"median of {args.repeats}"
    )
    print(f"  old path (teacher every step)  {median['old'] * 1000:7.1f} ms/step")
    print(f"  first trial (cache cold)       {median['cold'] * 1000:7.1f} ms/step")
    print(f"  later trials (cache warm)      {median['warm'] * 1000:7.1f} ms/step")
    ratio = median["old"] / median["warm"]
    ok = ratio >= 1.2
    print(f"  later trials {ratio:.2f}x faster (target >= 1.2x): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
