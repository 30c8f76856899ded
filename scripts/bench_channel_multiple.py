"""Benchmark the channel multiple per precision: which ``space.round_to`` is faster for fp32 and
for int8 on this machine?

ONNX Runtime's CPU kernels pad channels to their own block, and the int8 (QLinearConv) block is
not the fp32 one, so the same pruning ratio rounded to 8 or to 16 channels runs at different
speeds per precision. Builds the trained ResNet-20 on digits, uniform plans at ``--ratios`` x
fp32 / int8 x channel multiple 8 / 16 (no fine-tune: latency does not depend on the weights),
and times each against dense fp32 with ``compare_latency`` on the CPU target's default protocol
(never cached) in ``--rounds`` rounds, every other one in reversed order.

Prints per configuration the kept channels per stage, p10 ms and speedup per round, and per
ratio and precision the faster multiple with the mean speedups: the figures behind the default
``space.round_to: {fp32: 8, int8: 16}``.

    .venv/bin/python scripts/bench_channel_multiple.py [--ratios 0.5,0.625,0.75] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import pruna_search as ps
from pruna_search.core import hardware
from pruna_search.core.plan import Finetune, Plan
from pruna_search.core.target import CPU
from pruna_search.measure.latency import compare_latency
from pruna_search.search.evaluate import Evaluator, EvaluatorOptions

PRECISIONS = (("fp32", 32), ("int8", 8))
MULTIPLES = (8, 16)


def ratios_arg(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of ratios") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: ratios must be in (0, 1)")
    return values


def stage_channels(evaluator: Evaluator, plan: Plan) -> str:
    """Kept channels of each stage's first group, e.g. ``8/16/32``."""
    kept = {}
    for group in evaluator.info.groups:
        stage = group.name.split(".", 1)[0]
        kept.setdefault(stage, plan.kept(group.channels, group.name, group.members))
    return "/".join(str(kept[s]) for s in sorted(kept) if s.startswith("layer"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", type=ratios_arg, default=(0.5, 0.625, 0.75))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: {args.rounds} must be >= 1")
    print(f"machine: {hardware.fingerprint(threads=CPU.intra_op_threads)}")
    print(f"target cpu, default protocol: {CPU.intra_op_threads} thread, batch {CPU.batch_size}")
    data = ps.data.load("digits")
    model = ps.models.build("resnet20", data=data, pretrained=True)
    no_finetune = Finetune(steps=0, bn_recalibration=0)
    with tempfile.TemporaryDirectory(prefix="bench_multiple_") as tmp:
        evaluator = Evaluator(
            model, data, CPU, workdir=Path(tmp), options=EvaluatorOptions(measure_latency=False)
        )
        configs = []
        start = time.perf_counter()
        for ratio, (precision, bits), multiple in itertools.product(
            args.ratios, PRECISIONS, MULTIPLES
        ):
            plan = Plan.uniform(
                evaluator.info,
                target=CPU,
                pruning_ratio=ratio,
                quantization_bits=bits,
                finetune=no_finetune,
                round_to=multiple,
            )
            name = f"r{ratio:g}-{precision}-m{multiple}".replace(".", "_")
            path = evaluator.evaluate(plan, name=name).candidate.onnx_path
            configs.append(((ratio, precision, multiple), stage_channels(evaluator, plan), path))
        print(f"export: {len(configs)} configurations in {time.perf_counter() - start:.1f} s")
        speedups: dict[tuple, list[float]] = {key: [] for key, _, _ in configs}
        p10s: dict[tuple, list[float]] = {key: [] for key, _, _ in configs}
        flagged: set[tuple] = set()
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            start = time.perf_counter()
            for key, _, path in order:
                result = compare_latency(path, evaluator.dense_path, evaluator.timing_input, CPU)
                speedups[key].append(result.speedup)
                p10s[key].append(result.candidate.p10)
                if result.noisy:
                    flagged.add(key)
            print(f"  round {r + 1}: {time.perf_counter() - start:.1f} s")
    header = f"{'ratio':>5} {'prec':>4} {'mult':>4} {'channels':>9}"
    header += "".join(f"  p10 ms r{r + 1}  speedup r{r + 1}" for r in range(args.rounds))
    print(f"\n{header}  noisy")
    print("-" * len(header) + "-------")
    for key, channels, _ in configs:
        ratio, precision, multiple = key
        row = f"{ratio:>5g} {precision:>4} {multiple:>4} {channels:>9}"
        for p10, speedup in zip(p10s[key], speedups[key], strict=True):
            row += f"  {p10:>9.3f}  {speedup:>9.3f}x"
        print(f"{row}  {'yes' if key in flagged else 'no'}")
    print("\nfaster channel multiple (mean speedup over the rounds):")
    wins = {precision: 0 for precision, _ in PRECISIONS}
    for ratio, (precision, _) in itertools.product(args.ratios, PRECISIONS):
        by = {m: statistics.mean(speedups[(ratio, precision, m)]) for m in MULTIPLES}
        best = max(by, key=by.get)
        wins[precision] += best == 16
        figures = ", ".join(f"{m}: {by[m]:.3f}x" for m in MULTIPLES)
        print(f"  {ratio:g} {precision}: {best} ({figures}; {by[best] / min(by.values()):.3f}x)")
    for precision, _ in PRECISIONS:
        print(f"{precision}: multiple 16 faster at {wins[precision]} of {len(args.ratios)} ratios")


if __name__ == "__main__":
    main()
