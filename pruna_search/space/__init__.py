"""The search space: the one function that turns an Optuna trial into a Plan.

This is the only place that calls ``trial.suggest_*`` (DESIGN.md decision 4). The export replays
it on ``optuna.trial.FixedTrial(best.params)`` and gets the identical Plan, so there is no second
code path. Parameter names: ``prune/<group>`` and ``bits/<layer>`` (decision 8); with
``tie="stage"`` choices are shared by every group or layer of one stage (``prune/layer1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import ConfigError
from ..core.model_info import ModelInfo
from ..core.names import BITS_PARAM, PRUNE_PARAM
from ..core.plan import MAX_RATIO, Finetune, Plan
from ..core.precision import Precision
from ..core.target import Target, get_target

TIES = ("none", "stage")


class SuggestsCategorical(Protocol):
    """What the space needs of a trial: Optuna's Trial, FixedTrial and FrozenTrial all fit."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class SpaceOptions:
    """What the search may choose.

    Attributes:
        ratios: pruning ratios offered to every dependency group (0 keeps it dense).
        precisions: search per-layer precision among what the target runs; False keeps fp32.
        tie: ``none`` (one choice per group / layer) or ``stage`` (one per top-level module,
            e.g. ``layer2``), which shrinks large spaces.
        finetune: the fine-tune budget written into every Plan.
        round_to: kept channels are a multiple of this.
    """

    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.625, 0.75)
    precisions: bool = True
    tie: str = "none"
    finetune: Finetune = field(default_factory=Finetune)
    round_to: int = 8

    def __post_init__(self) -> None:
        ratios = tuple(float(r) for r in self.ratios)
        if not ratios:
            raise ConfigError("space.ratios: empty; give at least one ratio, e.g. [0.0, 0.5]")
        bad = [r for r in ratios if not 0.0 <= r <= MAX_RATIO]
        if bad:
            raise ConfigError(
                f"space.ratios: {bad[0]} is out of range; use values in [0, {MAX_RATIO}]"
            )
        object.__setattr__(self, "ratios", tuple(sorted(set(ratios))))
        if self.tie not in TIES:
            raise ConfigError(f"space.tie: {self.tie!r} is unknown; use one of {TIES}")


def _stage(name: str) -> str:
    return name.split(".", 1)[0]


class SearchSpace:
    """Per-group ratios and per-layer precisions for one model on one target."""

    def __init__(
        self, info: ModelInfo, target: str | Target = "cpu", options: SpaceOptions | None = None
    ) -> None:
        self.info = info
        self.target = get_target(target)
        self.options = options or SpaceOptions()
        tie = self.options.tie == "stage"
        # param name -> the groups / layers it decides
        self.prune_params: dict[str, list[str]] = {}
        if len(self.options.ratios) > 1 or self.options.ratios != (0.0,):
            for group in info.groups:
                key = PRUNE_PARAM + (_stage(group.name) if tie else group.name)
                self.prune_params.setdefault(key, []).append(group.name)
        self.bits_params: dict[str, tuple[list[str], tuple[str, ...]]] = {}
        if self.options.precisions:
            kinds_per_stage: dict[str, set[str]] = {}
            for layer in info.layers:
                kinds_per_stage.setdefault(_stage(layer.name), set()).add(layer.kind)
            for layer in info.layers:
                choices = tuple(p.value for p in self.target.choices(layer.kind))
                if len(choices) < 2:
                    continue
                if tie:
                    stage = _stage(layer.name)
                    many = len(kinds_per_stage[stage]) > 1
                    key = BITS_PARAM + (f"{stage}:{layer.kind}" if many else stage)
                else:
                    key = BITS_PARAM + layer.name
                layers, _ = self.bits_params.setdefault(key, ([], choices))
                layers.append(layer.name)

    @property
    def size(self) -> int:
        """Number of distinct plans in the space."""
        count = len(self.options.ratios) ** len(self.prune_params)
        for _, choices in self.bits_params.values():
            count *= len(choices)
        return count

    def __call__(self, trial: SuggestsCategorical) -> Plan:
        """The Plan this trial picks. Deterministic in the trial's parameters."""
        prune: dict[str, float] = {}
        for key, groups in self.prune_params.items():
            ratio = float(trial.suggest_categorical(key, self.options.ratios))
            if ratio > 0:
                prune.update({g: ratio for g in groups})
        precision: dict[str, Precision] = {}
        for key, (layers, choices) in self.bits_params.items():
            value = Precision(trial.suggest_categorical(key, choices))
            if value is not Precision.FP32:
                precision.update({layer: value for layer in layers})
        return Plan(
            prune=prune,
            precision=precision,
            finetune=self.options.finetune,
            round_to=self.options.round_to,
        )

    def params_of(self, plan: Plan) -> dict[str, Any]:
        """Trial parameters that make this space produce ``plan`` (for enqueueing reference
        plans such as dense fp32 or uniform int8).

        Raises:
            ConfigError: when the plan is not in the space (a ratio not offered, tied groups
                with different ratios, a precision not searched).
        """
        params: dict[str, Any] = {}
        for key, groups in self.prune_params.items():
            ratios = {plan.ratio(g) for g in groups}
            if len(ratios) != 1 or next(iter(ratios)) not in self.options.ratios:
                raise ConfigError(
                    f"space: the plan's ratios {sorted(ratios)} for {key!r} are not one of "
                    f"{list(self.options.ratios)}; add them to space.ratios"
                )
            params[key] = ratios.pop()
        for key, (layers, choices) in self.bits_params.items():
            values = {plan.precision_of(layer).value for layer in layers}
            if len(values) != 1 or next(iter(values)) not in choices:
                raise ConfigError(
                    f"space: the plan's precisions {sorted(values)} for {key!r} are not one of "
                    f"{list(choices)}"
                )
            params[key] = values.pop()
        unsearched = [g for g, r in plan.prune.items() if r > 0 and not self.prune_params]
        unsearched += [
            n
            for n, p in plan.precision.items()
            if p is not Precision.FP32 and not self.bits_params
        ]
        if unsearched:
            raise ConfigError(f"space: the plan changes {unsearched[0]!r}, which is not searched")
        return params


def uniform_params(space: SearchSpace, ratio: float, bits: int) -> Mapping[str, Any]:
    """Parameters of the uniform plan (same ratio everywhere, ``bits`` where the target runs
    it), used for the reference trials."""
    plan = Plan.uniform(
        space.info,
        target=space.target,
        pruning_ratio=ratio,
        quantization_bits=bits,
        finetune=space.options.finetune,
        round_to=space.options.round_to,
    )
    return space.params_of(plan)


__all__ = ["SearchSpace", "SpaceOptions", "SuggestsCategorical", "uniform_params"]
