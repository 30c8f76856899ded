"""What the Model Analyzer writes: ``analysis.md`` and ``analysis.json`` from its record (the
``Analysis.to_dict()`` mapping; the plots are in ``plots.py``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.files import atomic_write_text
from .summary import markdown_table

TOP_LAYERS = 12  # layers listed in the latency table (the slowest first)


def write_analysis(folder: Path, record: Mapping[str, Any]) -> list[Path]:
    """``analysis.json`` and ``analysis.md`` in ``folder``."""
    json_path = atomic_write_text(
        folder / "analysis.json", json.dumps(record, indent=2, default=str) + "\n"
    )
    lines = [
        *_header(record),
        *_latency(record),
        *_sensitivity(record),
        *_suggestions(record),
    ]
    return [json_path, atomic_write_text(folder / "analysis.md", "\n".join(lines) + "\n")]


def _header(record: Mapping[str, Any]) -> list[str]:
    seconds = record.get("seconds", {})
    parts = {k: v for k, v in seconds.items() if k != "total"}
    took = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in parts.items())
    int8 = record.get("int8_run_ms")
    return [
        f"# pruna_search analysis: {record.get('model', '')} on {record.get('target', '')}",
        "",
        f"- dense accuracy {record['dense_accuracy']:.4f} on the analysis subset; one run "
        f"profiled at {record['fp32_run_ms']:.3f} ms fp32"
        + (f", {int8:.3f} ms int8" if int8 else "")
        + " (ONNX Runtime's profiler; the protocol's figures come from timed windows)",
        f"- took {seconds.get('total', sum(parts.values())):.1f} s: {took}",
        "",
        "![sensitivity](sensitivity.png) ![latency](latency.png)",
        "",
        "Interactive: `analysis.html`.",
        "",
    ]


def _latency(record: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            layer["module"],
            layer["group"] or "",
            f"{layer['fp32_ms']:.4f}",
            "" if layer["int8_ms"] is None else f"{layer['int8_ms']:.4f}",
            "" if layer["int8_gain"] is None else f"{layer['int8_gain']:.2f}x",
        ]
        for layer in record["layers"][:TOP_LAYERS]
    ]
    header = ("layer", "group", "fp32 ms", "int8 ms", "int8 gain")
    return [
        f"## Where the time goes (the {min(TOP_LAYERS, len(record['layers']))} slowest layers)",
        "",
        *markdown_table(header, rows),
        "",
    ]


def _sensitivity(record: Mapping[str, Any]) -> list[str]:
    dense = record["dense_accuracy"]
    prune = record["sensitivity"]["prune"]
    ratios = sorted({r for by in prune.values() for r in by}, key=float)
    rows = [
        [group, *[_drop(dense, by.get(r)) for r in ratios]] for group, by in sorted(prune.items())
    ]
    precision = record["sensitivity"]["precision"]
    kinds = sorted({p for by in precision.values() for p in by})
    layer_rows = [
        [layer, *[_drop(dense, by.get(p)) for p in kinds]]
        for layer, by in sorted(precision.items())
    ]
    return [
        "## What each group and layer can lose (points; BatchNorm recalibrated, no fine-tune)",
        "",
        *markdown_table(("group", *[f"pruned {float(r):g}" for r in ratios]), rows),
        "",
        *markdown_table(("layer", *kinds), layer_rows),
        "",
    ]


def _drop(dense: float, metric: float | None) -> str:
    return "" if metric is None else f"{(dense - metric) * 100:+.2f}"


def _suggestions(record: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            f"{s['budget'] * 100:g} pt",
            s["summary"],
            f"{s['predicted_loss'] * 100:.2f}",
            f"{s['accuracy']:.4f}",
            f"{s['speedup']:.2f}x",
        ]
        for s in record["suggestions"]
    ]
    header = ("budget", "plan", "predicted loss (pt)", "accuracy, no fine-tune", "speedup")
    never: Sequence[str] = record.get("never_worth", [])
    return [
        "## Suggested plans",
        "",
        "Per budget, the plan with the most time saved whose predicted loss (the sum of its "
        "changes' drops above) fits: a knapsack over the two profiles. Each was built, exported, "
        "scored (no fine-tune: the fine-tune wins much of the loss back) and timed against the "
        "dense model in one window.",
        "",
        *markdown_table(header, rows),
        "",
        "Never worth touching at these budgets: " + (", ".join(never) if never else "none") + ".",
    ]


__all__ = ["write_analysis"]
