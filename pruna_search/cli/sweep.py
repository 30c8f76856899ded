"""Multiruns: every job checked before the first runs, and the Hydra callback that keeps a
multirun's sweep summary up to date (``report.sweep``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, cast

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..report.sweep import write_sweep_summary
from ..search.settings import JobSettings
from .errors import CONF_DIR

MULTIRUN_FLAGS = ("-m", "--multirun")


def sweep_jobs(argv: Sequence[str]) -> list[list[str]]:
    """Each job's overrides of a multirun command line: its comma lists expanded, as Hydra's
    basic sweeper does (flags and ``hydra.*`` overrides left out)."""
    args = [a for a in argv if not a.startswith("-") and not a.startswith("hydra.")]
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line or ""]
        for o in OverridesParser.create().parse_overrides(args)
    ]
    return [list(job) for job in itertools.product(*choices)]


def check_sweep(argv: Sequence[str]) -> None:
    """Compose and validate every job of a multirun before any runs, so a bad value in the
    last job fails at once (one line, nothing written) instead of after the others ran."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for overrides in sweep_jobs(argv):
            cfg = compose("search", overrides=overrides)
            JobSettings.parse(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks.sweep_summary`` in conf/search.yaml)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_sweep_summary(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_sweep_summary(config.hydra.sweep.dir)
        if path is not None:
            print(f"sweep summary: {path} (and .csv)")


__all__ = ["MULTIRUN_FLAGS", "SweepSummary", "check_sweep", "sweep_jobs", "write_sweep_summary"]
