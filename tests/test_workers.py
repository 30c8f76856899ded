"""Several workers on one study (``search/workers.py``, ``search/locks.py``): the lease locks on a
real SQLite file, claims on a real Optuna study, and real ``pruna-search`` processes — three
workers on a real PostgreSQL server (``PRUNA_TEST_POSTGRES``, started by ``.ci/run``), and a
worker killed while it holds the timing lock."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from test_cli import BIN, TINY, start_search

from pruna_search.core.keys import CLAIM_ATTR, DUPLICATE_ATTR, REFERENCE_ATTR, WINDOWS_ATTR
from pruna_search.search.locks import StorageLock
from pruna_search.search.study import StudySettings, open_storage
from pruna_search.search.workers import Workers

POSTGRES = os.environ.get("PRUNA_TEST_POSTGRES")  # e.g. postgresql://pruna:pruna@localhost/db
HOLD = """
import sys, time
from pruna_search.search.locks import StorageLock
from pruna_search.search.study import StudySettings, open_storage
storage = open_storage(StudySettings(storage=sys.argv[1]))
with StorageLock(storage.engine, "timing:test", lease_s=float(sys.argv[2])).hold():
    print("held", flush=True)
    time.sleep(600)
"""


def storage_at(tmp_path: Path):
    return open_storage(StudySettings(storage=f"sqlite:///{tmp_path}/locks.db"))


def test_a_held_lock_is_refused_to_others_and_free_after_release(tmp_path):
    engine = storage_at(tmp_path).engine
    mine, theirs = StorageLock(engine, "timing:a"), StorageLock(engine, "timing:a")
    other_name = StorageLock(engine, "timing:b")
    with mine.hold() as waited:
        assert waited == 0.0
        assert not theirs.try_take()
        assert other_name.try_take()  # another device's lock is another lock
        with mine.hold():  # re-entrant for its holder
            assert mine.held_by() == mine.holder
        assert mine.held_by() == mine.holder
    assert mine.held_by() is None
    assert theirs.try_take()


def test_a_live_holder_keeps_its_lock_and_a_killed_one_loses_it_at_once(tmp_path):
    """A holder renews its lease while it lives; once it is killed, a process of the same host
    sees its pid gone and takes the lock without waiting for the lease (600 s here)."""
    storage_at(tmp_path)
    url = f"sqlite:///{tmp_path}/locks.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, "1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = StorageLock(storage_at(tmp_path).engine, "timing:test", lease_s=600)
        time.sleep(2.5)  # over twice the holder's lease: a live holder renews it
        assert not lock.try_take()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock.try_take()
    assert lock.held_by() == lock.holder


def test_the_lock_of_a_holder_on_another_host_is_free_after_its_lease(tmp_path):
    engine = storage_at(tmp_path).engine
    lock = StorageLock(engine, "timing:test")
    assert lock.try_take()
    lock.release()
    with engine.begin() as connection:  # a holder on another machine, its lease 1 s from now
        connection.execute(
            sqlalchemy.text("UPDATE pruna_locks SET holder = :h, expires = :e"),
            {"h": "elsewhere:4242:abcd", "e": time.time() + 1.0},
        )
    assert not lock.try_take()  # not on this host: its pid says nothing
    deadline = time.monotonic() + 30
    while not lock.try_take():
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.2)
    assert lock.held_by() == lock.holder


def test_a_model_is_claimed_by_one_running_trial(tmp_path):
    storage = storage_at(tmp_path)
    study = optuna.create_study(study_name="claims", storage=storage)
    mine, theirs = Workers.of(storage, "claims"), Workers.of(storage, "claims")
    first, second, third = study.ask(), study.ask(), study.ask()
    assert mine.claim(study, first, ("model", 1), lambda: None) == (None, None)
    assert first.user_attrs[CLAIM_ATTR]
    assert theirs.claim(study, second, ("model", 1), lambda: None) == (None, first.number)
    assert CLAIM_ATTR not in study.trials[second.number].user_attrs
    assert theirs.claim(study, third, ("model", 2), lambda: None) == (None, None)
    study.tell(first, 1.0)
    done = study.trials[first.number]
    fourth = study.ask()
    assert theirs.claim(study, fourth, ("model", 1), lambda: done) == (done, None)


def check_study(url: str, name: str, n_trials: int) -> optuna.Study:
    """Every plan evaluated once (references included), none left RUNNING, and no two timing
    windows of the study overlapping."""
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.trials
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    evaluated = [
        t for t in trials if t.state.name == "COMPLETE" and DUPLICATE_ATTR not in t.user_attrs
    ]
    assert len(evaluated) == n_trials
    claims = collections.Counter(t.user_attrs[CLAIM_ATTR] for t in evaluated)
    assert max(claims.values()) == 1, "a model was evaluated twice"
    references = [
        t.user_attrs[REFERENCE_ATTR] for t in evaluated if REFERENCE_ATTR in t.user_attrs
    ]
    assert sorted(references) == sorted(
        ["dense fp32", "uniform int8", "uniform 0.5 + int8", "uniform 0.5 fp32"]
    )
    windows = sorted(w for t in trials for w in t.user_attrs.get(WINDOWS_ATTR, []))
    assert len(windows) >= n_trials - 1  # the dense reference may be a cached figure
    overlaps = [(a, b) for a, b in zip(windows, windows[1:], strict=False) if b[0] < a[1]]
    assert not overlaps
    return study


WORKER_ARGS = [
    *TINY,
    "space.ratios=[0.0,0.25,0.5]",
    "study.warm_start=none",
    "target.cache=false",  # every window timed, none answered from the cache
    "study.heartbeat_interval=2",
    "study.grace_period=6",
    "study.rerank_top=null",  # the final step once is what is checked, not re-ranking
]


@pytest.mark.slow
@pytest.mark.integration
def test_three_workers_on_postgresql_evaluate_each_plan_once(tmp_path, resnet20_trained):
    if not POSTGRES:
        pytest.skip("PRUNA_TEST_POSTGRES is not set (.ci/run starts a PostgreSQL server)")
    try:
        open_storage(StudySettings(storage=POSTGRES), attempts=1)
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server at PRUNA_TEST_POSTGRES: {exc}")
    name = f"workers-{uuid.uuid4().hex[:8]}"
    args = [
        *WORKER_ARGS,
        "study.n_trials=6",
        f"study.storage={POSTGRES}",
        f"study.name={name}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    ]
    procs = [start_search(tmp_path, [*args, f"hydra.run.dir=w{i}"]) for i in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    check_study(POSTGRES, name, 6)
    statuses = collections.Counter(
        json.loads((tmp_path / f"w{i}" / "summary.json").read_text())["status"] for i in range(3)
    )
    assert statuses == {"ok": 1, "handed over": 2}
    assert len(list(tmp_path.glob("w*/best.onnx"))) == 1
    check_children(
        tmp_path / "mlflow.db",
        name,
        len(optuna.load_study(study_name=name, storage=POSTGRES).trials),
    )


def check_children(db: Path, study: str, n_trials: int) -> None:
    """One parent run, FINISHED; a FINISHED child with metrics per trial, none twice."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`pruna.study` = '{study}'",
    )
    parents = [r for r in runs if r.data.tags.get("pruna.run") == "study"]
    assert [p.info.status for p in parents] == ["FINISHED"]
    children = client.search_runs(
        [parents[0].info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'",
    )
    numbers = [r.data.tags["pruna.trial"] for r in children]
    assert len(numbers) == len(set(numbers)) == n_trials
    assert {r.info.status for r in children} <= {"FINISHED", "FAILED"}


def timing_lock_holder(db: Path) -> str | None:
    """The holder of an unexpired timing lock in the SQLite storage ``db``, if any."""
    import sqlite3

    if not db.is_file():
        return None
    with sqlite3.connect(db) as connection:
        try:
            rows = connection.execute(
                "SELECT holder FROM pruna_locks WHERE name LIKE 'timing:%' AND holder != '' "
                "AND expires > ?",
                (time.time(),),
            ).fetchall()
        except sqlite3.OperationalError:  # no lock table yet
            return None
    return rows[0][0] if rows else None


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("wait_s", [0, 8], ids=["at_once", "after_the_grace_period"])
def test_killed_while_timing_then_run_again(tmp_path, resnet20_trained, wait_s):
    """Killed in a latency window (holding the timing lock, a trial RUNNING), then run again
    at once (the trial still has a fresh heartbeat: the rerun waits for it to go stale) or
    after the grace period (6 s): every plan once, no window overlapping, best.onnx."""
    args = [*WORKER_ARGS, "study.n_trials=4", "study.name=killed_timing"]
    proc = start_search(tmp_path, args)
    deadline = time.monotonic() + 300
    db = tmp_path / "pruna_search.db"
    # kill it in a window of a trial after the first (the dense one) has finished
    while timing_lock_holder(db) is None or not _finished(db):
        assert proc.poll() is None and time.monotonic() < deadline, "no timing window seen"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(wait_s)
    rerun = subprocess.run(
        [str(BIN / "pruna-search"), *args, "hydra.run.dir=rerun"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PRUNA_SEARCH_PROGRESS": "0"},
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_study(f"sqlite:///{db}", "killed_timing", 4)
    assert (tmp_path / "rerun" / "best.onnx").is_file()


def _finished(db: Path) -> bool:
    import sqlite3

    with sqlite3.connect(db) as connection:
        try:
            done = connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'")
            return done.fetchone()[0] >= 1
        except sqlite3.OperationalError:
            return False
