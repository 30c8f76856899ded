"""Benchmark MLflow tracking (issue 4's target: <= 50 ms of tracking per trial on SQLite).

Logs a study of ``--trials`` trials shaped like ResNet-20's default space (12 ``prune/`` and
22 ``bits/`` params, 3 summaries, 11 metrics, tags, the plan as YAML) to a fresh SQLite store
through the real ``MlflowTracker``, then times the end of the study: parameter importances
(fANOVA), the plots (PNG + interactive HTML), the artifacts, and registering an ONNX model.

    .venv/bin/python scripts/bench_tracking.py [--trials 100]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna

from pruna_search.core import names
from pruna_search.report import plots
from pruna_search.search.study import param_importances
from pruna_search.tracking import StudyEnd, StudyRecord, TrialRecord
from pruna_search.tracking.mlflow_tracker import MlflowTracker

GROUPS = [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)] + [
    "conv1",
    "layer2.0.conv2",
    "layer3.0.conv2",
]
LAYERS = [f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in range(3) for c in (1, 2)] + [
    "conv1",
    "layer2.0.shortcut",
    "layer3.0.shortcut",
    "fc",
]
RATIOS = (0.0, 0.25, 0.5, 0.625, 0.75)


def fake_trial(number: int, rng: random.Random) -> tuple[dict, dict]:
    params = {f"prune/{g}": rng.choice(RATIOS) for g in GROUPS}
    params |= {f"bits/{layer}": rng.choice(("fp32", "int8")) for layer in LAYERS}
    mean = sum(v for k, v in params.items() if k.startswith("prune/")) / len(GROUPS)
    speedup = 1 + 3 * mean + rng.random() * 0.3
    accuracy = 0.997 - 0.03 * mean**2 - rng.random() * 0.005
    metrics = {
        names.ACCURACY: accuracy,
        names.ACCURACY_DROP: 0.997 - accuracy,
        names.LATENCY: 0.95 / speedup,
        names.LATENCY_P10: 0.95 / speedup,
        names.LATENCY_P50: 0.97 / speedup,
        names.LATENCY_P90: 1.0 / speedup,
        names.SPEEDUP: speedup,
        names.SIZE_MB: 1.1 * (1 - mean) ** 2,
        names.COMPRESSION: 1 / max(0.05, (1 - mean) ** 2),
        names.MACS: 40e6 * (1 - mean) ** 2,
        names.PARAMS: 270e3 * (1 - mean) ** 2,
        names.TRIAL_SECONDS: 40 + rng.random() * 20,
    }
    return params, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(0)
    trials = [fake_trial(n, rng) for n in range(args.trials)]
    plan_yaml = (
        "prune:\n"
        + "".join(f"  {g}: 0.5\n" for g in GROUPS)
        + "precision:\n"
        + "".join(f"  {layer}: int8\n" for layer in LAYERS)
    )
    with tempfile.TemporaryDirectory(prefix="bench_tracking_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        tracker = MlflowTracker(f"sqlite:///{tmp}/mlflow.db")
        config = {f"section{i}.key{j}": j for i in range(8) for j in range(8)}
        tracker.start_study(StudyRecord(study="bench", experiment="bench", params=config))
        setup = time.perf_counter() - start
        seconds = []
        for number, (params, metrics) in enumerate(trials):
            record = TrialRecord(
                number=number,
                state="COMPLETE",
                params={**params, "mean_ratio": 0.4, "int8_layers": 11, "int4_layers": 0},
                metrics=metrics,
                tags={"pruna.plan": "prune 0.40 avg", "pruna.feasible": "true"},
                plan_yaml=plan_yaml,
            )
            t0 = time.perf_counter()
            tracker.log_trial(record)
            seconds.append(time.perf_counter() - t0)
        ms = sorted(s * 1000 for s in seconds)
        print(
            f"store setup (new SQLite store, experiment, parent run): {setup:.2f} s\n"
            f"log_trial over {len(ms)} trials: mean {statistics.mean(ms):.1f} ms, "
            f"p50 {ms[len(ms) // 2]:.1f} ms, p90 {ms[int(len(ms) * 0.9)]:.1f} ms, "
            f"max {ms[-1]:.1f} ms -> {'PASS' if statistics.mean(ms) <= 50 else 'MISS'} "
            "(target <= 50 ms)"
        )

        # the end of the study: importances, plots, artifacts, the registry
        study = optuna.create_study(directions=["maximize", "minimize"])
        distributions = {
            k: optuna.distributions.CategoricalDistribution(
                RATIOS if k.startswith("prune/") else ("fp32", "int8")
            )
            for k in trials[0][0]
        }
        rows = []
        for number, (params, metrics) in enumerate(trials):
            study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    values=[metrics[names.ACCURACY], metrics[names.LATENCY]],
                    user_attrs=metrics,
                )
            )
            rows.append(
                {
                    **metrics,
                    "number": number,
                    "reference": "",
                    "feasible": True,
                    "plan": "p",
                    "duplicate_of": None,
                }
            )
        t0 = time.perf_counter()
        importances = param_importances(
            study, {names.ACCURACY: names.ACCURACY, names.LATENCY: names.LATENCY}
        )
        t_importance = time.perf_counter() - t0
        layers = [
            {"name": layer, "ratio": 0.5, "precision": "int8", "kept": 8, "channels": 16}
            for layer in LAYERS
        ]
        t0 = time.perf_counter()
        files = plots.write_plots(
            tmp,
            plots.PlotData(
                rows=rows,
                chosen=3,
                budget="accuracy drop <= 1 points",
                importances=importances,
                layers=layers,
                layers_title="chosen",
            ),
        )
        t_plots = time.perf_counter() - t0
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_tracking import tiny_onnx  # a real, small ONNX model

        model = tiny_onnx(tmp / "best.onnx")
        t0 = time.perf_counter()
        tracker.end_study(
            StudyEnd(
                pareto=list(range(10)),
                chosen=3,
                metrics=trials[3][1],
                artifacts=files,
                model=model,
                model_name="bench-model",
                model_tags={"speedup": "2.0"},
            )
        )
        tracker.close()
        t_end = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"end of study ({len(trials)} trials): importances (fANOVA) {t_importance:.2f} s, "
            f"plots {t_plots:.2f} s ({len(files)} files, {size:.1f} MB), "
            f"tags + artifacts + registered ONNX model {t_end:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
