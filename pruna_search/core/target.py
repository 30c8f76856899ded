"""Targets: what a device really executes and how latency is measured on it.

A target declares, per layer kind, the precisions it runs faster or smaller than fp32
(DESIGN.md decision 3). The search space never offers anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import TargetError
from .names import did_you_mean
from .precision import Precision

# Layer kinds, as analysis reports them: "conv" (Conv2d, depthwise included) and "linear".
CONV = "conv"
LINEAR = "linear"


@dataclass(frozen=True)
class Target:
    """A deployment target: supported precisions and measurement settings.

    Attributes:
        name: short name used in study names and MLflow tags.
        precisions: layer kind -> precisions the target executes for that kind.
        intra_op_threads: ONNX Runtime intra-op threads used for latency (1 is stable on a
            busy machine; see STACK.md).
        batch_size: batch size of the latency measurement.
        warmup: untimed runs before timing.
        repeats: timed runs per model (alternating with the baseline).
        reduce_range: quantize int8 weights to 7 bits. ``None`` decides from the measuring
            CPU: on x86 without VNNI, full-range int8 weights saturate and lose accuracy.
    """

    name: str
    precisions: Mapping[str, tuple[Precision, ...]] = field(default_factory=dict)
    intra_op_threads: int = 1
    batch_size: int = 1
    warmup: int = 20
    repeats: int = 300
    reduce_range: bool | None = None

    def supports(self, kind: str, precision: Precision) -> bool:
        return precision in self.precisions.get(kind, (Precision.FP32,))

    def choices(self, kind: str) -> tuple[Precision, ...]:
        """Precisions offered for a layer kind, fp32 first."""
        return self.precisions.get(kind, (Precision.FP32,))

    def lowest_at_least(self, kind: str, bits: int) -> Precision:
        """The most compressed precision this target runs for ``kind`` with at least ``bits``."""
        ok = [p for p in self.choices(kind) if p.bits >= bits]
        return min(ok, key=lambda p: p.bits) if ok else Precision.FP32


CPU = Target(
    name="cpu",
    precisions={
        # Static QDQ int8 (uint8 activations, int8 per-channel weights) is 1.9-2x on CPU;
        # int4 weight-only runs only as MatMulNBits, i.e. for Linear layers (STACK.md).
        CONV: (Precision.FP32, Precision.INT8),
        LINEAR: (Precision.FP32, Precision.INT8, Precision.INT4),
    },
)

TARGETS: dict[str, Target] = {"cpu": CPU}


def get_target(target: str | Target) -> Target:
    """Resolve a target name (``"cpu"``) or pass a Target through."""
    if isinstance(target, Target):
        return target
    try:
        return TARGETS[str(target)]
    except KeyError:
        raise TargetError(
            f"target: unknown target {target!r}; {did_you_mean(str(target), TARGETS)}"
        ) from None
