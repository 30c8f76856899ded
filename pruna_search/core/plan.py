"""The Plan: how much to prune each dependency group and which precision each layer runs at.

A Plan is keyed by qualified module names only (design decision 1), so it can be written to
YAML/JSON, logged, diffed and replayed on a fresh copy of the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PlanError
from .model_info import ModelInfo
from .names import did_you_mean
from .precision import Precision
from .target import Target, get_target

MAX_RATIO = 0.95
OPTIMIZERS = ("sgd", "adam", "adamw")


def kept_channels(channels: int, ratio: float, round_to: int) -> int:
    """Channels kept when ``ratio`` of ``channels`` are removed, as a multiple of ``round_to``.

    Never fewer than ``round_to`` (or all of them, when the layer is smaller than that).
    """
    if ratio <= 0 or channels <= round_to:
        return channels
    kept = int(round(channels * (1.0 - ratio) / round_to)) * round_to
    return min(max(kept, round_to), channels)


RoundTo = int | Mapping[str, int]
# ONNX Runtime's CPU kernels (scripts/bench_channel_multiple.py, docs/benchmarks.md): fp32
# convolutions are fastest at multiples of 8, int8 ones at 16
DEFAULT_ROUND_TO: Mapping[str, int] = MappingProxyType({"fp32": 8, "int8": 16})


def parse_round_to(value: object, *, field: str = "round_to") -> int | dict[str, int]:
    """A channel multiple for every layer (``8``) or one per precision (``{fp32: 8, int8: 16}``:
    a group is rounded to the largest multiple among the precisions of the layers that produce
    its channels; precisions not named take fp32's). Raises PlanError naming ``field``."""
    example = "e.g. 8, or {fp32: 8, int8: 16} for one multiple per precision"
    if isinstance(value, Mapping):
        multiples: dict[str, int] = {}
        for key, multiple in value.items():
            precision = Precision.parse(key, field=f"{field}[{key!r}]")
            multiples[precision.value] = _multiple(multiple, f"{field}[{key!r}]", example)
        if Precision.FP32.value not in multiples:
            raise PlanError(f"{field}: {dict(value)!r} has no fp32 multiple; {example}")
        if len(set(multiples.values())) == 1:
            return multiples[Precision.FP32.value]  # the same for all: a single multiple
        return {p.value: multiples[p.value] for p in Precision if p.value in multiples}
    return _multiple(value, field, example)


def _multiple(value: object, field: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
            return int(value)
        raise PlanError(f"{field}: {value!r} must be an integer >= 1; {example}")
    return value


@dataclass(frozen=True)
class Finetune:
    """Recovery fine-tuning after pruning.

    Attributes:
        steps: optimizer steps (0 disables fine-tuning).
        lr: peak learning rate (cosine decay to 0 over ``steps``).
        optimizer: ``sgd`` (momentum 0.9), ``adam`` or ``adamw``.
        batch_size: training batch size.
        weight_decay: L2 / decoupled weight decay.
        bn_recalibration: batches that move the trained BatchNorm statistics by the change
            pruning caused, measured against the dense model, before the fine-tune and again
            after it (0 disables it). Cheap and
            recovers much of the accuracy lost to pruning.
        distill: weight of knowledge distillation from the dense model (0 disables it; the
            teacher's forward pass roughly doubles the cost of a step). Measured on ResNet-20 /
            digits, 50 % pruned, 300 steps: 98.89 % with 0.7 against 98.33 % without.
        seed: seed for batch order.
    """

    steps: int = 0
    lr: float = 0.01
    optimizer: str = "sgd"
    batch_size: int = 64
    weight_decay: float = 5e-4
    bn_recalibration: int = 10
    distill: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise PlanError(f"finetune.steps: {self.steps!r} must be an integer >= 0")
        if not self.lr > 0:
            raise PlanError(f"finetune.lr: {self.lr!r} must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise PlanError(
                f"finetune.optimizer: {self.optimizer!r} is unknown; "
                f"{did_you_mean(self.optimizer, OPTIMIZERS)}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise PlanError(f"finetune.batch_size: {self.batch_size!r} must be an integer >= 1")
        if not 0.0 <= self.distill <= 1.0:
            raise PlanError(f"finetune.distill: {self.distill!r} must be in [0, 1]")
        if not isinstance(self.bn_recalibration, int) or self.bn_recalibration < 0:
            raise PlanError(
                f"finetune.bn_recalibration: {self.bn_recalibration!r} must be an integer >= 0"
            )


def _check_ratio(name: str, ratio: object, *, field: str | None = None) -> float:
    where = field or f"prune[{name!r}]"
    try:
        value = float(ratio)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PlanError(
            f"{where}: {ratio!r} is not a number; use a ratio in [0, {MAX_RATIO}]"
        ) from None
    if not 0.0 <= value <= MAX_RATIO:
        raise PlanError(f"{where}: ratio {value} is out of range; use a value in [0, {MAX_RATIO}]")
    return value


@dataclass(frozen=True)
class Plan:
    """Per-group pruning ratios and per-layer precisions, plus the fine-tune budget.

    Attributes:
        prune: dependency group (root module name) -> fraction of channels removed.
            Groups not named are not pruned.
        precision: layer (module name) -> precision. Layers not named stay fp32.
        finetune: the recovery fine-tune budget.
        round_to: kept channel counts are rounded to a multiple of this (odd counts lose
            most of the CPU speedup, see docs/design.md), or one multiple per precision (default
            ``{"fp32": 8, "int8": 16}``: int8 kernels pad channels to their own block, see
            ``multiple_of``).
    """

    prune: Mapping[str, float] = field(default_factory=dict)
    precision: Mapping[str, Precision] = field(default_factory=dict)
    finetune: Finetune = field(default_factory=Finetune)
    round_to: RoundTo = field(default_factory=lambda: dict(DEFAULT_ROUND_TO))

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "prune", {str(k): _check_ratio(str(k), v) for k, v in dict(self.prune).items()}
        )
        object.__setattr__(
            self,
            "precision",
            {
                str(k): Precision.parse(v, field=f"precision[{k!r}]")
                for k, v in dict(self.precision).items()
            },
        )
        if isinstance(self.finetune, Mapping):
            object.__setattr__(self, "finetune", _finetune_from(self.finetune))
        object.__setattr__(self, "round_to", parse_round_to(self.round_to))

    # ----------------------------------------------------------------- construction
    @classmethod
    def uniform(
        cls,
        model: ModelInfo,
        *,
        target: str | Target = "cpu",
        pruning_ratio: float = 0.0,
        quantization_bits: int = 32,
        finetune: Finetune | None = None,
        round_to: RoundTo = DEFAULT_ROUND_TO,
    ) -> Plan:
        """The same ratio for every group and, per layer, the most compressed precision the
        target runs with at least ``quantization_bits`` bits (e.g. 4 bits: int4 on Linear
        layers, int8 on Conv layers of the CPU target). The classifier is never pruned and is
        quantized like the rest."""
        target = get_target(target)
        if quantization_bits not in (4, 8, 32):
            raise PlanError(
                f"quantization_bits: {quantization_bits!r} is not supported; use 32, 8 or 4"
            )
        ratio = _check_ratio("*", pruning_ratio, field="pruning_ratio")
        prune = {g.name: ratio for g in model.groups} if ratio > 0 else {}
        precision = {}
        if quantization_bits < 32:
            for layer in model.layers:
                chosen = target.lowest_at_least(layer.kind, quantization_bits)
                if chosen is not Precision.FP32:
                    precision[layer.name] = chosen
        return cls(
            prune=prune, precision=precision, finetune=finetune or Finetune(), round_to=round_to
        )

    def with_finetune(self, finetune: Finetune) -> Plan:
        return replace(self, finetune=finetune)

    # ----------------------------------------------------------------- queries
    def ratio(self, group: str) -> float:
        return self.prune.get(group, 0.0)

    def precision_of(self, layer: str) -> Precision:
        return self.precision.get(layer, Precision.FP32)

    def multiple_of(self, layers: Iterable[str]) -> int:
        """The channel multiple of a group whose channels ``layers`` produce (its root and
        coupled members): the largest among their precisions' multiples."""
        if isinstance(self.round_to, int):
            return self.round_to
        fp32 = self.round_to[Precision.FP32.value]
        return max(
            (self.round_to.get(self.precision_of(layer).value, fp32) for layer in layers),
            default=fp32,
        )

    def kept(self, channels: int, group: str, members: Iterable[str] = ()) -> int:
        """Channels ``group`` (a root with its coupled ``members``) keeps under this plan."""
        return kept_channels(channels, self.ratio(group), self.multiple_of((group, *members)))

    def layers_at(self, precision: Precision) -> tuple[str, ...]:
        return tuple(sorted(k for k, v in self.precision.items() if v is precision))

    @property
    def is_dense(self) -> bool:
        return not any(self.prune.values())

    @property
    def is_fp32(self) -> bool:
        return all(p is Precision.FP32 for p in self.precision.values())

    # ----------------------------------------------------------------- validation
    def validate(self, model: ModelInfo, target: str | Target = "cpu") -> Plan:
        """Check every name and precision against an analysed model and a target.

        Args:
            model: the model's analysis (``pruna_search.analyze(model, data)``).
            target: a target name or Target.

        Returns:
            self, so calls can be chained.

        Raises:
            PlanError: on an unknown group or layer (with the closest name), or a precision
                the target cannot run for that layer's kind.
        """
        if not isinstance(model, ModelInfo):
            raise PlanError(
                f"Plan.validate: expected the model's analysis, got {type(model).__name__}; "
                "pass pruna_search.analyze(model, data)"
            )
        target = get_target(target)
        groups = set(model.group_names)
        for name in self.prune:
            if name not in groups:
                raise PlanError(
                    f"prune: {name!r} is not a prunable group of this model; "
                    f"{did_you_mean(name, groups)}"
                )
        layers = {layer.name: layer for layer in model.layers}
        for name, precision in self.precision.items():
            if name not in layers:
                raise PlanError(
                    f"precision: {name!r} is not a quantizable layer of this model; "
                    f"{did_you_mean(name, layers)}"
                )
            kind = layers[name].kind
            if not target.supports(kind, precision):
                allowed = ", ".join(p.value for p in target.choices(kind))
                raise PlanError(
                    f"precision[{name!r}]: target {target.name!r} cannot run {precision.value} "
                    f"on a {kind} layer; use one of {allowed}"
                )
        return self

    # ----------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        return {
            "prune": {k: float(v) for k, v in sorted(self.prune.items())},
            "precision": {k: v.value for k, v in sorted(self.precision.items())},
            "finetune": asdict(self.finetune),
            "round_to": self.round_to if isinstance(self.round_to, int) else dict(self.round_to),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if not isinstance(data, Mapping):
            raise PlanError(f"plan: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            key = sorted(unknown)[0]
            raise PlanError(f"plan: unknown key {key!r}; {did_you_mean(key, known)}")
        return cls(
            prune=dict(data.get("prune") or {}),
            precision=dict(data.get("precision") or {}),
            finetune=_finetune_from(data.get("finetune") or {}),
            round_to=data.get("round_to", 8),
        )

    def to_yaml(self) -> str:
        import yaml  # imported here: the device agent imports core without PyYAML

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Plan:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlanError(
                f"plan: not valid YAML ({exc.__class__.__name__}); fix the file"
            ) from None
        return cls.from_dict(data or {})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan: not valid JSON ({exc}); fix the file") from None

    def save(self, path: str | Path) -> Path:
        """Write the plan as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else self.to_yaml()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan: file {str(path)!r} does not exist; check the path")
        text = path.read_text()
        return cls.from_json(text) if path.suffix == ".json" else cls.from_yaml(text)


def _finetune_from(data: Mapping[str, Any] | Finetune) -> Finetune:
    if isinstance(data, Finetune):
        return data
    known = {f.name for f in fields(Finetune)}
    unknown = set(data) - known
    if unknown:
        key = sorted(unknown)[0]
        raise PlanError(f"finetune: unknown key {key!r}; {did_you_mean(key, known)}")
    return Finetune(**dict(data))
