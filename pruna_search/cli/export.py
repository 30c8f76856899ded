"""``pruna-search-export``: re-apply any trial or plan of a study and write best.onnx and
plan.yaml (Hydra app over ``conf/export.yaml``)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..core.errors import ConfigError
from ..search.job import export_from_study, list_studies
from . import schema
from .errors import CONF_DIR
from .run import discard_run_dir, guarded
from .search import INPUT_ERRORS

log = logging.getLogger("pruna_search")


schema.register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def _app(cfg: DictConfig) -> None:
    output_dir = HydraConfig.get().runtime.output_dir
    try:
        check_request(cfg)
        export_from_study(
            cfg.study.storage,
            cfg.study.name,
            output_dir,
            trial=cfg.trial,
            plan_path=cfg.plan,
            final_steps=cfg.finetune.final_steps,
        )
    except INPUT_ERRORS:
        discard_run_dir(output_dir)  # bad input: no half-written export folder
        raise
    log.info(f"outputs  {output_dir}: best.onnx, plan.yaml")


def check_request(cfg: DictConfig) -> None:
    """A study name, and one of trial / plan at most (``ConfigError`` otherwise)."""
    if not cfg.study.name:
        studies = list_studies(cfg.study.storage)
        listing = ", ".join(studies) if studies else "none"
        raise ConfigError(f"study.name: required; studies in {cfg.study.storage}: {listing}")
    if cfg.trial is not None and cfg.plan is not None:
        raise ConfigError("trial / plan: give one of them, not both")
    if cfg.trial is not None and (isinstance(cfg.trial, bool) or not isinstance(cfg.trial, int)):
        raise ConfigError(f"trial: {cfg.trial!r} must be a trial number")


def main() -> None:
    sys.exit(guarded(_app))


if __name__ == "__main__":
    main()
