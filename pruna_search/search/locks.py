"""Named locks with a lease, and running trials' heartbeats, in the study's storage database.
The only importer of SQLAlchemy.

Several workers on one study (processes on one or more machines sharing ``study.storage``)
coordinate through these locks (design decision 26; ``search/workers.py`` names them):
``timing:<device>`` (one latency window at a time per measuring device), ``study:<name>``
(creating the study, enqueueing, claiming a model) and ``final:<name>`` (re-ranking, choosing
and exporting once).

A lock is a row of the table ``pruna_locks`` (created on first use, beside Optuna's tables):
its holder and the time its lease expires. Taking it is one conditional UPDATE (free, expired,
or already ours), atomic in SQLite and PostgreSQL alike; the holder renews the lease from a
thread while it holds the lock, so a held lock never expires, and a killed holder's lock is free
again ``lease_s`` seconds after its last renewal. Lease times are the workers' own clocks: the
machines must keep time (NTP) to within a fraction of the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("pruna_search")

# a killed holder's lock is free again this long after its last renewal (workers use the study's
# grace_period: search/workers.py)
LEASE_S = 30.0
POLL_S = 0.2  # how often a waiting worker asks again
SAY_WAIT_S = 5.0  # a wait longer than this is said in the log

_CREATE = (
    "CREATE TABLE IF NOT EXISTS pruna_locks ("
    "name VARCHAR(255) PRIMARY KEY, holder VARCHAR(255) NOT NULL, "
    "expires DOUBLE PRECISION NOT NULL)"
)
_ADD = (
    "INSERT INTO pruna_locks (name, holder, expires) VALUES (:name, '', 0) ON CONFLICT DO NOTHING"
)
_TAKE = (
    "UPDATE pruna_locks SET holder = :holder, expires = :expires "
    "WHERE name = :name AND (holder = :holder OR holder = '' OR expires < :now)"
)
_STEAL = (
    "UPDATE pruna_locks SET holder = :holder, expires = :expires "
    "WHERE name = :name AND holder = :dead"
)
_RENEW = "UPDATE pruna_locks SET expires = :expires WHERE name = :name AND holder = :holder"
_FREE = "UPDATE pruna_locks SET holder = '', expires = 0 WHERE name = :name AND holder = :holder"
_HOLDER = "SELECT holder, expires FROM pruna_locks WHERE name = :name"


def heartbeats(engine: Engine, trial_ids: list[int]) -> dict[int, object]:
    """The last heartbeat Optuna recorded for each of ``trial_ids`` (its table
    ``trial_heartbeats``; the database's clock), for the trials that have one."""
    if not trial_ids:
        return {}
    query = text("SELECT trial_id, heartbeat FROM trial_heartbeats WHERE trial_id IN :ids")
    query = query.bindparams(bindparam("ids", expanding=True))
    with engine.connect() as connection:
        return {int(r[0]): r[1] for r in connection.execute(query, {"ids": list(trial_ids)})}


def holder_id() -> str:
    """This process, as a lock holder: ``host:pid:random`` (unique even across machines)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StorageLock:
    """The lock ``name`` in the database behind ``engine`` (an Optuna ``RDBStorage.engine``).

    ``with lock.hold() as waited:`` blocks until the lock is taken and yields the seconds it
    waited. Re-entrant within one ``StorageLock`` object (one holder id per object).
    """

    def __init__(self, engine: Engine, name: str, *, lease_s: float = LEASE_S) -> None:
        self.engine, self.name, self.lease_s = engine, name, lease_s
        self.holder = holder_id()
        self._depth = 0
        self._ready = False

    def _prepare(self) -> None:
        """The table and the lock's row, once (two workers creating the table at once: the
        loser's CREATE fails, and the table is there)."""
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    connection.execute(text(_CREATE))
                    connection.execute(text(_ADD), {"name": self.name})
                break
            except DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(POLL_S)
        self._ready = True

    def _execute(self, sql: str, **values: object) -> int:
        if not self._ready:
            self._prepare()
        with self.engine.begin() as connection:
            return connection.execute(text(sql), {"name": self.name, **values}).rowcount

    def try_take(self) -> bool:
        """Take the lock if it is free, expired or ours, or held by a process of this host
        that no longer exists (killed: no need to wait for its lease); True when taken."""
        now = time.time()
        taken = self._execute(_TAKE, holder=self.holder, expires=now + self.lease_s, now=now)
        if taken == 1:
            return True
        dead = self._dead_holder()
        if dead is None:
            return False
        log.info(f"lock     {self.name}: its holder {dead} is gone; taken over")
        expires = now + self.lease_s
        return self._execute(_STEAL, holder=self.holder, expires=expires, dead=dead) == 1

    def _dead_holder(self) -> str | None:
        """The lock's holder when it is a process of this host that has exited, else None."""
        holder = self.held_by()
        if holder is None or holder == self.holder:
            return None
        host, pid, _ = holder.rsplit(":", 2)
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return holder
        except PermissionError:  # alive, another user's
            return None
        return None

    def release(self) -> None:
        self._execute(_FREE, holder=self.holder)

    def held_by(self) -> str | None:
        """The holder of an unexpired lease, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(text(_HOLDER), {"name": self.name}).first()
        if row is None or not row[0] or float(row[1]) < time.time():
            return None
        return str(row[0])

    @contextmanager
    def hold(self) -> Iterator[float]:
        """Hold the lock for the ``with`` block; yields the seconds waited for it."""
        if self._depth:
            self._depth += 1
            try:
                yield 0.0
            finally:
                self._depth -= 1
            return
        asked, waited, said = time.monotonic(), 0.0, False  # 0.0: taken at the first try
        while not self.try_take():
            time.sleep(POLL_S)
            waited = time.monotonic() - asked
            if waited > SAY_WAIT_S and not said:
                said = True
                log.info(
                    f"lock     waiting for {self.name}, held by {self.held_by()} (another "
                    f"worker; a killed one's lease ends {self.lease_s:g} s after its last renewal)"
                )
        self._depth = 1
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop,), daemon=True)
        renewer.start()
        try:
            yield waited
        finally:
            stop.set()
            renewer.join()
            self._depth = 0
            self.release()

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease_s / 3):
            self._execute(_RENEW, holder=self.holder, expires=time.time() + self.lease_s)


__all__ = ["LEASE_S", "StorageLock", "heartbeats", "holder_id"]
