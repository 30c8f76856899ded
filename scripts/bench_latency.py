"""Benchmark latency measurement: are the figures stable from one round to the next?

Builds the trained ResNet-20 on digits and 10 configurations (prune ratios 0, 0.25, 0.5,
0.625, 0.75 x fp32 / int8; no fine-tune: latency does not depend on the weights; one that
builds the same model as an earlier one, as 0.625 int8 does 0.5 int8's at int8's default
multiple of 16 channels, is built at a multiple of 8 instead and labelled ``r8``), exports them
once, then times each against dense fp32 with ``compare_latency`` on the CPU target's default
protocol, never cached (the floors of the baseline-drift check are read from and stored in the
latency cache's file, as a search does; ``--fresh-floors`` keeps them in this process only), in
``--rounds`` independent rounds (every other round in reversed
order): first in a local process (``LocalRunner``), then through the device agent on loopback
(``pruna-search-agent`` started here with a random token, ``RemoteRunner``).

Prints per configuration p10 ms and speedup per round, the spread of the speedup between
rounds (max - min over the mean), quiet runs used, the share of rounds outside the host's slow
phases, windows measured (more than 1: the noise gate or the baseline-drift check measured
again), other CPU load seen, the noisy flag and whether the p10s converged, and Kendall tau
over the configurations never flagged noisy (the search does not rule a plan out on a noisy
figure). Targets: Kendall tau-b between the rounds' rankings by ``latency_ms`` — the figure the
search ranks by: the section's dense reference (the dense floor when its first window is timed,
as a study fixes it) over the same-window speedup — >= 0.9; max and median speedup spread
<= 3 %. The tau of the raw p10 rankings is printed beside it, not as a target: each
configuration's p10 comes from its own window, so a window in which the whole host ran a few
per cent slower reorders configurations that lie within a few per cent of each other.
Each int8 configuration's window also times the dense int8 model as a probe with a floor of
its own, as the search does (``target.int8_probe``; ``--no-int8-probe`` leaves it out). Figures
flagged noisy are measured again after a section's rounds, as a search measures them again
after its loop, and a steady figure replaces the flagged one (noisy column ``again``; the tau
and spreads as first measured are printed too; ``--no-remeasure`` leaves them).

A *standalone* reference is printed beside the protocol's speedups: each configuration and
the dense model timed alone with plain ONNX Runtime sessions, in blocks of 300 runs (5 blocks
each, the two files one after the other, nothing else in between), the median over the blocks
of dense p10 / configuration p10 — what onnxruntime_perf_test would see. Target: the
protocol's speedup (mean of the rounds) within 3 % of it for every configuration. A section
then times a pair of models made slow on purpose (~100 ms a run at 224x224) with the same
protocol. Target: it settles (converges) within 60 s of window time. Flagged figures are
counted by reason (speedup moved between the window's halves, int8 probe, provider, never
settled) and windows in which the whole host drifted are counted apart (reported, not flagged).

    .venv/bin/python scripts/bench_latency.py [--ratios 0,0.25,0.5,0.625,0.75] [--rounds 2]
        [--skip-agent | --only-local] [--skip-local] [--ci-tolerance 0.015] [--no-int8-probe]
        [--fresh-floors] [--no-remeasure] [--interleave block|run] [--skip-slow]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

import pruna_search as ps
from pruna_search.core import hardware
from pruna_search.core.plan import DEFAULT_ROUND_TO, Finetune, Plan
from pruna_search.core.target import CPU, DEFAULT_TOKEN_ENV, Target
from pruna_search.measure.cache import LatencyCache
from pruna_search.measure.floors import Floors, baseline_floor
from pruna_search.measure.latency import LatencyComparison, Measurer, compare_latency
from pruna_search.measure.runners import LatencyRunner, RemoteRunner, timed_input
from pruna_search.models.pretrained import cache_dir
from pruna_search.search.evaluate import Evaluator, EvaluatorOptions, dense_reference

RATIOS = (0.0, 0.25, 0.5, 0.625, 0.75)
PRECISIONS = (("fp32", 32), ("int8", 8))
FINER_ROUND_TO = 8  # for a configuration that is the same model as another at the default
TAU_TARGET = 0.9
SPREAD_TARGET = 0.03
STANDALONE_TARGET = 0.03  # the protocol's speedup against the files timed alone
SLOW_WINDOW_TARGET_S = 60.0
STANDALONE_BLOCKS, STANDALONE_RUNS = 5, 300
ROOT = Path(__file__).resolve().parent.parent


def ratios_arg(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of ratios") from None
    if not values or any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: ratios must be in [0, 1)")
    return values


def export_configs(
    ratios: tuple[float, ...], folder: Path
) -> tuple[list[tuple[str, Path]], Path, Path, np.ndarray]:
    """The configurations' ONNX files (copied to ``folder``), the dense one, the dense int8
    one (the probe timed with every int8 configuration) and the input."""
    data = ps.data.load("digits")
    model = ps.models.build("resnet20", data=data, pretrained=True)
    workdir = folder / "work"
    evaluator = Evaluator(
        model, data, CPU, workdir=workdir, options=EvaluatorOptions(measure_latency=False)
    )
    no_finetune = Finetune(steps=0, bn_recalibration=0)
    dense = folder / "dense.fp32.onnx"
    shutil.copy2(evaluator.dense_path, dense)
    probe = folder / "dense.int8.onnx"
    shutil.copy2(evaluator.int8_probe(), probe)
    configs = []
    seen: dict[str, str] = {}  # ONNX content hash -> label
    for ratio, (precision, bits) in itertools.product(ratios, PRECISIONS):
        label = f"{ratio:g} {precision}"
        name = f"r{ratio:g}-{precision}".replace(".", "_")
        path = folder / f"{name}.onnx"
        for round_to in (DEFAULT_ROUND_TO, FINER_ROUND_TO):
            plan = Plan.uniform(
                evaluator.info,
                target=CPU,
                pruning_ratio=ratio,
                quantization_bits=bits,
                finetune=no_finetune,
                round_to=round_to,
            )
            evaluation = evaluator.evaluate(plan, name=name)
            shutil.copy2(evaluation.candidate.onnx_path, path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in seen:
                break
            # the same model as an earlier configuration (at int8's default multiple of 16,
            # 0.5 and 0.625 keep the same channels): its rank against that one would be a
            # coin toss, so it is built at a multiple of 8 instead, a model of its own
            print(f"  {label}: the same model as {seen[digest]}; built with round_to 8")
            label = f"{label} r8"
        else:
            raise SystemExit(f"{label}: the same model as {seen[digest]} at every round_to")
        seen[digest] = label
        configs.append((label, path))
    shutil.rmtree(workdir, ignore_errors=True)
    return configs, dense, probe, evaluator.timing_input


# the cpu target's protocol, figures never cached; --ci-tolerance, --no-int8-probe and
# --fresh-floors change it
DEFAULT_PROTOCOL: Target = dataclasses.replace(CPU, cache=False)
PROTOCOL: Target = DEFAULT_PROTOCOL
# where the floors are kept between runs (figures are not cached: PROTOCOL.cache is false)
FLOORS = LatencyCache(cache_dir() / "latency.sqlite")


@dataclasses.dataclass
class Section:
    """The rounds of one section (local, or through the agent).

    ``results``: per round, each configuration's comparison (a flagged figure that came back
    steady when measured again after the rounds is replaced, as a search replaces it after its
    loop); ``first``: the rounds as first measured; ``dense_ms``: the dense reference of
    ``latency_ms``; ``again``: (round, label) of the figures replaced."""

    results: list[dict[str, LatencyComparison]]
    first: list[dict[str, LatencyComparison]]
    dense_ms: float
    again: set[tuple[int, str]]


def measure_rounds(
    configs: list[tuple[str, Path]],
    dense: Path,
    probe: Path,
    x: np.ndarray,
    target: Target,
    rounds: int,
    runner: LatencyRunner | None = None,
    remeasure: bool = True,
    floors: Floors | None = None,
) -> Section:
    """``rounds`` independent rounds; odd rounds in the configurations' order, even reversed.
    Int8 configurations are timed with ``probe`` as the reference when the target asks. The
    dense reference of ``latency_ms`` is fixed as a study fixes it (``dense_reference``): the
    dense floor known once the first window is timed, else the dense p10 of the first window
    not flagged (all flagged: the first window's). With
    ``remeasure``, figures flagged noisy are measured again after the rounds, as a search does
    after its loop (``search.remeasure``), and a steady one replaces the flagged one.
    ``floors``: those the windows are judged by (None: the section's own, on FLOORS's file)."""
    results = []
    dense_ms: float | None = None
    floors = floors or Floors.of(target, FLOORS)
    measurer = Measurer(runner, FLOORS, floors)

    def measure(label: str, path: Path) -> LatencyComparison:
        reference = probe if target.int8_probe and " int8" in label else None
        return compare_latency(path, dense, x, target, reference=reference, measurer=measurer)

    for index in range(rounds):
        order = configs if index % 2 == 0 else configs[::-1]
        start = time.perf_counter()
        measured: dict[str, LatencyComparison] = {}
        for label, path in order:
            measured[label] = measure(label, path)
            if dense_ms is None:
                floor = baseline_floor(dense, x, target, floors, runner)
                dense_ms = dense_reference(floor, measured[label])
        results.append(measured)
        print(
            f"  round {index + 1} ({'forward' if index % 2 == 0 else 'reversed'}): "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
    if dense_ms is None:  # every window flagged and no floor: the first window's, flagged
        dense_ms = results[0][configs[0][0]].baseline.p10
    print(f"  dense reference of latency_ms: {dense_ms:.3f} ms")
    first = [dict(r) for r in results]
    flagged = [(i, label) for i, r in enumerate(results) for label in r if r[label].noisy]
    again: set[tuple[int, str]] = set()
    if remeasure and flagged:
        start = time.perf_counter()
        paths = dict(configs)
        for i, label in flagged:
            comparison = measure(label, paths[label])
            if not comparison.noisy:
                results[i][label] = comparison
                again.add((i, label))
        print(
            f"  {len(flagged)} figures flagged noisy measured again after the rounds: "
            f"{len(again)} steady, in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    return Section(results, first, dense_ms, again)


def standalone(configs: list[tuple[str, Path]], dense: Path, x: np.ndarray) -> dict[str, float]:
    """Each configuration's speedup timed alone: plain ONNX Runtime sessions (1 thread), the
    dense file and the configuration in turn in blocks of STANDALONE_RUNS runs (10 untimed
    first), STANDALONE_BLOCKS times; the median over the blocks of dense p10 / its p10."""
    from pruna_search.core import runtime

    x = timed_input(x, PROTOCOL)  # the target's batch, as every window times

    def block_p10(session) -> float:
        feed = {session.get_inputs()[0].name: x}
        for _ in range(10):
            session.run(None, feed)
        times = []
        for _ in range(STANDALONE_RUNS):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        return float(np.percentile(times, 10))

    base = runtime.session(str(dense), threads=1)
    speedups = {}
    for label, path in configs:
        session = runtime.session(str(path), threads=1)
        ratios = [block_p10(base) / block_p10(session) for _ in range(STANDALONE_BLOCKS)]
        speedups[label] = statistics.median(ratios)
    return speedups


def slow_pair(folder: Path) -> tuple[Path, Path, np.ndarray]:
    """Convolutions at 224x224 made slow on purpose: a dense stack of 80 channels (~100 ms a
    run on the AMD VM) and the same at 64 channels as its candidate."""
    import torch
    from torch import nn

    from pruna_search.export import export_onnx

    def stack(channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, 10),
        ).eval()

    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    dense = export_onnx(stack(80), x, folder / "slow80.onnx")
    return dense, export_onnx(stack(64), x, folder / "slow64.onnx"), x[:1].numpy()


def run_slow_section(folder: Path) -> bool:
    dense, candidate, x = slow_pair(folder)
    start = time.perf_counter()
    result = compare_latency(candidate, dense, x, PROTOCOL)
    seconds = time.perf_counter() - start
    ok = result.converged and not result.noisy and result.window_s <= SLOW_WINDOW_TARGET_S
    print(
        f"slow pair: dense p10 {result.baseline.p10:.1f} ms, candidate {result.candidate.p10:.1f}"
        f" ms ({result.speedup:.2f}x), {result.candidate.runs}/{result.baseline.runs} quiet runs,"
        f" window {result.window_s:.1f} s ({result.attempts} window(s), {seconds:.1f} s with the"
        f" warm-up and the process), stopped by {result.stopped_by}"
        + (f"; flagged: {result.noise}" if result.noisy else "")
    )
    print(
        f"target a ~100 ms model settles within {SLOW_WINDOW_TARGET_S:g} s of window time: "
        f"{'met' if ok else 'MISSED'}"
    )
    return ok


def flag_reasons(results: list[dict[str, LatencyComparison]]) -> str:
    """The flagged figures counted by reason, and the windows whose whole host drifted."""
    kinds = {"moved": "halves", "int8 kernels": "int8 probe", "ran a model": "provider"}
    counts: dict[str, int] = {}
    drifted = total = 0
    for comparison in (c for r in results for c in r.values()):
        total += 1
        drifted += bool(comparison.drift)
        if comparison.noisy:
            kind = next((k for m, k in kinds.items() if m in comparison.noise), "never settled")
            counts[kind] = counts.get(kind, 0) + 1
    flagged = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"
    return f"flagged {sum(counts.values())} of {total} ({flagged}); host drift in {drifted}"


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.fmean(values)


Figure = Callable[[LatencyComparison], float]


def raw_p10(comparison: LatencyComparison) -> float:
    return comparison.candidate.p10


def steady(dense_ms: float) -> Figure:
    """``latency_ms`` as the search computes it: the dense reference over the speedup."""
    return lambda comparison: dense_ms / comparison.speedup


def round_taus(
    labels: list[str], results: list[dict[str, LatencyComparison]], figure: Figure
) -> list[float]:
    """Kendall tau-b between the rankings of ``labels`` by ``figure``, for every pair of
    rounds."""
    return [
        float(
            kendalltau(
                [figure(a[label]) for label in labels], [figure(b[label]) for label in labels]
            ).statistic
        )
        for a, b in itertools.combinations(results, 2)
    ]


def report(labels: list[str], section: Section, alone: dict[str, float]) -> bool:
    """Print the table and the targets; True when every target is met."""
    results, dense_ms = section.results, section.dense_ms
    n = len(results)
    latency = steady(dense_ms)
    cols = (
        [f"p10 ms r{i + 1}" for i in range(n)]
        + [f"lat. ms r{i + 1}" for i in range(n)]
        + [f"speedup r{i + 1}" for i in range(n)]
        + ["spread", "alone", "vs alone"]
    )
    header = (
        f"{'config':<13} "
        + " ".join(f"{c:>11}" for c in cols)
        + f" {'runs':>11} {'quiet %':>9} {'windows':>7} {'other_load':>11} {'noisy':>7}"
        + f" {'converged':>9}"
    )
    print(header)
    print("-" * len(header))
    spreads, offs = [], []
    for label in labels:
        per_round = [r[label] for r in results]
        speedups = [c.speedup for c in per_round]
        s = spread(speedups)
        spreads.append(s)
        off = statistics.fmean(speedups) / alone[label] - 1
        offs.append(off)
        runs = "/".join(str(c.candidate.runs) for c in per_round)
        loads = "/".join("-" if c.other_load is None else f"{c.other_load:.2f}" for c in per_round)
        noisy = "/".join(
            "again" if (i, label) in section.again else "yes" if c.noisy else "no"
            for i, c in enumerate(per_round)
        )
        quiet = "/".join(
            f"{100 * c.quiet_rounds / c.rounds:.0f}" if c.rounds else "-" for c in per_round
        )
        windows = "/".join(str(c.attempts) for c in per_round)
        converged = "/".join("yes" if c.converged else "no" for c in per_round)
        print(
            f"{label:<13} "
            + " ".join(f"{c.candidate.p10:11.3f}" for c in per_round)
            + " "
            + " ".join(f"{latency(c):11.3f}" for c in per_round)
            + " "
            + " ".join(f"{v:10.3f}x" for v in speedups)
            + f" {100 * s:10.2f}%"
            + f" {alone[label]:10.3f}x {100 * off:+10.2f}%"
            + f" {runs:>11} {quiet:>9} {windows:>7} {loads:>11} {noisy:>7} {converged:>9}"
        )
    dense_p10 = [statistics.fmean(c.baseline.p10 for c in r.values()) for r in results]
    print(
        "dense p10 ms (mean over the round's windows): "
        + ", ".join(f"r{i + 1} {v:.3f}" for i, v in enumerate(dense_p10))
        + f"; dense reference of latency_ms {dense_ms:.3f}"
    )
    clean = [
        s
        for label, s in zip(labels, spreads, strict=True)
        if not any(r[label].noisy for r in results)
    ]
    if len(clean) < len(spreads):
        print(
            f"without the {len(spreads) - len(clean)} configuration(s) flagged noisy: "
            + (
                f"max spread {100 * max(clean):.2f} %, "
                f"median {100 * statistics.median(clean):.2f} %"
                if clean
                else "none left"
            )
        )
    taus = round_taus(labels, results, latency)
    tau = min(taus) if taus else float("nan")
    worst_pair = " (worst pair of rounds)" if len(taus) > 1 else ""
    report_discordant(labels, results, latency, "latency_ms")
    settled = [label for label in labels if not any(r[label].noisy for r in results)]
    if len(settled) < len(labels) and len(settled) > 1:
        print(
            f"Kendall tau of latency_ms over the {len(settled)} configurations never flagged "
            f"noisy (the figures the search acts on): "
            f"{min(round_taus(settled, results, latency)):.3f}"
        )
    # each p10 comes from its own window: a window-wide slowdown moves it, not the ratio
    report_discordant(labels, results, raw_p10, "p10")
    print(
        "Kendall tau of the raw p10 rankings (each from its own window; not a target): "
        f"{min(round_taus(labels, results, raw_p10)):.3f}"
    )
    if section.again:
        # the same figures before the flagged ones were measured again
        first_spreads = [spread([r[label].speedup for r in section.first]) for label in labels]
        print(
            f"as first measured, before the {len(section.again)} flagged figures were measured "
            f"again: Kendall tau of latency_ms "
            f"{min(round_taus(labels, section.first, latency)):.3f}, max speedup spread "
            f"{100 * max(first_spreads):.2f} %, "
            f"median {100 * statistics.median(first_spreads):.2f} %"
        )
    print(f"latency flags: {flag_reasons(results)}")
    worst, median = max(spreads), statistics.median(spreads)
    far = max(offs, key=abs)
    ok_alone = abs(far) <= STANDALONE_TARGET
    print(
        f"target speedup within {100 * STANDALONE_TARGET:g} % of the files timed alone: "
        f"worst {100 * far:+.2f} % ({labels[offs.index(far)]}) {'met' if ok_alone else 'MISSED'}"
    )
    ok_tau = tau >= TAU_TARGET
    ok_max = worst <= SPREAD_TARGET
    ok_median = median <= SPREAD_TARGET
    print(
        f"target Kendall tau-b of latency_ms rankings between rounds >= {TAU_TARGET:g}: "
        f"{tau:.3f}{worst_pair} {'met' if ok_tau else 'MISSED'}"
    )
    print(
        f"target max speedup spread <= {100 * SPREAD_TARGET:g} %: {100 * worst:.2f} % "
        f"({labels[spreads.index(worst)]}) {'met' if ok_max else 'MISSED'}"
    )
    print(
        f"target median speedup spread <= {100 * SPREAD_TARGET:g} %: {100 * median:.2f} % "
        f"{'met' if ok_median else 'MISSED'}"
    )
    return ok_tau and ok_max and ok_median and ok_alone


def report_discordant(
    labels: list[str], results: list[dict[str, LatencyComparison]], figure: Figure, name: str
) -> None:
    """The pairs of configurations the rounds order differently by ``figure``, with how far
    apart they are, and Kendall tau over the pairs the protocol can tell apart (more than
    ``ci_tolerance`` apart in every round)."""
    tolerance = PROTOCOL.ci_tolerance
    apart, concordant, lines = 0, 0, []
    for a, b in itertools.combinations(labels, 2):
        gaps = [figure(r[a]) / figure(r[b]) - 1 for r in results]
        signs = {g > 0 for g in gaps}
        if len(signs) > 1:
            lines.append(f"{a} vs {b} ({' / '.join(f'{100 * g:+.1f} %' for g in gaps)})")
        if all(abs(g) > tolerance for g in gaps):
            apart += 1
            concordant += len(signs) == 1
    print(
        f"pairs ordered differently by {name} (the first over the second, per round): "
        + ("none" if not lines else "")
    )
    for line in lines:
        print(f"  {line}")
    if apart:
        tau = (2 * concordant - apart) / apart
        print(
            f"Kendall tau of {name} over the {apart} pairs more than {100 * tolerance:g} % "
            f"apart in every round: {tau:.3f}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, token: str, agent: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 60
    request = urllib.request.Request(url + "/health", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(
                f"the agent exited with {agent.returncode}: {log.read_text().strip()}"
            )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the agent did not answer /health in 60 s: {log.read_text().strip()}")


def run_agent_section(
    configs: list[tuple[str, Path]],
    dense: Path,
    probe: Path,
    x: np.ndarray,
    rounds: int,
    folder: Path,
    alone: dict[str, float],
    remeasure: bool = True,
    floors: Floors | None = None,
) -> bool:
    token = secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, **{DEFAULT_TOKEN_ENV: token})
    os.environ[DEFAULT_TOKEN_ENV] = token  # RemoteRunner reads the token from target.token_env
    log = folder / "agent.log"
    agent_bin = Path(sys.executable).parent / "pruna-search-agent"
    with open(log, "w") as log_file:
        agent = subprocess.Popen(
            [str(agent_bin), "--port", str(port), "--quiet"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        start = time.perf_counter()
        health = wait_for_health(url, token, agent, log)
        print(
            f"agent on {url} (pid {agent.pid}) answered /health in "
            f"{time.perf_counter() - start:.1f} s; fingerprint {health.get('fingerprint')}",
            flush=True,
        )
        target = dataclasses.replace(PROTOCOL, runner="remote", url=url)
        runner = RemoteRunner(target)
        section = measure_rounds(
            configs,
            dense,
            probe,
            x,
            target,
            rounds,
            runner=runner,
            remeasure=remeasure,
            floors=floors,
        )
        print()
        return report([label for label, _ in configs], section, alone)
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        print(f"agent stopped (exit {agent.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ratios", type=ratios_arg, default=RATIOS, help="prune ratios, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=2, help="independent rounds (2)")
    parser.add_argument(
        "--skip-agent",
        "--only-local",
        "--rounds-only-local",
        dest="skip_agent",
        action="store_true",
        help="only the local rounds, no agent",
    )
    parser.add_argument(
        "--skip-local", action="store_true", help="only the rounds through the agent"
    )
    parser.add_argument(
        "--ci-tolerance",
        type=float,
        default=None,
        help=f"the p10's 95 %% interval to reach, a fraction (cpu target: {CPU.ci_tolerance})",
    )
    parser.add_argument(
        "--no-int8-probe",
        action="store_true",
        help="int8 configurations without the dense int8 model timed as a probe",
    )
    parser.add_argument(
        "--no-remeasure",
        action="store_true",
        help="leave figures flagged noisy as they are (a search measures them again after its "
        "loop)",
    )
    parser.add_argument(
        "--fresh-floors",
        action="store_true",
        help="keep the baseline-drift floors in this process only (target.floor_max_age_h=null)",
    )
    parser.add_argument(
        "--interleave",
        choices=("block", "run"),
        default=CPU.interleave,
        help="how the models take turns in a window (target.interleave)",
    )
    parser.add_argument(
        "--skip-slow", action="store_true", help="leave out the pair of ~100 ms models"
    )
    args = parser.parse_args()
    global PROTOCOL
    PROTOCOL = dataclasses.replace(PROTOCOL, interleave=args.interleave)
    if args.ci_tolerance is not None:
        PROTOCOL = dataclasses.replace(PROTOCOL, ci_tolerance=args.ci_tolerance)
    if args.no_int8_probe:
        PROTOCOL = dataclasses.replace(PROTOCOL, int8_probe=False)
    if args.fresh_floors:
        PROTOCOL = dataclasses.replace(PROTOCOL, floor_max_age_h=None)
    if args.rounds < 2:
        parser.error("--rounds: at least 2 (stability is compared between rounds)")
    os.environ.setdefault("PRUNA_SEARCH_PROGRESS", "0")

    total = time.perf_counter()
    print(f"machine: {hardware.fingerprint()}")
    P = PROTOCOL
    kept = (
        f"floors of the last {P.floor_max_age_h:g} h from {FLOORS.path}"
        if P.floor_max_age_h is not None
        else "floors of this process only"
    )
    print(
        f"target cpu, {'default' if P == DEFAULT_PROTOCOL else 'changed'} protocol: "
        f"{P.intra_op_threads} thread, batch {P.batch_size}, "
        f"{P.warmup} warm-up, {P.min_runs}-{P.max_runs} runs interleaved with dense "
        f"({P.interleave} by {P.interleave}), "
        f"window {P.min_window_s:g}-{P.time_budget_s:g} s, ci {100 * P.ci_tolerance:g} %, "
        f"quiet rounds within {100 * (P.quiet_tolerance or 0):g} %, noise gate "
        f"{P.max_other_load:g} cores or dense {100 * (P.max_baseline_drift or 0):g} % above "
        f"its floor{' (int8: and dense int8)' if P.int8_probe else ''} x {P.noise_retries} "
        f"retries ({kept}); no cache"
    )
    floors = Floors.of(P, FLOORS)  # one for the process: the local and agent sections share it
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench_latency_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        configs, dense, probe, x = export_configs(args.ratios, folder)
        print(
            f"export: {len(configs)} configurations + dense in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        labels = [label for label, _ in configs]
        start = time.perf_counter()
        alone = standalone(configs, dense, x)
        print(
            "timed alone (speedup, plain ONNX Runtime, blocks of 300 runs): "
            + ", ".join(f"{label} {v:.3f}x" for label, v in alone.items())
            + f" ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        if not args.skip_local:
            print()
            print("== local (LocalRunner)")
            start = time.perf_counter()
            section = measure_rounds(
                configs,
                dense,
                probe,
                x,
                PROTOCOL,
                args.rounds,
                remeasure=not args.no_remeasure,
                floors=floors,
            )
            print()
            ok &= report(labels, section, alone)
            print(f"local section: {time.perf_counter() - start:.1f} s", flush=True)
        if not args.skip_agent:
            print()
            print("== agent on loopback (RemoteRunner)")
            start = time.perf_counter()
            ok &= run_agent_section(
                configs, dense, probe, x, args.rounds, folder, alone, not args.no_remeasure, floors
            )
            print(f"agent section: {time.perf_counter() - start:.1f} s", flush=True)
        if not args.skip_slow:
            print()
            print("== models made slow on purpose (local)")
            ok &= run_slow_section(folder)
    print(f"total: {time.perf_counter() - total:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
