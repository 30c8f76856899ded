"""Several workers on one study: what they share through the study's storage (decision 26).

Any number of ``pruna-search`` processes, on one machine or several, may run the same study
(the same config and ``study.storage``, PostgreSQL across machines). Through the storage:
- **every plan evaluated once**: a trial claims the model it builds under the study's lock
  (``claim``); a trial of another worker building the same model meanwhile is skipped (PRUNED,
  ``pruna.running_in``) and its worker's sampler reseeded, so workers started with one seed
  stop proposing the same plans;
- **one timing window at a time per measuring device**: every window holds the lock
  ``timing:<device>`` (this host, or the agent's URL); its start, end and wait are recorded on
  the trial (``pruna.timing_windows``);
- **the study created, its reference and warm-start trials enqueued, its MLflow parent run
  found once**: under the study's lock;
- **the final export once**: a worker with no plan left to start waits for the other workers'
  last trials (and evaluates more when one ends without a plan); the last to finish re-ranks,
  chooses and exports under the lock ``final:<name>`` and records it (``pruna.final``); a
  worker that finds it done since it started ends ``handed over``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.keys import BUSY_ATTR, CLAIM_ATTR, FINAL_ATTR
from ..measure import LockedRunner, TimingWindow, device_key
from .evaluate import Evaluator
from .locks import LEASE_S, StorageLock, heartbeats
from .study import FrozenTrial, Trial, running


def model_digest(key: tuple) -> str:
    """A short digest of a model key (``space.model_key``) to store on a trial."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:16]


@dataclass
class Workers:
    """How this process works beside others on the study ``name`` (see the module's doc).

    Attributes:
        engine: the storage's SQLAlchemy engine (``RDBStorage.engine``).
        study_lock: ``study:<name>``, held briefly (creating, enqueueing, claiming).
        final_lock: ``final:<name>``, held while choosing, re-ranking and exporting.
        timing: the evaluator's runner, wrapped to hold ``timing:<device>`` (None: no timing).
        started: when this worker started (``time.time()``).
    """

    engine: Any
    study_lock: StorageLock
    final_lock: StorageLock
    timing: LockedRunner | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    def of(cls, storage, name: str, evaluator: Evaluator | None = None) -> Workers:
        """The workers of study ``name`` in ``storage`` (an Optuna ``RDBStorage``); the
        evaluator's runner is wrapped so its windows hold the device's timing lock. A killed
        worker's locks are free again after the storage's grace period (``study.grace_period``,
        as its trial is retried)."""
        engine = storage.engine
        lease = float(storage.grace_period or LEASE_S)
        timing = None
        if evaluator is not None and evaluator.runner is not None:
            lock = StorageLock(engine, f"timing:{device_key(evaluator.runner)}", lease_s=lease)
            timing = LockedRunner(evaluator.runner, lock.hold)
            evaluator.runner = timing
        study_lock = StorageLock(engine, f"study:{name}", lease_s=lease)
        final_lock = StorageLock(engine, f"final:{name}", lease_s=lease)
        return cls(engine, study_lock, final_lock, timing)

    # --- claims ---

    def claim(
        self, study, trial: Trial, key: tuple, done: Callable[[], FrozenTrial | None]
    ) -> tuple[FrozenTrial | None, int | None]:
        """Under the study's lock: (the completed trial that evaluated the model ``key``,
        None) when there is one; (None, the number of another RUNNING trial evaluating it)
        when there is one; else (None, None) after claiming the model for ``trial``.
        Running trials are read before completed ones, so a trial finishing in between is
        seen as one or the other."""
        digest = model_digest(key)
        with self.study_lock.hold():
            busy = [
                t.number
                for t in running(study)
                if t.number != trial.number and t.user_attrs.get(CLAIM_ATTR) == digest
            ]
            previous = done()
            if previous is None and not busy:
                trial.set_user_attr(CLAIM_ATTR, digest)
        if previous is not None:
            return previous, None
        return None, (min(busy) if busy else None)

    def skip_busy(self, study, trial: Trial, other: int) -> str:
        """Mark ``trial`` skipped for ``other`` (which evaluates the same model) and reseed the
        sampler, which proposed what another worker's sampler had; the reason."""
        trial.set_user_attr(BUSY_ATTR, other)
        study.sampler.reseed_rng()
        return f"the same model is being evaluated by trial {other} (another worker)"

    # --- timing windows ---

    def windows(self, since: int = 0) -> list[TimingWindow]:
        """This worker's timing windows from the ``since``-th on."""
        return [] if self.timing is None else self.timing.windows[since:]

    def window_count(self) -> int:
        return 0 if self.timing is None else len(self.timing.windows)

    # --- liveness ---

    def beats(self, trials: list[FrozenTrial]) -> dict[int, object]:
        """The last heartbeat of each trial (by number)."""
        by_id = {t._trial_id: t.number for t in trials}
        return {by_id[i]: beat for i, beat in heartbeats(self.engine, list(by_id)).items()}

    # --- the final step ---

    def final_by_other(self, study) -> dict[str, Any] | None:
        """What another worker recorded when it chose and exported since this one started."""
        record = study.user_attrs.get(FINAL_ATTR)
        if not record:
            return None
        record = json.loads(record)
        if record.get("holder") == self.final_lock.holder or record["time"] < self.started:
            return None
        return record

    def record_final(self, study, output_dir: str) -> None:
        """Say that this worker chose and exported (read by ``final_by_other``)."""
        record = {"time": time.time(), "holder": self.final_lock.holder, "output": output_dir}
        study.set_user_attr(FINAL_ATTR, json.dumps(record))


__all__ = ["Workers", "model_digest"]
