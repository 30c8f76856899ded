"""The Hydra callback that keeps a multirun's sweep summary up to date (``report.sweep``)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ..report.sweep import write_sweep_summary


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks.sweep_summary`` in conf/search.yaml)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_sweep_summary(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_sweep_summary(config.hydra.sweep.dir)
        if path is not None:
            print(f"sweep summary: {path} (and .csv)")


__all__ = ["SweepSummary", "write_sweep_summary"]
