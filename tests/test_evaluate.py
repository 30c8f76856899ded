"""The Evaluator: one dense baseline, many plans scored against it."""

from __future__ import annotations

import dataclasses

import onnx
import pytest
import torch

from pruna_search import Plan, PlanError, models
from pruna_search.core import names
from pruna_search.core.target import CPU
from pruna_search.search import Evaluator, EvaluatorOptions

QUICK = dataclasses.replace(CPU, warmup=5, min_runs=20, max_runs=40, noise_retries=0)


def test_many_plans_against_one_dense_export(digits, tmp_path):
    torch.manual_seed(0)
    model = models.build("cnn", data=digits)
    evaluator = Evaluator(model, digits, QUICK, workdir=tmp_path)
    dense_bytes = evaluator.dense_path.read_bytes()
    assert set(evaluator.seconds) == {"analyze", "export_dense", "evaluate_dense"}
    groups = evaluator.info.group_names
    plans = [
        Plan(),
        Plan(prune={g: 0.5 for g in groups}),
        # pruned too: the dense int8 model is the probe, and a candidate is not its own probe
        Plan.uniform(evaluator.info, pruning_ratio=0.5, quantization_bits=8),
    ]
    results = [evaluator.evaluate(p, name=f"p{i}") for i, p in enumerate(plans)]
    assert evaluator.dense_path.read_bytes() == dense_bytes  # never re-exported
    assert sorted(p.name for p in tmp_path.glob("p*.onnx")) == [
        "p0.fp32.onnx",
        "p0.onnx",
        "p1.fp32.onnx",
        "p1.onnx",
        "p2.fp32.onnx",
        "p2.onnx",
    ]
    dense, pruned, int8 = (r.metrics for r in results)
    assert dense[names.ACCURACY_DROP] == 0.0  # the unchanged plan scores as the baseline
    assert pruned[names.MACS] < 0.4 * evaluator.baseline[names.MACS]
    assert int8[names.SIZE_MB] < 0.5 * evaluator.baseline[names.SIZE_MB]
    for result in results:
        metrics = result.metrics
        assert {names.SPEEDUP, names.LATENCY_P10, names.COMPRESSION} <= set(metrics)
        # latency_ms: one dense reference, fixed by the first steady window, over each
        # speedup; a flagged window before it was fixed is scaled by its own dense p10
        scale = metrics[names.LATENCY] * metrics[names.SPEEDUP]
        if evaluator.dense_ms is None or scale != pytest.approx(evaluator.dense_ms):
            assert result.latency.noisy and scale == pytest.approx(result.latency.baseline.p10)
    assert results[1].seconds.keys() >= {"prune", "export", "quantize", "evaluate", "measure"}
    # the int8 plan's window also timed the dense model at int8, built once, as a probe
    assert results[0].latency.reference is None and results[1].latency.reference is None
    assert results[2].latency.reference is not None
    assert evaluator.int8_probe() == tmp_path / "dense.int8.onnx"
    assert "build_int8_probe" in evaluator.seconds


def test_a_plan_is_validated_before_any_work(digits, tmp_path):
    evaluator = Evaluator(
        models.build("cnn", data=digits),
        digits,
        "cpu",
        workdir=tmp_path,
        options=EvaluatorOptions(measure_latency=False),
    )
    with pytest.raises(PlanError, match="not a prunable group"):
        evaluator.evaluate(Plan(prune={"nope": 0.5}), name="bad")
    assert not list(tmp_path.glob("bad*"))


def test_dense_reference_is_not_fixed_by_a_flagged_window(digits, tmp_path):
    """Without a floor, the first window the noise gate flagged does not fix the study's dense
    reference (its dense p10 was measured in a slow phase); the first steady one does."""
    from pruna_search.measure.latency import Latency, LatencyComparison

    torch.manual_seed(0)
    evaluator = Evaluator(models.build("cnn", data=digits), digits, QUICK, workdir=tmp_path)

    def window(dense_p10: float, p10: float, noisy: bool) -> LatencyComparison:
        return LatencyComparison(
            candidate=Latency(p10=p10, p50=p10, p90=p10, runs=100),
            baseline=Latency(p10=dense_p10, p50=dense_p10, p90=dense_p10, runs=100),
            noisy=noisy,
        )

    slow = window(0.95, 0.40, noisy=True)  # a slow phase: the dense model 19 % slower
    assert evaluator.steady_ms(slow) == pytest.approx(0.40) and evaluator.dense_ms is None
    steady = window(0.80, 0.32, noisy=False)
    assert evaluator.steady_ms(steady) == pytest.approx(0.32) and evaluator.dense_ms == 0.80
    # fixed from then on: the slow window's figure is scaled by the steady reference
    assert evaluator.steady_ms(slow) == pytest.approx(0.80 / (0.95 / 0.40))


def test_a_precision_only_plan_quantizes_the_dense_export(digits, tmp_path):
    """``at_precisions`` (the analyzer's int8 sensitivities) skips copy, export and parity
    check: the model is the one the whole pipeline builds, so it scores the same."""
    torch.manual_seed(0)
    model = models.build("cnn", data=digits)
    evaluator = Evaluator(
        model, digits, QUICK, workdir=tmp_path, options=EvaluatorOptions(measure_latency=False)
    )
    layer = evaluator.info.layers[0].name
    plan = Plan(precision={layer: "int8"}, finetune=dataclasses.replace(Plan().finetune, steps=0))
    path = evaluator.at_precisions(plan, "quick")
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert evaluator.score(path) == evaluator.score_without_finetune(plan)
    # the next layer's variant reads the activation ranges the first one calibrated, and
    # quantizes them exactly as a calibration of its own would
    assert (tmp_path / "dense.calibration.json").is_file()
    other = Plan(precision={evaluator.info.layers[1].name: "int8"}, finetune=plan.finetune)
    cached = onnx.load(str(evaluator.at_precisions(other, "cached")))
    calibrated = onnx.load(str(evaluator.recalibrated(other, "calibrated")))
    assert cached.graph.SerializeToString() == calibrated.graph.SerializeToString()
    with pytest.raises(ValueError, match="prunes or fine-tunes"):
        evaluator.at_precisions(Plan(prune={evaluator.info.group_names[0]: 0.5}), "no")
