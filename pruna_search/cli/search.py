"""``pruna-search``: the Hydra app over ``conf/search.yaml`` (``pruna-search --help``).

Exit codes: 0 done, 2 bad input or a failed study (one line on stderr), 3 no trial met the
budget (the front is still written), 130 interrupted (the study stays resumable).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..analyzer.warmstart import warm_start_plans
from ..core.errors import CheckpointError, ConfigError, DataError, ModelError, TargetError
from ..report.summary import write_json
from ..search import job as job_lib
from . import schema
from .errors import CONF_DIR
from .help import help_text
from .run import EXIT_INTERRUPTED, EXIT_NO_FEASIBLE, discard_run_dir, guarded
from .sweep import MULTIRUN_FLAGS, check_sweep, write_sweep_summary

log = logging.getLogger("pruna_search")
INPUT_ERRORS = (ConfigError, DataError, ModelError, CheckpointError, TargetError)
_status: list[str] = []


schema.register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="search")
def _app(cfg: DictConfig) -> None:
    # the composed config is a mapping with string keys, so its container is a dict
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    overrides = list(hydra_cfg.overrides.task)
    sweep = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep = Path(hydra_cfg.sweep.dir).name  # the multirun's id, e.g. 2026-11-24_08-10-03
    try:
        result = job_lib.run_job(
            config, output_dir, overrides=overrides, sweep=sweep, warm_start=warm_start_plans
        )
    except BaseException as exc:
        if isinstance(exc, INPUT_ERRORS) and hydra_cfg.mode == RunMode.RUN:
            discard_run_dir(output_dir)
        else:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc}"
            write_json(
                Path(output_dir) / "summary.json", {"status": reason, "overrides": overrides}
            )
        raise
    summary = dict(result.summary, overrides=overrides)
    write_json(result.output_dir / "summary.json", summary)
    _status.append(result.status)
    files = [p.name for p in sorted(result.output_dir.iterdir()) if p.is_file()]
    if result.status == job_lib.STATUS_NO_FEASIBLE:
        log.warning(
            f"no trial meets the budget ({summary['budget']}); nothing exported. The front is "
            f"in {result.output_dir}/pareto.csv: loosen the budget or run more trials"
        )
    elif result.status == job_lib.STATUS_INTERRUPTED:
        log.warning(
            f"interrupted: study {result.study_name} keeps its {summary['evaluated']} evaluated "
            "plans; run the same command again to resume"
        )
    log.info(f"outputs  {result.output_dir}: {', '.join(files)}")
    if result.status == job_lib.STATUS_INTERRUPTED and hydra_cfg.mode == RunMode.MULTIRUN:
        # Ctrl-C stops the whole sweep, not just this job
        write_sweep_summary(hydra_cfg.sweep.dir)
        raise KeyboardInterrupt


def main() -> None:
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(help_text())
        sys.exit(0)
    if "--no-cache" in sys.argv[1:]:
        # measure every model again instead of reusing cached latency figures
        sys.argv = [a for a in sys.argv if a != "--no-cache"] + ["target.cache=false"]
    if set(MULTIRUN_FLAGS) & set(sys.argv[1:]):
        code = guarded(lambda: check_sweep(sys.argv[1:]))  # every job, before the first runs
        if code:
            sys.exit(code)
    code = guarded(_app)
    if code == 0 and _status:
        if job_lib.STATUS_INTERRUPTED in _status:
            code = EXIT_INTERRUPTED
        elif len(_status) == 1 and _status[0] == job_lib.STATUS_NO_FEASIBLE:
            code = EXIT_NO_FEASIBLE
    sys.exit(code)


if __name__ == "__main__":
    main()
