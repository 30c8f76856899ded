"""``pruna-search-analyze``: the Model Analyzer over the same config as ``pruna-search`` (the
``analysis`` section adds its own keys). Writes ``analysis.md``, ``analysis.json``,
``sensitivity.png``, ``latency.png`` and ``analysis.html`` to ``outputs/analysis/<time>/``."""

from __future__ import annotations

import logging
import sys
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..analyzer.job import run_analysis
from . import schema
from .errors import CONF_DIR
from .run import discard_run_dir, guarded
from .search import INPUT_ERRORS

log = logging.getLogger("pruna_search")
RUN_DIR = "hydra.run.dir=outputs/analysis/${now:%Y-%m-%d_%H-%M-%S}"

schema.register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="search")
def _app(cfg: DictConfig) -> None:
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    try:
        result = run_analysis(config, output_dir, list(hydra_cfg.overrides.task))
    except INPUT_ERRORS:
        discard_run_dir(output_dir)
        raise
    files = ", ".join(p.name for p in sorted(result.output_dir.iterdir()) if p.is_file())
    log.info(f"outputs  {result.output_dir}: {files}")


def main() -> None:
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv[1:]):
        sys.argv.append(RUN_DIR)
    sys.exit(guarded(_app))


if __name__ == "__main__":
    main()
