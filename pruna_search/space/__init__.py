"""The search space: the one function that turns an Optuna trial into a Plan.

This is the only place that calls ``trial.suggest_*`` (design decision 4). The export replays
it on ``optuna.trial.FixedTrial(best.params)`` and gets the identical Plan, so there is no second
code path. Parameter names: ``prune/<group>`` and ``bits/<layer>`` (decision 8); with
``tie="stage"`` choices are shared by every group or layer of one stage (``prune/layer1``), and
with ``precision_tie="model"`` one ``bits/all`` choice sets every layer's precision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import ConfigError, PlanError
from ..core.model_info import ModelInfo
from ..core.names import BITS_PARAM, PRUNE_PARAM
from ..core.plan import (
    DEFAULT_ROUND_TO,
    MAX_RATIO,
    Finetune,
    Plan,
    RoundTo,
    kept_channels,
    parse_round_to,
)
from ..core.precision import Precision
from ..core.target import Target, get_target

TIES = ("none", "stage")
PRECISION_TIES = ("none", "stage", "model")
ALL_LAYERS = "all"


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
        precision_tie: how precision choices are shared: ``none`` / ``stage`` as for ``tie``,
            ``model`` (one choice for the whole model: each layer takes the lowest precision it
            runs with at least the chosen bits), or None to follow ``tie``. On CPUs where each
            fp32/int8 boundary costs more than an int8 layer saves, ``model`` keeps the search
            out of mixed plans that are slower than both uniform ones.
        finetune: the fine-tune budget written into every Plan.
        round_to: kept channels are a multiple of this, or one multiple per precision
            (``{"fp32": 8, "int8": 16}``): a group takes the largest multiple among the
            precisions of the layers producing its channels (``Plan.multiple_of``).
    """

    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.625, 0.75)
    precisions: bool = True
    tie: str = "none"
    precision_tie: str | None = None
    finetune: Finetune = field(default_factory=Finetune)
    round_to: RoundTo = field(default_factory=lambda: dict(DEFAULT_ROUND_TO))

    def __post_init__(self) -> None:
        try:
            object.__setattr__(
                self, "round_to", parse_round_to(self.round_to, field="space.round_to")
            )
        except PlanError as exc:
            raise ConfigError(str(exc)) from None
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
        if self.precision_tie is None:
            object.__setattr__(self, "precision_tie", self.tie)
        if self.precision_tie not in PRECISION_TIES:
            raise ConfigError(
                f"space.precision_tie: {self.precision_tie!r} is unknown; use one of "
                f"{PRECISION_TIES} (or null to follow space.tie)"
            )


def _stage(name: str) -> str:
    return name.split(".", 1)[0]


def _constant(ratio: float) -> Callable[[str], float]:
    """The same ``ratio`` for every group."""
    return lambda _group: ratio


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
        # param name -> the ratios it offers: one per distinct model (with round_to, 0.5, 0.625
        # and 0.75 of a 16-channel group all keep 8 channels; only 0.5 is offered)
        self.ratio_choices: dict[str, tuple[float, ...]] = {
            key: self._distinct_ratios(groups) for key, groups in self.prune_params.items()
        }
        self.bits_params: dict[str, tuple[list[str], tuple[str, ...]]] = {}
        if self.options.precisions:
            # None (follow ``tie``) was resolved by SpaceOptions
            self._tie_precisions(info, self.options.precision_tie or self.options.tie)

    def _tie_precisions(self, info: ModelInfo, how: str) -> None:
        """One ``bits/`` choice per layer, per stage (and layer kind) or for the whole model."""
        kinds_per_stage: dict[str, set[str]] = {}
        for layer in info.layers:
            kinds_per_stage.setdefault(_stage(layer.name), set()).add(layer.kind)
        searched = [
            (layer, self.target.choices(layer.kind))
            for layer in info.layers
            if len(self.target.choices(layer.kind)) > 1
        ]
        if how == "model":
            if searched:
                offered = {p for _, choices in searched for p in choices}
                levels = sorted(offered, key=lambda p: -p.bits)
                self.bits_params[BITS_PARAM + ALL_LAYERS] = (
                    [layer.name for layer, _ in searched],
                    tuple(p.value for p in levels),
                )
            return
        for layer, choices in searched:
            if how == "stage":
                stage = _stage(layer.name)
                many = len(kinds_per_stage[stage]) > 1
                key = BITS_PARAM + (f"{stage}:{layer.kind}" if many else stage)
            else:
                key = BITS_PARAM + layer.name
            layers, _ = self.bits_params.setdefault(key, ([], tuple(p.value for p in choices)))
            layers.append(layer.name)

    def precisions_for(self, layers: Sequence[str], value: str) -> dict[str, Precision]:
        """What the ``bits/`` choice ``value`` gives each of ``layers``."""
        return self._precisions(layers, value)

    def _precisions(self, layers: Sequence[str], value: str) -> dict[str, Precision]:
        """What one ``bits/`` choice gives each of its layers: the lowest precision the layer's
        kind runs with at least the chosen bits (the identity unless tied across kinds)."""
        bits = Precision(value).bits
        return {
            layer: self.target.lowest_at_least(self.info.layer(layer).kind, bits)
            for layer in layers
        }

    def _kept(self, groups: Sequence[str], ratio_of: Callable[[str], float]) -> tuple[int, ...]:
        """Channels each group keeps, under every channel multiple the groups may get (with
        one multiple per precision, a group's depends on the precisions chosen with it)."""
        round_to = self.options.round_to
        multiples = sorted(set(round_to.values())) if isinstance(round_to, Mapping) else [round_to]
        return tuple(
            kept_channels(self.info.group(g).channels, ratio_of(g), multiple)
            for multiple in multiples
            for g in groups
        )

    def _distinct_ratios(self, groups: Sequence[str]) -> tuple[float, ...]:
        """The smallest ratio for each distinct set of kept channel counts."""
        seen: dict[tuple[int, ...], float] = {}
        for ratio in self.options.ratios:
            seen.setdefault(self._kept(groups, _constant(ratio)), ratio)
        return tuple(seen.values())

    @property
    def size(self) -> int:
        """Number of distinct plans in the space."""
        count = 1
        for ratios in self.ratio_choices.values():
            count *= len(ratios)
        for _, choices in self.bits_params.values():
            count *= len(choices)
        return count

    def __call__(self, trial: SuggestsCategorical) -> Plan:
        """The Plan this trial picks. Deterministic in the trial's parameters."""
        prune: dict[str, float] = {}
        for key, groups in self.prune_params.items():
            ratio = float(trial.suggest_categorical(key, self.ratio_choices[key]))
            if ratio > 0:
                prune.update({g: ratio for g in groups})
        precision: dict[str, Precision] = {}
        for key, (layers, choices) in self.bits_params.items():
            value = trial.suggest_categorical(key, choices)
            chosen = self._precisions(layers, value)
            precision.update({n: p for n, p in chosen.items() if p is not Precision.FP32})
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
            kept = self._kept(groups, plan.ratio)
            matching = [
                r for r in self.ratio_choices[key] if self._kept(groups, _constant(r)) == kept
            ]
            if plan.round_to != self.options.round_to or not matching:
                raise ConfigError(
                    f"space: the plan's ratios {sorted(ratios)} for {key!r} are not one of "
                    f"{list(self.options.ratios)}; add them to space.ratios"
                )
            params[key] = matching[0]
        for key, (layers, choices) in self.bits_params.items():
            wanted = {layer: plan.precision_of(layer) for layer in layers}
            offered = [c for c in choices if self._precisions(layers, c) == wanted]
            if not offered:
                values = sorted({p.value for p in wanted.values()})
                raise ConfigError(
                    f"space: the plan's precisions {values} for {key!r} are not one of "
                    f"{list(choices)}"
                )
            params[key] = offered[0]
        unsearched = [g for g, r in plan.prune.items() if r > 0 and not self.prune_params]
        unsearched += [
            n
            for n, p in plan.precision.items()
            if p is not Precision.FP32 and not self.bits_params
        ]
        if unsearched:
            raise ConfigError(f"space: the plan changes {unsearched[0]!r}, which is not searched")
        return params


def model_key(info: ModelInfo, plan: Plan) -> tuple:
    """What the evaluated model depends on: channels kept per group, precision per layer and
    the fine-tune. Plans with the same key build the same model — e.g. with ``round_to``
    ``{fp32: 8, int8: 16}``, 0.5 and 0.75 of a 16-channel group both keep 16 channels at int8."""
    kept = tuple(plan.kept(g.channels, g.name, g.members) for g in info.groups)
    precision = tuple(sorted((name, p.value) for name, p in plan.precision.items()))
    return kept, precision, plan.finetune


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


__all__ = ["SearchSpace", "SpaceOptions", "SuggestsCategorical", "model_key", "uniform_params"]
