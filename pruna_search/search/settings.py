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
from ..core.loops import CPU, Compute
from ..core.names import did_you_mean
from ..core.plan import DEFAULT_ROUND_TO, Finetune
from ..core.target import Target
from ..space import SpaceOptions
from ..tracking import DEFAULT_URI, TRACKERS, check_uri
from .objectives import Objective, make_objective
from .study import StudySettings

SECTIONS = (
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
SPACE_KEYS = ("ratios", "precisions", "tie", "precision_tie", "round_to")
FINETUNE_KEYS = tuple(f.name for f in dataclasses.fields(Finetune) if f.name != "steps")
# where the fine-tune runs: not part of the plan, nor of a study's identity (workers on
# machines with and without a GPU share one study)
COMPUTE_KEYS = ("device", "amp")


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
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> JobSettings:
        """Validate a composed config (plain dicts and lists)."""
        config = dict(config)
        model = _section(config, "model")
        _check_keys("model", model, MODEL_KEYS)
        if not model.get("name"):
            raise ConfigError(
                "model.name: missing; use a built-in name (model=resnet20) or a "
                "class path 'package.module:Class'"
            )
        data = _section(config, "data")
        if not data.get("name"):
            raise ConfigError("data.name: missing; e.g. data=digits")

        target_config = _section(config, "target")
        target = Target.from_config(target_config)

        space_config = _section(config, "space")
        _check_keys("space", space_config, SPACE_KEYS)

        finetune_config = _section(config, "finetune")
        _check_keys(
            "finetune",
            finetune_config,
            (*FINETUNE_KEYS, *COMPUTE_KEYS, "trial_steps", "final_steps"),
        )
        compute = Compute.resolve(
            finetune_config.get("device", "auto"), finetune_config.get("amp")
        )
        common = {k: v for k, v in finetune_config.items() if k in FINETUNE_KEYS}
        trial_steps = finetune_config.get("trial_steps", 50)
        final_steps = finetune_config.get("final_steps", 300)
        try:
            trial_finetune = Finetune(steps=trial_steps, **common)
            final_finetune = Finetune(steps=final_steps, **common)
        except PrunaSearchError as exc:
            raise ConfigError(
                str(exc).replace("finetune.steps", "finetune.trial_steps / final_steps")
            ) from None
        space = SpaceOptions(
            ratios=tuple(space_config.get("ratios", SpaceOptions.ratios)),
            precisions=bool(space_config.get("precisions", True)),
            tie=space_config.get("tie", "none"),
            precision_tie=space_config.get("precision_tie"),
            finetune=trial_finetune,
            round_to=space_config.get("round_to", DEFAULT_ROUND_TO),
        )

        objective_config = _section(config, "objective")
        fields = {f.name for f in dataclasses.fields(Objective)}
        _check_keys("objective", objective_config, tuple(fields))
        objective = make_objective(**objective_config)

        sampler_config = _section(config, "sampler")
        sampler = sampler_config.pop("name", "tpe")
        seed = sampler_config.pop("seed", config.get("seed", 0))

        study_config = _section(config, "study")
        fields = {f.name for f in dataclasses.fields(StudySettings)}
        _check_keys("study", study_config, tuple(fields))
        if "reference_ratios" in study_config:
            study_config["reference_ratios"] = tuple(study_config["reference_ratios"] or ())
        study = StudySettings(**study_config)

        tracking_config = _section(config, "tracking")
        fields = {f.name for f in dataclasses.fields(TrackingSettings)}
        _check_keys("tracking", tracking_config, tuple(fields))
        tracking = TrackingSettings(**tracking_config)

        unknown = [k for k in config if k not in (*SECTIONS, "seed", "verbose", "experiment")]
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: unknown config section; {did_you_mean(unknown[0], SECTIONS)}"
            )
        return cls(
            model=model,
            data=data,
            target=target,
            target_config=target_config,
            space=space,
            space_config=space_config,
            objective=objective,
            sampler=sampler,
            sampler_options=sampler_config,
            seed=seed,
            study=study,
            trial_finetune=trial_finetune,
            final_finetune=final_finetune,
            compute=compute,
            tracking=tracking,
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


__all__ = ["JobSettings"]
