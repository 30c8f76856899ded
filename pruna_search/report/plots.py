"""End-of-study plots (the only importer of matplotlib and plotly).

PNG files for the report and the MLflow artifact view, and one self-contained interactive HTML
(``plots.html``, plotly.js embedded so it opens offline): the Pareto front (accuracy against
latency, reference trials and the chosen trial marked), the optimization history, parameter
importances, and the chosen plan layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from ..core import names  # noqa: E402
from ..core.files import atomic_write_text  # noqa: E402
from .front import hypervolume, pareto_front  # noqa: E402

Row = Mapping[str, Any]
PNG_FILES = ("pareto.png", "history.png", "importance.png", "layers.png")
HTML_FILE = "plots.html"


def _groups(rows: Sequence[Row], chosen: int | None) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {"searched": [], "reference": [], "chosen": []}
    for r in rows:
        if r.get("duplicate_of") is not None:
            continue
        key = "chosen" if r["number"] == chosen else "reference" if r["reference"] else "searched"
        out[key].append(r)
    return out


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


class _Style(TypedDict):
    marker: str
    color: str
    s: float


STYLES: dict[str, _Style] = {
    "searched": dict(marker="o", color="tab:blue", s=22),
    "reference": dict(marker="s", color="tab:orange", s=40),
    "chosen": dict(marker="*", color="tab:red", s=220),
}
SYMBOLS = {"searched": "circle", "reference": "square", "chosen": "star"}


def pareto_figures(rows: Sequence[Row], front: Sequence[Row], chosen: int | None, budget: str):
    """The front and every trial, accuracy against latency: a PNG figure and its HTML twin."""
    groups = _groups(rows, chosen)
    front_sorted = sorted(front, key=lambda r: r[names.LATENCY])
    return _pareto_png(groups, front_sorted, budget), _pareto_html(groups, front_sorted, budget)


def _pareto_png(groups: Mapping[str, Sequence[Row]], front: Sequence[Row], budget: str):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(
        [r[names.LATENCY] for r in front],
        [r[names.ACCURACY] for r in front],
        "-",
        color="0.6",
        lw=1,
        label="Pareto front",
        zorder=1,
    )
    for key, group in groups.items():
        if group:
            ax.scatter(
                [r[names.LATENCY] for r in group],
                [r[names.ACCURACY] for r in group],
                label=f"{key} ({len(group)})",
                zorder=2 if key != "chosen" else 3,
                alpha=0.85 if key == "searched" else 1.0,
                **STYLES[key],
            )
    ax.set_xlabel("latency (ms at the dense reference, lower is better)")
    ax.set_ylabel("accuracy (ONNX model, validation split)")
    ax.set_title(f"Accuracy against measured latency — budget: {budget}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _pareto_html(groups: Mapping[str, Sequence[Row]], front: Sequence[Row], budget: str):
    html = go.Figure()
    html.add_trace(
        go.Scatter(
            x=[r[names.LATENCY] for r in front],
            y=[r[names.ACCURACY] for r in front],
            mode="lines",
            name="Pareto front",
            line={"color": "gray"},
        )
    )
    for key, group in groups.items():
        if group:
            html.add_trace(
                go.Scatter(
                    x=[r[names.LATENCY] for r in group],
                    y=[r[names.ACCURACY] for r in group],
                    mode="markers",
                    name=key,
                    marker={"size": 16 if key == "chosen" else 9, "symbol": SYMBOLS[key]},
                    text=[_hover(r) for r in group],
                    hoverinfo="text",
                )
            )
    html.update_layout(
        title=f"Pareto front — budget: {budget}",
        xaxis_title="latency (ms at the dense reference)",
        yaxis_title="accuracy",
    )
    return html


def _hover(r: Row) -> str:
    return (
        f"trial {r['number']}: {r.get('plan', '')}"
        + (f" [{r['reference']}]" if r.get("reference") else "")
        + f"<br>{r[names.SPEEDUP]:.2f}x, drop {r[names.ACCURACY_DROP] * 100:.2f} pt"
    )


def history_figures(rows: Sequence[Row]):
    ordered = sorted((r for r in rows if r.get("duplicate_of") is None), key=lambda r: r["number"])
    numbers = [r["number"] for r in ordered]
    volumes = [hypervolume(ordered[: i + 1]) for i in range(len(ordered))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    colors = ["tab:blue" if r["feasible"] else "tab:gray" for r in ordered]
    top.scatter(numbers, [r[names.SPEEDUP] for r in ordered], c=colors, s=18)
    top.set_ylabel("speedup (x dense)")
    top.set_title("Trials in order (gray: over budget)", fontsize=10)
    top.grid(alpha=0.3)
    bottom.step(numbers, volumes, where="post", color="tab:green")
    bottom.set_ylabel("hypervolume so far")
    bottom.set_xlabel("trial")
    bottom.grid(alpha=0.3)
    html = go.Figure()
    html.add_trace(
        go.Scatter(
            x=numbers,
            y=[r[names.SPEEDUP] for r in ordered],
            mode="markers",
            name="speedup",
            marker={"color": ["steelblue" if r["feasible"] else "gray" for r in ordered]},
            text=[f"trial {r['number']}: {r.get('plan', '')}" for r in ordered],
        )
    )
    html.add_trace(
        go.Scatter(
            x=numbers,
            y=volumes,
            mode="lines",
            name="hypervolume so far",
            yaxis="y2",
            line={"shape": "hv"},
        )
    )
    html.update_layout(
        title="Optimization history",
        xaxis_title="trial",
        yaxis={"title": "speedup"},
        yaxis2={"title": "hypervolume", "overlaying": "y", "side": "right"},
    )
    return fig, html


def importance_figures(importances: Mapping[str, Mapping[str, float]]):
    """``importances``: objective name -> {param: importance}."""
    params = sorted({p for values in importances.values() for p in values})
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(params) + 1)))
    html = go.Figure()
    if not params:
        ax.text(0.5, 0.5, "not enough trials to rank parameters", ha="center", va="center")
        ax.axis("off")
        return fig, html
    height = 0.8 / max(1, len(importances))
    for i, (objective, values) in enumerate(importances.items()):
        ax.barh(
            [j + i * height for j in range(len(params))],
            [values.get(p, 0.0) for p in params],
            height=height,
            label=objective,
        )
        html.add_trace(
            go.Bar(
                y=params, x=[values.get(p, 0.0) for p in params], orientation="h", name=objective
            )
        )
    ax.set_yticks([j + height * (len(importances) - 1) / 2 for j in range(len(params))])
    ax.set_yticklabels(params, fontsize=8)
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("Which choices matter", fontsize=10)
    ax.legend(fontsize=8)
    html.update_layout(title="Parameter importances (fANOVA)", barmode="group")
    return fig, html


def layer_figures(layers: Sequence[Mapping[str, Any]], title: str):
    """``layers``: one row per quantizable layer: name, ratio, precision, channels kept/total."""
    names_ = [row["name"] for row in layers]
    ratios = [row["ratio"] for row in layers]
    colors = {"fp32": "tab:blue", "int8": "tab:orange", "int4": "tab:red"}
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(layers) + 2), 4))
    ax.bar(range(len(layers)), ratios, color=[colors.get(r["precision"], "k") for r in layers])
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(names_, rotation=75, fontsize=7)
    ax.set_ylabel("channels removed")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    for precision, color in colors.items():
        ax.bar([0], [0], color=color, label=precision)
    ax.legend(fontsize=8)
    html = go.Figure(
        go.Bar(
            x=names_,
            y=ratios,
            marker={
                "color": [colors.get(r["precision"], "black").removeprefix("tab:") for r in layers]
            },
            text=[f"{r['precision']}, {r['kept']}/{r['channels']} kept" for r in layers],
        )
    )
    html.update_layout(title=title, yaxis_title="channels removed", yaxis_range=[0, 1])
    return fig, html


@dataclass(frozen=True)
class PlotData:
    """What the end-of-study plots show.

    Attributes:
        rows: one row per completed trial (repeats included).
        chosen: the number of the trial shipped, None when none.
        budget: the objective's budget in words (plot titles).
        importances: objective name -> {param: importance}.
        layers: the chosen plan layer by layer (``layer_rows``), None when none.
        layers_title: the title of the layer plot.
        front_names: the metrics of the Pareto front.
    """

    rows: Sequence[Row]
    chosen: int | None
    budget: str
    importances: Mapping[str, Mapping[str, float]]
    layers: Sequence[Mapping[str, Any]] | None = None
    layers_title: str = ""
    front_names: Sequence[str] = (names.ACCURACY, names.LATENCY)


def write_plots(output_dir: Path, data: PlotData) -> list[Path]:
    """Write the PNGs and ``plots.html``; returns the files written."""
    rows, chosen, budget, layers = data.rows, data.chosen, data.budget, data.layers
    unique = [r for r in rows if r.get("duplicate_of") is None]
    front = pareto_front(unique, data.front_names)
    figures = [
        ("pareto.png", *pareto_figures(rows, front, chosen, budget)),
        ("history.png", *history_figures(rows)),
        ("importance.png", *importance_figures(data.importances)),
    ]
    if layers:
        figures.append(("layers.png", *layer_figures(layers, data.layers_title)))
    return _write_all(output_dir, figures, HTML_FILE, "pruna_search plots")


def _write_all(
    output_dir: Path, figures: Sequence[tuple[str, Any, Any]], html_name: str, title: str
) -> list[Path]:
    """Each figure's PNG, and one self-contained HTML page with all of them (plotly.js once)."""
    written = []
    parts = []
    for i, (file_name, figure, html) in enumerate(figures):
        written.append(_save(figure, output_dir / file_name))
        parts.append(html.to_html(full_html=False, include_plotlyjs=(i == 0)))
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        "</head><body>" + "\n".join(parts) + "</body></html>"
    )
    atomic_write_text(output_dir / html_name, page)
    written.append(output_dir / html_name)
    return written


def sensitivity_figures(record: Mapping[str, Any]):
    """Heat map of the accuracy lost with one group pruned at each ratio (points)."""
    dense, prune = record["dense_accuracy"], record["sensitivity"]["prune"]
    groups = sorted(prune)
    ratios = sorted({r for by in prune.values() for r in by}, key=float)
    drops = [[(dense - prune[g].get(r, dense)) * 100 for r in ratios] for g in groups]
    labels = [f"{float(r):g}" for r in ratios]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(ratios), 1.0 + 0.28 * len(groups)))
    image = ax.imshow(drops, aspect="auto", cmap="Reds", vmin=0)
    ax.set_xticks(range(len(ratios)), labels)
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlabel("pruning ratio (BatchNorm recalibrated, no fine-tune)")
    fig.colorbar(image, ax=ax, label="accuracy lost (points)")
    html = go.Figure(go.Heatmap(z=drops, x=labels, y=groups, colorscale="Reds"))
    html.update_layout(title="Accuracy lost (points) with one group pruned")
    return fig, html


def latency_figures(record: Mapping[str, Any]):
    """Bars: each layer's time at fp32 and at int8 (the slowest first)."""
    layers = record["layers"]
    names_ = [layer["module"] for layer in layers]
    fp32 = [layer["fp32_ms"] for layer in layers]
    int8 = [layer["int8_ms"] or 0.0 for layer in layers]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.22 * len(layers)))
    y = list(range(len(layers)))
    ax.barh([i - 0.2 for i in y], fp32, height=0.4, label="fp32", color="tab:blue")
    ax.barh([i + 0.2 for i in y], int8, height=0.4, label="int8", color="tab:orange")
    ax.set_yticks(y, names_, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per run (ONNX Runtime profiler)")
    ax.legend(fontsize=8)
    html = go.Figure(
        [
            go.Bar(y=names_, x=fp32, orientation="h", name="fp32"),
            go.Bar(y=names_, x=int8, orientation="h", name="int8"),
        ]
    )
    html.update_layout(title="Time per layer", barmode="group", yaxis={"autorange": "reversed"})
    return fig, html


def write_analysis_plots(output_dir: Path, record: Mapping[str, Any]) -> list[Path]:
    """``sensitivity.png``, ``latency.png`` and ``analysis.html``."""
    figures = [
        ("sensitivity.png", *sensitivity_figures(record)),
        ("latency.png", *latency_figures(record)),
    ]
    return _write_all(output_dir, figures, "analysis.html", "pruna_search analysis")


__all__ = ["HTML_FILE", "PNG_FILES", "PlotData", "write_analysis_plots", "write_plots"]
