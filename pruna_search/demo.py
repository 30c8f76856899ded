"""``make run`` (until the search lands): the one-shot API on digits, before/after table.

python -m pruna_search.demo [--model resnet20] [--ratio 0.5] [--bits 8] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
import time

from . import Config, data, models, optimize
from .core.errors import PrunaSearchError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pruna_search.demo", description=__doc__)
    parser.add_argument("--model", default="resnet20", help="built-in model (default resnet20)")
    parser.add_argument("--data", default="digits", help="built-in data set (default digits)")
    parser.add_argument("--ratio", type=float, default=0.5, help="pruning ratio per group")
    parser.add_argument("--bits", type=int, default=8, choices=(32, 8, 4), help="precision")
    parser.add_argument("--steps", type=int, default=300, help="recovery fine-tune steps")
    parser.add_argument("--output", default=None, help="write the optimized ONNX model here")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        splits = data.load(args.data)
        print(
            f"data    {args.data}: {len(splits.train)} train / {len(splits.val)} val, "
            f"input {splits.input_shape}, {splits.num_classes} classes"
        )
        model = models.build(args.model, data=splits, pretrained=True)
        config = Config(
            pruning_ratio=args.ratio, quantization_bits=args.bits, finetune_steps=args.steps
        )
        print(
            f"config  prune {args.ratio:.0%} of every group, {args.bits}-bit, "
            f"{args.steps} fine-tune steps"
        )
        result = optimize(model, config, data=splits)
        print()
        print(result.table())
        print()
        print("seconds " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
        if args.output:
            print(f"wrote   {result.export(args.output)}")
        print(f"total   {time.perf_counter() - start:.1f} s")
    except PrunaSearchError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
