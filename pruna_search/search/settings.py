"""The job configuration as plain, validated types (what Hydra composes, minus Hydra).

``JobSettings.parse(mapping)`` checks every section before anything heavy runs, so bad input is
one ``ConfigError`` naming the field, the value and the fix, and nothing is created half-way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError, PrunaSearchError
from ..core.names import did_you_mean
from ..core.plan import DEFAULT_ROUND_TO, Finetune
from ..core.target import Target
from ..space import SpaceOptions
from ..tracking import DEFAULT_URI, TRACKERS, check_uri
from ..train import CPU, Compute
from .objectives import Objective, make_objective
from .study import StudySettings

SECTIONS = (
    "analysis",
    "model",
    "data",
    "target",
    "space",
    "objective",
    "sampler",
    "study",
    "finetune",
    "tracking",
)
MODEL_KEYS = (
    "name",
    "width",
    "pretrained",
    "checkpoint",
    "model_kwargs",
    "strip_prefix",
    "train_epochs",
    "num_classes",
    "in_channels",
    "output_key",
)


# How pruna_search builds and measures a trial or an analysis, in every study's and analysis's
# identity: raised by a change that moves their figures, so a study made before is not resumed
# with incomparable trials and an analysis kept from before is made again
# (2: BatchNorm recalibrated against the trained model, design decision 27; 3: and again after
# the fine-tune, for the weights it trained, design decision 28)
MEASURED_BY = 3


@dataclass(frozen=True)
class SpaceSettings:
    """The ``space`` section: what the search may choose (``SpaceOptions``, whose defaults
    these are, without the fine-tune budget).

    Attributes:
        ratios: pruning ratios offered to every dependency group (0 keeps it dense).
        precisions: search per-layer precision among what the target runs; false keeps fp32.
        tie: none (one choice per group / layer) or stage (one per top-level module, e.g.
            layer2), which shrinks large spaces.
        precision_tie: how precision choices are shared: none / stage as for tie, model (one
            choice for the whole model), or null to follow tie.
        round_to: kept channels are a multiple of this, or one multiple per precision
            ({fp32: 8, int8: 16}: fp32 kernels are fastest at multiples of 8, int8 ones at 16).
    """

    ratios: tuple[float, ...] = SpaceOptions.ratios
    precisions: bool = SpaceOptions.precisions
    tie: str = SpaceOptions.tie
    # model: on CPUs where each fp32/int8 boundary costs more than an int8 layer saves, mixed
    # plans are slower than both uniform ones
    precision_tie: str | None = "model"
    round_to: Any = field(default_factory=lambda: dict(DEFAULT_ROUND_TO))

    def options(self, finetune: Finetune) -> SpaceOptions:
        return SpaceOptions(
            ratios=tuple(self.ratios),
            precisions=bool(self.precisions),
            tie=self.tie,
            precision_tie=self.precision_tie,
            finetune=finetune,
            round_to=self.round_to,
        )


@dataclass(frozen=True)
class FinetuneSettings:
    """The ``finetune`` section: recovery after pruning (BatchNorm recalibration, then SGD with
    a cosine schedule and distillation from the dense model; a plan that prunes nothing is not
    fine-tuned). The recipe's defaults are ``Finetune``'s.

    Attributes:
        trial_steps: fine-tune steps per trial (a proxy: more steps rank plans better but cost
            more).
        final_steps: steps for the chosen plan when it is re-applied and exported.
        lr: peak learning rate (cosine decay to 0).
        optimizer: sgd (momentum 0.9), adam or adamw.
        batch_size: training batch size.
        weight_decay: L2 / decoupled weight decay.
        bn_recalibration: batches that move the trained BatchNorm statistics by the change
            pruning caused, measured against the dense model, before the fine-tune and again
            after it (0 disables it).
        distill: weight of distillation from the dense model (0: off).
        seed: seed for batch order.
        device: where recalibration, fine-tuning and the teacher run: auto (CUDA when torch
            sees a GPU, else the CPU), cpu, cuda or cuda:N; export, quantization, accuracy and
            latency always run as the target runs them.
        amp: mixed precision on CUDA: bf16 or fp16 autocast (null: full precision; ignored on
            the CPU).
    """

    trial_steps: int = 60
    final_steps: int = 300
    lr: float = Finetune.lr
    optimizer: str = Finetune.optimizer
    batch_size: int = Finetune.batch_size
    weight_decay: float = Finetune.weight_decay
    bn_recalibration: int = Finetune.bn_recalibration
    distill: float = Finetune.distill
    seed: int = Finetune.seed
    device: str = "auto"
    amp: str | None = None

    def recipes(self) -> tuple[Finetune, Finetune]:
        """The trial's and the final fine-tune (errors name this section's keys)."""
        common = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(Finetune)
            if f.name != "steps"
        }
        try:
            return (
                Finetune(steps=self.trial_steps, **common),
                Finetune(steps=self.final_steps, **common),
            )
        except PrunaSearchError as exc:
            raise ConfigError(
                str(exc).replace("finetune.steps", "finetune.trial_steps / final_steps")
            ) from None


ANALYSIS_VAL_IMAGES = 500  # what analysis.val_subset=null scores the sensitivity profile on


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``analysis`` section (``pruna-search-analyze``).

    Attributes:
        val_subset: validation images (class-balanced, seeded) the sensitivity profile is
            scored on; null: up to 500 (the whole val split when it is smaller), enough to rank
            groups and layers.
        seed: seed of that subset.
        budgets: accuracy budgets (absolute: 0.01 is one point) to suggest a plan for.
        profile_runs: profiled runs of each model for the latency profile.
        bn_recalibration: batches that recalibrate BatchNorm after pruning a group, as in
            ``finetune`` (fewer than a trial's: the profile ranks groups, and it runs once per
            group and ratio).
    """

    val_subset: int | None = None
    seed: int = 0
    budgets: tuple[float, ...] = (0.01, 0.02, 0.05)
    profile_runs: int = 50
    bn_recalibration: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", tuple(self.budgets))
        size = self.val_subset
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(
                f"analysis.val_subset: {size!r} must be a number of images >= 1, or null for "
                "up to 500 (the whole val split when smaller)"
            )
        for budget in self.budgets:
            if (
                isinstance(budget, bool)
                or not isinstance(budget, int | float)
                or not 0 < budget <= 1
            ):
                raise ConfigError(
                    f"analysis.budgets: {budget!r} is not an accuracy budget; use absolute "
                    "values in (0, 1], e.g. [0.01, 0.02, 0.05] for 1, 2 and 5 points"
                )
        for key in ("profile_runs", "bn_recalibration"):
            value = getattr(self, key)
            least = 1 if key == "profile_runs" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"analysis.{key}: {value!r} must be an integer >= {least}")

    def subset_of(self, available: int) -> int:
        """How many of ``available`` val images the profile is scored on (``val_subset``)."""
        if self.val_subset is None:
            return min(ANALYSIS_VAL_IMAGES, available)
        if self.val_subset > available:
            raise ConfigError(
                f"analysis.val_subset: {self.val_subset} is larger than the val split "
                f"({available} images); use at most {available}, or null (up to 500)"
            )
        return self.val_subset


@dataclass(frozen=True)
class TrackingSettings:
    """Where trials are tracked (``conf/tracking/``).

    Attributes:
        name: ``mlflow`` or ``none``.
        uri: the MLflow tracking store: ``sqlite:///mlflow.db`` (artifacts in ``mlartifacts/``
            beside it) or a server's ``http://host:port``.
        experiment: the MLflow experiment; None: ``<model>-<data>``.
        register: register the chosen model as ``registered_model`` in the model registry.
        registered_model: None: ``pruna-<model>-<target>``.
    """

    name: str = "none"
    uri: str = DEFAULT_URI
    experiment: str | None = None
    register: bool = True
    registered_model: str | None = None

    def __post_init__(self) -> None:
        if self.name not in TRACKERS:
            raise ConfigError(
                f"tracking.name: {self.name!r} is unknown; {did_you_mean(self.name, TRACKERS)}"
            )
        if self.name != "none":
            check_uri(str(self.uri))


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of options, got {value!r}")
    return dict(value)


def _check_keys(section: str, values: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{section}.{key}: unknown option; {did_you_mean(key, allowed)}")


def _checked(config: Mapping[str, Any], name: str, kind: type) -> dict[str, Any]:
    """The section's values, each key one of the dataclass's fields."""
    values = _section(config, name)
    _check_keys(name, values, tuple(f.name for f in dataclasses.fields(kind)))
    return values


def _typed(config: Mapping[str, Any], name: str, kind: type) -> Any:
    """The section as its dataclass (defaults for the keys it does not set)."""
    values = _checked(config, name, kind)
    for key, value in values.items():
        if isinstance(value, list):  # YAML lists are the dataclasses' tuples
            values[key] = tuple(value)
    return kind(**values)


def _seed(value: Any) -> int | None:
    """The sampler's seed (``seed``, which ``sampler.seed`` follows): an integer in
    [0, 2**32 - 1] (numpy's range) or null."""
    if value is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    raise ConfigError(
        f"seed: {value!r} must be an integer in [0, 4294967295] (e.g. seed=0), or null for a "
        "random start"
    )


def _check_rerank(study: StudySettings, finetune: FinetuneSettings) -> None:
    """A ``study.rerank_steps`` set must exceed the trials' steps, or re-ranking learns nothing
    (left null, re-ranking uses the final fine-tune, and is skipped when that is no longer)."""
    steps = study.rerank_steps
    if study.rerank_top is not None and steps is not None and steps <= finetune.trial_steps:
        raise ConfigError(
            f"study.rerank_steps: {steps} must exceed finetune.trial_steps "
            f"({finetune.trial_steps}) for re-ranking to see more than the trials; raise it, "
            "or study.rerank_top=null (no re-ranking)"
        )


def _check_sections(config: Mapping[str, Any]) -> None:
    unknown = [k for k in config if k not in (*SECTIONS, "seed", "verbose", "experiment")]
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown config section; {did_you_mean(unknown[0], SECTIONS)}"
        )


def _model(config: Mapping[str, Any]) -> dict[str, Any]:
    model = _section(config, "model")
    _check_keys("model", model, MODEL_KEYS)
    if not model.get("name"):
        raise ConfigError(
            "model.name: missing; use a built-in name (model=resnet20) or a "
            "class path 'package.module:Class'"
        )
    return model


@dataclass(frozen=True)
class JobSettings:
    """Everything one study needs, validated."""

    model: dict[str, Any]
    data: dict[str, Any]
    target: Target
    target_config: dict[str, Any]
    space: SpaceOptions
    space_config: dict[str, Any]
    objective: Objective
    sampler: str
    sampler_options: dict[str, Any]
    seed: int | None
    study: StudySettings
    trial_finetune: Finetune
    final_finetune: Finetune
    compute: Compute = CPU
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> JobSettings:
        """Validate a composed config (plain dicts and lists)."""
        config = dict(config)
        _check_sections(config)
        model, data = _model(config), _section(config, "data")
        if not data.get("name"):
            raise ConfigError("data.name: missing; e.g. data=digits")
        target_config = _section(config, "target")
        finetune = _typed(config, "finetune", FinetuneSettings)
        trial_finetune, final_finetune = finetune.recipes()
        space = _typed(config, "space", SpaceSettings)
        sampler_config = _section(config, "sampler")
        study = _typed(config, "study", StudySettings)
        _check_rerank(study, finetune)
        return cls(
            model=model,
            data=data,
            target=Target.from_config(target_config),
            target_config=target_config,
            space=space.options(trial_finetune),
            space_config=_section(config, "space"),
            objective=make_objective(**_checked(config, "objective", Objective)),
            sampler=sampler_config.pop("name", "tpe"),
            seed=_seed(sampler_config.pop("seed", config.get("seed", 0))),
            sampler_options=sampler_config,
            study=study,
            trial_finetune=trial_finetune,
            final_finetune=final_finetune,
            compute=Compute.resolve(finetune.device, finetune.amp),
            tracking=_typed(config, "tracking", TrackingSettings),
            analysis=_typed(config, "analysis", AnalysisSettings),
            raw=config,
        )

    @property
    def model_name(self) -> str:
        name = str(self.model["name"])
        return name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] if ":" in name else name

    @property
    def registered_model(self) -> str:
        """The model registry name of the chosen model: ``pruna-<model>-<target>``."""
        return self.tracking.registered_model or f"pruna-{self.model_name}-{self.target.name}"

    def identity(self, weights_digest: str) -> dict[str, Any]:
        """What must not change when a study is resumed: a trial's values depend on it."""
        return {
            "measured_by": MEASURED_BY,
            "model": {**self.model, "weights": weights_digest},
            "data": self.data,
            "target": self.target.identity(),
            "space": {
                "ratios": list(self.space.ratios),
                "precisions": self.space.precisions,
                "tie": self.space.tie,
                "precision_tie": self.space.precision_tie,
                "round_to": self.space.round_to,
            },
            "finetune": dataclasses.asdict(self.trial_finetune),
            "objective": {
                k: v
                for k, v in dataclasses.asdict(self.objective).items()
                if k != "allow_small_val"
            },
        }


__all__ = [
    "MEASURED_BY",
    "AnalysisSettings",
    "FinetuneSettings",
    "JobSettings",
    "SpaceSettings",
    "TrackingSettings",
]
