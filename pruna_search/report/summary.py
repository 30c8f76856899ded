"""``report.md``, ``summary.json`` and the before/after table of a finished search."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import hardware, names
from ..core.files import atomic_write_text
from .finished import FinishedStudy
from .front import hypervolume

STATUS_OK = "ok"
STATUS_NO_FEASIBLE = "no feasible trial"
STATUS_INTERRUPTED = "interrupted"
# another worker of the study chooses and exports (several workers on one study)
STATUS_HANDED_OVER = "handed over"


def comparison_table(baseline: Mapping[str, float], evaluation) -> str:
    """Dense fp32 against the final model: accuracy, latency, speedup, size, MACs."""
    m = evaluation.metrics
    latency = evaluation.latency
    dense_ms = latency.baseline.p10 if latency is not None else float("nan")
    rows = [
        (
            "accuracy",
            f"{baseline[names.ACCURACY]:.4f}",
            f"{m[names.ACCURACY]:.4f}",
            f"{-m[names.ACCURACY_DROP] * 100:+.2f} pt",
        ),
        (
            "latency p10 (ms)",
            f"{dense_ms:.3f}",
            f"{m.get(names.LATENCY_P10, float('nan')):.3f}",
            f"{m.get(names.SPEEDUP, float('nan')):.2f}x faster",
        ),
        (
            "size (MB)",
            f"{baseline[names.SIZE_MB]:.3f}",
            f"{m[names.SIZE_MB]:.3f}",
            f"{m[names.COMPRESSION]:.2f}x smaller",
        ),
        (
            "MMACs",
            f"{baseline[names.MACS] / 1e6:.2f}",
            f"{m[names.MACS] / 1e6:.2f}",
            f"{baseline[names.MACS] / max(m[names.MACS], 1):.2f}x fewer",
        ),
    ]
    table = _table(("", "dense fp32", "chosen", "change"), rows)
    if latency is not None and latency.noisy:
        table += (
            f"\nlatency flagged noisy: {latency.noise}; the speedup above is not a steady "
            "figure: measure again with pruna-search-export when the host is quiet"
        )
    return table


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            f"{str(c):>{w}}" if i else f"{str(c):<{w}}"
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def summary(finished: FinishedStudy) -> dict[str, Any]:
    """One flat record of the job (a row of the sweep summary); ``dense_latency_ms`` is the
    study's dense reference (``latency_ms`` = ``dense_latency_ms`` / speedup)."""
    settings, rows, outcome = finished.settings, finished.rows, finished.outcome
    out: dict[str, Any] = {
        "study": finished.study_name,
        "status": finished.status,
        "model": settings.model_name,
        "data": settings.data["name"],
        "target": settings.target.name,
        "objective": settings.objective.name,
        "budget": settings.objective.budget,
        "sampler": settings.sampler,
        "trials": len(rows),
        "evaluated": len(finished.unique),
        "evaluated_now": outcome.evaluated,
        "failed_now": outcome.failed,
        "pruned_now": outcome.pruned,
        "stopped_early_now": outcome.stopped_early,
        "stopped_early_seconds_now": outcome.stopped_seconds,
        "remeasured_now": outcome.remeasured,
        "loop_seconds_now": outcome.seconds,  # trial loop, re-measuring and re-ranking
        "still_noisy_now": outcome.still_noisy,
        **latency_flags(rows),
        "dense_accuracy": finished.baseline[names.ACCURACY],
        "dense_size_mb": finished.baseline[names.SIZE_MB],
        "dense_latency_ms": finished.dense_ms,
        "hypervolume_searched": hypervolume(finished.searched),
        "hypervolume_uniform": hypervolume(finished.references),
        "chosen_trial": finished.chosen_number,
        **_reranked_figures(finished),
    }
    return out | _final_figures(finished.final)


def _reranked_figures(finished: FinishedStudy) -> dict[str, Any]:
    """What re-ranking did and the accuracy the choice was made on (its highest fidelity)."""
    reranked = finished.outcome.reranked
    chosen = finished.chosen
    return {
        "reranked_now": reranked.plans if reranked is not None else 0,
        "reranked_seconds_now": reranked.seconds if reranked is not None else 0.0,
        "reranked": sum(r.get("rerank_steps") is not None for r in finished.unique),
        "chosen_on_trials": finished.chosen_on_trials,
        "chosen_accuracy": chosen[names.ACCURACY] if chosen else None,
        "chosen_trial_accuracy": chosen.get("trial_accuracy") if chosen else None,
        "chosen_rerank_steps": chosen.get("rerank_steps") if chosen else None,
    }


def _final_figures(final: Any) -> dict[str, Any]:
    """The shipped model's figures after the final fine-tune (none when nothing shipped)."""
    if final is None:
        return {}
    m = final.metrics
    return {
        names.ACCURACY: m[names.ACCURACY],
        names.ACCURACY_DROP: m[names.ACCURACY_DROP],
        names.LATENCY: m.get(names.LATENCY),
        names.LATENCY_P10: m.get(names.LATENCY_P10),
        "dense_latency_ms_p10": final.latency.baseline.p10 if final.latency else None,
        names.SPEEDUP: m.get(names.SPEEDUP),
        names.SIZE_MB: m[names.SIZE_MB],
        names.COMPRESSION: m[names.COMPRESSION],
    }


def latency_flags(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How many evaluated trials' speedups were flagged as at risk, and how many windows saw
    the whole host drift (reported, not flagged)."""
    timed = [r for r in rows if r.get("duplicate_of") is None and names.SPEEDUP in r]
    flagged = sum(bool(r.get("latency_noisy")) for r in timed)
    return {
        "latency_timed": len(timed),
        "latency_flagged": flagged,
        "latency_flagged_share": flagged / len(timed) if timed else 0.0,
        "latency_drifted": sum(bool(r.get("latency_drift")) for r in timed),
    }


def latency_line(summary: Mapping[str, Any]) -> str:
    """The log line that says how trustworthy the study's speedups were."""
    timed = summary.get("latency_timed", 0)
    return (
        f"latency  {summary.get('latency_flagged', 0)} of {timed} trial figures flagged "
        f"({100 * summary.get('latency_flagged_share', 0.0):.0f} %: speedup at risk, measured "
        f"again); host drift reported in {summary.get('latency_drifted', 0)} (not flagged: it "
        "moves the dense model and the trial alike)"
    )


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")


def _row_cells(r: Mapping[str, Any]) -> list[str]:
    return [
        str(r["number"]),
        str(r.get("reference") or ""),
        "yes" if r["feasible"] else "no",
        f"{r[names.ACCURACY]:.4f}",
        f"{r[names.ACCURACY_DROP] * 100:+.2f}".replace("+-", "-"),
        f"{r[names.LATENCY]:.3f}",
        f"{r[names.LATENCY_P10]:.3f}",
        f"{r[names.SPEEDUP]:.2f}x" + (" (noisy)" if r.get("latency_noisy") else ""),
        f"{r[names.SIZE_MB]:.3f}",
        str(r.get("plan", "")),
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # a cell's own "|" (plan summaries: "prune 0.12 avg | int8 22/22") must not split it
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


ROW_HEADER = (
    "trial",
    "reference",
    "feasible",
    "accuracy",
    "drop (pt)",
    "ms",
    "p10 ms (window)",
    "speedup",
    "MB",
    "plan",
)


def beats_uniform(
    references: Sequence[Mapping[str, Any]], searched: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    """For each uniform reference: the fastest searched trial at least as accurate."""
    out = []
    for ref in sorted(references, key=lambda r: -r[names.SPEEDUP]):
        better = [s for s in searched if s[names.ACCURACY] >= ref[names.ACCURACY]]
        if not better:
            out.append(
                [
                    ref["reference"],
                    f"{ref[names.SPEEDUP]:.2f}x",
                    f"{ref[names.ACCURACY]:.4f}",
                    "none as accurate",
                    "",
                    "",
                ]
            )
            continue
        best = max(better, key=lambda s: s[names.SPEEDUP])
        out.append(
            [
                ref["reference"],
                f"{ref[names.SPEEDUP]:.2f}x",
                f"{ref[names.ACCURACY]:.4f}",
                f"trial {best['number']}",
                f"{best[names.SPEEDUP]:.2f}x",
                f"{best[names.SPEEDUP] / ref[names.SPEEDUP]:.2f}x",
            ]
        )
    return out


def _flagged_again(s: Mapping[str, Any]) -> str:
    """``, 2 of 3 latency figures flagged noisy ...`` — empty when none was flagged."""
    flagged = s["remeasured_now"] + s["still_noisy_now"]
    if not flagged:
        return ""
    return (
        f", {s['remeasured_now']} of {flagged} latency figures flagged noisy steady when "
        "measured again after it"
    )


def write_markdown(path: Path, finished: FinishedStudy, summary: Mapping[str, Any]) -> Path:
    """``report.md``: the header, the shipped model (or why none), searched against uniform,
    the front, the flagged figures and the seconds per stage."""
    lines = [
        *_header(summary, finished.space),
        *_shipped(summary, finished),
        *_against_uniform(summary, finished),
        "## Pareto front",
        "",
        *markdown_table(ROW_HEADER, [_row_cells(r) for r in finished.front]),
        "",
        *_flagged(finished.front),
        *_reranked(summary, finished),
        *_warm_started(finished.rows),
        *_stage_seconds(finished.outcome),
    ]
    return atomic_write_text(path, "\n".join(lines))


def _header(s: Mapping[str, Any], space: Any) -> list[str]:
    return [
        f"# pruna_search report: {s['study']}",
        "",
        f"- model `{s['model']}`, data `{s['data']}`, target `{s['target']}` "
        f"({hardware.cpu_model()})",
        f"- objective `{s['objective']}`, budget: {s['budget']}; sampler `{s['sampler']}`",
        f"- {s['evaluated']} plans evaluated, {s['trials']} completed trials with repeats "
        f"({s['evaluated_now']} evaluated in this run, {s['failed_now']} failed, "
        f"{s.get('pruned_now', 0)} ruled out on latency before fine-tuning, "
        f"{s.get('stopped_early_now', 0)} stopped early in their fine-tune"
        f"{_flagged_again(s)}); "
        f"space: {len(space.prune_params)} pruning and "
        f"{len(space.bits_params)} precision choices ({space.size:.3g} plans)",
        f"- status: **{s['status']}**",
        "",
        "![Pareto front: accuracy against measured latency](pareto.png)",
        "",
        "Plots: `pareto.png`, `history.png`, `importance.png`, `layers.png` (the chosen plan), "
        "and all of them interactive in `plots.html`.",
        "",
    ]


def _shipped(s: Mapping[str, Any], finished: FinishedStudy) -> list[str]:
    if finished.final is not None:
        dense = {
            names.ACCURACY: s["dense_accuracy"],
            names.SIZE_MB: s["dense_size_mb"],
            names.MACS: finished.space.info.macs,
        }
        return [
            f"## Chosen: trial {s['chosen_trial']}, re-applied with the final fine-tune",
            "",
            "```",
            comparison_table(dense, finished.final),
            "```",
            "",
            "Plan: `plan.yaml`; model: `best.onnx`.",
            "",
        ]
    if s["status"] == STATUS_NO_FEASIBLE:
        return [
            f"## No trial meets the budget ({s['budget']})",
            "",
            "Nothing was exported. The whole front is below and in `pareto.csv`; loosen the "
            "budget, widen the space or run more trials (`study.n_trials`).",
            "",
        ]
    return ["## Interrupted", "", "Run the same command again to resume the study.", ""]


def _against_uniform(s: Mapping[str, Any], finished: FinishedStudy) -> list[str]:
    header = (
        "uniform reference",
        "speedup",
        "accuracy",
        "best searched as accurate",
        "its speedup",
        "gain",
    )
    return [
        "## Searched against uniform",
        "",
        f"Hypervolume in (accuracy drop <= 5 pt, latency / dense) — larger is better: searched "
        f"{s['hypervolume_searched']:.4f}, uniform references {s['hypervolume_uniform']:.4f}.",
        "",
        *markdown_table(header, beats_uniform(finished.references, finished.searched)),
        "",
    ]


def _flagged(front: Sequence[Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    again = [r for r in front if r.get("latency_remeasured")]
    if again:
        lines += [
            "Flagged noisy during the run and measured again after it, steady (their figures "
            "above are the second measurement): "
            + "; ".join(f"trial {r['number']}: {r['latency_remeasured']}" for r in again)
            + ".",
            "",
        ]
    noisy = [r for r in front if r.get("latency_noisy")]
    if noisy:
        lines += [
            "Speedups marked (noisy) were measured while the host was slower than its floor "
            "and stayed so after the noise gate's retries (a slow phase of a shared host): "
            "they are not steady figures. Why, per trial: "
            + "; ".join(f"trial {r['number']}: {r['latency_noisy']}" for r in noisy)
            + ". They were measured again after the run and were noisy again; running the same "
            "command again when the host is quiet measures them again (without evaluating "
            "anything twice).",
            "",
        ]
    return lines


def _reranked(s: Mapping[str, Any], finished: FinishedStudy) -> list[str]:
    """The plans fine-tuned again at a higher fidelity (``study.rerank_top``), both
    accuracies, and why the shipped plan won."""
    again = [r for r in finished.unique if r.get("rerank_steps") is not None]
    if not again:
        return []
    cells = [
        [
            str(r["number"]),
            f"{r['trial_accuracy']:.4f}",
            f"{r[names.ACCURACY]:.4f} ({r['rerank_steps']} steps)",
            f"{-r[names.ACCURACY_DROP] * 100:+.2f}",
            f"{r[names.SPEEDUP]:.2f}x",
            "yes" if r["feasible"] else "no",
            str(r.get("plan", "")),
        ]
        for r in sorted(again, key=lambda r: -r[names.SPEEDUP])
    ]
    header = ("trial", "trial accuracy", "re-ranked", "drop (pt)", "speedup", "feasible", "plan")
    return [
        "## Re-ranked at a higher fidelity",
        "",
        f"The plans that could be shipped were fine-tuned again and the choice was made on that "
        f"accuracy ({s['reranked_now']} in this run, {s['reranked_seconds_now']:.0f} s).",
        "",
        *markdown_table(header, cells),
        "",
        _why_chosen(s),
        "",
    ]


def _why_chosen(s: Mapping[str, Any]) -> str:
    """One sentence: which accuracy the shipped plan was chosen on, and whether the trials'
    own figures would have chosen another."""
    chosen, before = s["chosen_trial"], s["chosen_on_trials"]
    if chosen is None:
        return "No plan meets the budget, even re-ranked."
    on = (
        f"its accuracy after {s['chosen_rerank_steps']} steps, {s['chosen_accuracy']:.4f} "
        f"(trial: {s['chosen_trial_accuracy']:.4f})"
        if s["chosen_rerank_steps"] is not None
        else f"its trial accuracy, {s['chosen_accuracy']:.4f} (nothing to fine-tune again)"
    )
    if before == chosen:
        return f"Trial {chosen} ships, chosen on {on}; the trial figures chose it too."
    other = f"trial {before}" if before is not None else "no plan"
    return f"Trial {chosen} ships, chosen on {on}; on the trial figures alone {other} would have."


def _warm_started(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The trials the analysis suggested (``study.warm_start``) and how they did."""
    started = [r for r in rows if r.get("warm_start") and r.get("duplicate_of") is None]
    if not started:
        return []
    cells = [
        [
            str(r["number"]),
            str(r["warm_start"]),
            f"{-r[names.ACCURACY_DROP] * 100:+.2f}",
            f"{r[names.SPEEDUP]:.2f}x",
            "yes" if r["feasible"] else "no",
        ]
        for r in started
    ]
    header = ("trial", "suggested for", "drop (pt)", "speedup", "feasible")
    return ["## Trials from the analysis", "", *markdown_table(header, cells), ""]


def _stage_seconds(outcome: Any) -> list[str]:
    if not outcome.stage_seconds:
        return []
    stages = [
        [k, f"{statistics.mean(v):.2f}", str(len(v))] for k, v in outcome.stage_seconds.items()
    ]
    return [
        "## Seconds per trial by stage (this run)",
        "",
        *markdown_table(("stage", "mean s", "trials"), stages),
        "",
    ]


__all__ = ["comparison_table", "summary", "write_json", "write_markdown"]
