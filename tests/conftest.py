"""Shared fixtures: real data, real trained baselines (cached under .cache/ in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Trained baselines are cached per checkout so a second `make test` does not retrain;
# the user's own cache (~/.cache/pruna_search) is never touched by the suite.
os.environ.setdefault("PRUNA_SEARCH_CACHE", str(ROOT / ".cache" / "test"))
os.environ.setdefault("PRUNA_SEARCH_PROGRESS", "0")
# Two cores: one torch thread per test process avoids oversubscription with ORT subprocesses.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def digits():
    from pruna_search import data

    return data.load("digits")


@pytest.fixture(scope="session")
def resnet20_trained(digits):
    from pruna_search import models

    return models.build("resnet20", data=digits, pretrained=True)


@pytest.fixture(autouse=True)
def _fresh_latency_floor() -> None:
    """Every test starts with no floor: floors are kept by whoever measures (a ``Floors``
    object, e.g. the evaluator's) and in the latency cache's file, and the tests share their
    dense files: the floors an earlier test stored in the suite's latency cache (the searches'
    file) are cleared."""
    from pruna_search.measure import LatencyCache
    from pruna_search.models.pretrained import cache_dir

    LatencyCache(cache_dir() / "latency.sqlite").clear_floors()
