"""Every key name pruna_search stores: Optuna study and trial attributes, MLflow tags.

One module, so a stored name is spelled once. All start with ``pruna.``; metric names (the
same in results, Optuna attributes and MLflow) live in ``names.py``.
"""

from __future__ import annotations

# --- Optuna study attributes ---
CONFIG_ATTR = "pruna.config"  # the job config the study was created with (JSON)
IDENTITY_ATTR = "pruna.identity"  # what must not change when a study is resumed
UID_ATTR = "pruna.study_uid"  # a random id set at creation (tells apart studies of one name)
# the study's dense reference of latency_ms (ms): stored by the first trial timed, read by every
# later run and worker so all trials are scaled by the same figure
DENSE_MS_ATTR = "pruna.dense_ms"
# a figure flagged noisy that came back steady when measured again after the run (a study
# attribute per trial: a finished trial's own attributes cannot change)
REMEASURED_PREFIX = "pruna.remeasured."
# a trial's accuracy at a higher fidelity (study.rerank_steps), one study attribute per trial and
# step count: ``pruna.reranked.<trial>.<steps>``
RERANKED_PREFIX = "pruna.reranked."
# who chose and exported the study's model last, and when (several workers: the last one to
# finish does it once; search/workers.py)
FINAL_ATTR = "pruna.final"

# --- Optuna trial attributes ---
REFERENCE_ATTR = "pruna.reference"  # the label of a uniform reference trial
FAIL_ATTR = "pruna.fail_reason"
DUPLICATE_ATTR = "pruna.duplicate_of"  # the earlier trial that built the same model
PRUNED_ATTR = "pruna.pruned"  # why a trial was not fine-tuned (latency_first)
# why a trial's fine-tune was stopped early (study.pruner): the step, its proxy accuracy, the rule
STOPPED_ATTR = "pruna.stopped"
PLAN_ATTR = "pruna.plan"  # short plan summary
LATENCY_ATTR = "pruna.latency"  # how the latency was measured (runs, load, noise gate, machine)
NOISY_ATTR = "pruna.noisy"  # why the trial's speedup is at risk (flagged); absent when steady
DRIFT_ATTR = "pruna.drift"  # how the whole host drifted during its window (reported only)
SECONDS_ATTR = "seconds"  # per-stage seconds of a trial (dict)
WARM_START_ATTR = "pruna.warm_start"  # the analysis suggestion a trial was enqueued from
# the trial a WAITING trial evaluates again (aborted by Ctrl-C); Optuna's own retry of a trial
# a killed process left RUNNING carries the system attribute ``failed_trial``
RETRY_ATTR = "pruna.retry_of"
# the model a RUNNING trial evaluates (a digest of its model key), claimed under the study's lock
# so no two workers evaluate one model at once
CLAIM_ATTR = "pruna.claim"
# a trial skipped because another worker's trial was evaluating the same model (its number)
BUSY_ATTR = "pruna.running_in"
# the trial's constraint values as user attributes too (optuna-dashboard 0.21 shows user
# attributes but reads constraints only in Optuna's older list format): ``pruna.constraint.<name>``
# (feasible when every one is <= 0)
CONSTRAINT_PREFIX = "pruna.constraint."
# the trial's latency windows: [start, end, seconds waited for the timing lock] (time.time())
WINDOWS_ATTR = "pruna.timing_windows"

# --- MLflow tags ---
STUDY_TAG = "pruna.study"
# one Optuna study, not just its name: a study deleted and created again gets a new parent run
STUDY_UID_TAG = "pruna.study_uid"
SWEEP_TAG = "pruna.sweep"
RUN_KIND_TAG = "pruna.run"  # "study" (the parent) or "trial" (a child)
TRIAL_TAG = "pruna.trial"
PARETO_TAG = "pruna.pareto"
CHOSEN_TAG = "pruna.chosen"
CHOSEN_TRIAL_TAG = "pruna.chosen_trial"  # on a registered model version
ONNX_SHA256_TAG = "pruna.onnx_sha256"  # a registered version's file, to register it once
# a flagged latency figure measured again steady after the run (what it was)
REMEASURED_TAG = "pruna.remeasured"
REFERENCE_TAG = REFERENCE_ATTR
DUPLICATE_TAG = DUPLICATE_ATTR
FAIL_TAG = FAIL_ATTR
FEASIBLE_TAG = "pruna.feasible"
PLAN_TAG = PLAN_ATTR
WARM_START_TAG = WARM_START_ATTR
PRUNED_TAG = PRUNED_ATTR
STOPPED_TAG = STOPPED_ATTR
NOISY_TAG = NOISY_ATTR
LATENCY_TAG_PREFIX = "pruna.latency."  # how a trial's latency was measured, one tag per field
ANALYSIS_TAG = "pruna.analysis"  # the digest of a Model Analyzer run (pruna-search-analyze)
MODEL_TAG = "pruna.model"
DATA_TAG = "pruna.data"
TARGET_TAG = "pruna.target"
OBJECTIVE_TAG = "pruna.objective"
SAMPLER_TAG = "pruna.sampler"
OVERRIDES_TAG = "pruna.overrides"
GIT_COMMIT_TAG = "pruna.git_commit"
VERSION_TAG_PREFIX = "pruna.version."  # the versions of the libraries that made the study
HARDWARE_TAG_PREFIX = "pruna.hardware."  # the machine that measured
