"""A measured latency profile per layer: ONNX Runtime's own profiler, mapped to torch modules.

``layer_profile`` runs a model with ORT profiling on, keeps each node's kernel time per run
(median over the profiled runs), the wall-clock time of ``session.run`` (median), and sums the
nodes' times per PyTorch module (``module_ms``); ``group_ms`` sums those per prunable group.

What the profiled node names are (ORT 1.32, CPU provider, checked on ResNet-20):

* ``disabled``/``basic``: the graph's own node names (``/conv1/Conv``).
* ``extended``: fused nodes keep the name of the node they grew from: Conv+Relu becomes a
  ``FusedConv`` named ``/conv1/Conv``; in a QDQ int8 model DQ->Conv->Q becomes a
  ``QLinearConv`` named ``/conv1/Conv``, a Gemm a ``QGemm`` named ``/fc/Gemm``.
* ``all`` at fp32: the NCHWc transformer names each blocked Conv after the *tensor* it writes
  plus ``_nchwc``: ``/relu/Relu_output_0_nchwc`` for Conv+Relu (the Relu's output),
  ``/conv2/Conv_output_0_nchwc`` for a Conv with the residual Add fused; its weight becomes an
  initializer named ``reorder_token_<n>`` while the bias keeps ``<module>.bias``.
* ``all`` at int8: the NHWC layout transform renames each QLinearConv
  ``<conv name>_token_<n>`` (``/conv1/Conv_token_1``) and adds ``Transpose`` nodes; the weight
  input stays ``<module>.weight_quantized``.

So a node is mapped by, in order: the module parameters among its inputs in the optimized
graph ORT saves (``<module>.weight``/``.bias``, with a quantization suffix), its exact name in
the original graph (``export.node_map``), the longest original name it starts with (followed by
``_`` and a non-digit, so ``/c/Conv_1`` is not read as ``/c/Conv``), the ``_nchwc`` tensor traced
back through single-input activations to its Conv; any other node counts as ``(other)``
(activation Q/DQ, Add, pooling, layout Transposes and reorders). A weight's or bias's own
DequantizeLinear, left unfused at ``disabled``/``basic``, counts for its module: it runs
only for that layer.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from ..core.errors import ExportError, MeasurementError, TargetError
from ..core.runtime import CPU_PROVIDER, GRAPH_OPTIMIZATION, provider_name

if TYPE_CHECKING:
    import onnx

OTHER = "(other)"
KERNEL_SUFFIX = "_kernel_time"
NCHWC_SUFFIX = "_nchwc"
# ``<node>_output_0_...``: a node named after a tensor (an activation's QuantizeLinear), not
# a rename of the node itself
TENSOR_INFIX = "_output_"
PARAM_SUFFIXES = (".weight", ".bias")
QUANT_SUFFIXES = ("_quantized", "_Q4", "_Q8", "_T")
# ops ORT fuses into the Conv before them (a fused node may carry the name of their output)
FUSED_ACTIVATIONS = frozenset(
    {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "HardSwish", "Identity"}
)


@dataclass(frozen=True, kw_only=True)
class ProfileSettings:
    """How the model is run while profiled.

    Attributes:
        provider: the execution provider, short (``cpu``) or full name.
        intra_op_threads: intra-op threads (1: per-node times add up to the run time).
        graph_optimization: ``disabled``, ``basic``, ``extended`` or ``all``.
        runs: profiled runs; every time reported is a median over them.
        warmup: runs before them, whose events are dropped.
    """

    provider: str = "cpu"
    intra_op_threads: int = 1
    graph_optimization: str = "all"
    runs: int = 50
    warmup: int = 10


@dataclass(frozen=True)
class NodeTime:
    """One node of the optimized graph: its op, median kernel time per run, and module."""

    name: str
    op_type: str
    median_us: float
    module: str


@dataclass(frozen=True)
class LayerProfile:
    """The measured profile of one model.

    Attributes:
        nodes: the profiled nodes in execution order.
        run_ms: median wall-clock time of ``session.run`` over the profiled runs.
        module_ms: module name -> summed median ms of its nodes, slowest first; nodes that
            compute no module are summed under ``OTHER``.
    """

    nodes: tuple[NodeTime, ...]
    run_ms: float
    module_ms: dict[str, float]

    @property
    def kernel_ms(self) -> float:
        """The nodes' median kernel times added up (close to ``run_ms`` with one thread)."""
        return sum(node.median_us for node in self.nodes) / 1000.0


def group_ms(profile: LayerProfile, groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Group name -> summed ms of its member modules (a module not profiled counts 0): what a
    prunable group costs, since pruning it shrinks all its members together."""
    return {
        group: sum(profile.module_ms.get(module, 0.0) for module in members)
        for group, members in groups.items()
    }


def layer_profile(
    onnx_path: str | Path, inputs: np.ndarray, settings: ProfileSettings = ProfileSettings()
) -> LayerProfile:
    """Profile ``onnx_path`` on the batch ``inputs`` (fed to its first input as float32, like
    ``core.runtime.run``) with ORT's profiler: per node, per module, and the wall-clock run
    time. One thread and a run of a millisecond or more let the node times add up to the run
    time: ORT adds a fixed overhead per run (about 0.1 ms for ResNet-20 with profiling on).

    Raises:
        TargetError: an unknown graph optimization level, or bad run counts.
        MeasurementError: the profile cannot be read.
    """
    if settings.runs < 1 or settings.warmup < 0:
        raise TargetError(
            f"profile: runs must be >= 1 and warmup >= 0 (got {settings.runs}, {settings.warmup})"
        )
    with tempfile.TemporaryDirectory(prefix="pruna_profile_") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        sess = _profiling_session(onnx_path, settings, Path(tmp), optimized)
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
        wall = []
        for i in range(settings.warmup + settings.runs):
            start = time.perf_counter()
            sess.run(None, feed)
            if i >= settings.warmup:
                wall.append(time.perf_counter() - start)
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        graph = optimized.read_bytes() if optimized.exists() else None
    times, ops = _node_times(events, settings.warmup)
    modules = _map_nodes(list(times), Path(onnx_path), graph)
    nodes = tuple(
        NodeTime(name, ops[name], float(np.median(per_run)), modules[name])
        for name, per_run in times.items()
    )
    per_module: dict[str, float] = defaultdict(float)
    for node in nodes:
        per_module[node.module] += node.median_us / 1000.0
    ranked = dict(sorted(per_module.items(), key=lambda item: -item[1]))
    return LayerProfile(nodes=nodes, run_ms=float(np.median(wall)) * 1000.0, module_ms=ranked)


def _profiling_session(
    onnx_path: str | Path, settings: ProfileSettings, folder: Path, optimized: Path
) -> ort.InferenceSession:
    """A session set up like ``core.runtime.session`` (which cannot profile), with profiling
    into ``folder`` and, on CPU, the optimized graph saved to ``optimized`` (its node names are
    the profiled ones; other providers may compile nodes that cannot be saved)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(settings.intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        options.graph_optimization_level = GRAPH_OPTIMIZATION[settings.graph_optimization]
    except KeyError:
        raise TargetError(
            f"profile.graph_optimization: {settings.graph_optimization!r} is unknown; use one "
            f"of {', '.join(GRAPH_OPTIMIZATION)}"
        ) from None
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    full = provider_name(settings.provider)
    providers: list[Any] = [full]
    if full == CPU_PROVIDER:
        options.optimized_model_filepath = str(optimized)
    else:
        providers.append(CPU_PROVIDER)
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)


def _node_times(
    events: list[dict[str, Any]], warmup: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Node name -> its kernel µs in each profiled run, and node name -> op type.

    Node events are assigned to runs by time (each lies inside one ``model_run`` event), so
    the warm-up runs are dropped exactly and a node absent from a run counts 0 there.
    """
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"])
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[warmup:]
    if not runs:
        raise MeasurementError(
            "profile: ONNX Runtime's profile holds no model_run event after the warm-up; "
            f"this onnxruntime {ort.__version__} writes a trace this profiler cannot read"
        )
    starts = np.array([start for start, _ in runs])
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        index = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if index < 0 or event["ts"] > runs[index][1]:
            continue  # a warm-up run's node
        node = name[: -len(KERNEL_SUFFIX)]
        ops.setdefault(node, str(event.get("args", {}).get("op_name", "")))
        times.setdefault(node, [0.0] * len(runs))[index] += float(event["dur"])
    return times, ops


def _param_module(name: str) -> str | None:
    """``<module>`` of a parameter initializer ``<module>.weight``/``.bias`` (quantized too)."""
    for suffix in QUANT_SUFFIXES:
        name = name.removesuffix(suffix)
    for suffix in PARAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _by_params(graph: onnx.ModelProto | None, known: set[str]) -> dict[str, str]:
    """Optimized node name -> the first module whose parameter it reads (modules in ``known``
    only: a BatchNorm's ``bn.bias`` names no Conv/Gemm module)."""
    if graph is None:
        return {}
    inits = {init.name for init in graph.graph.initializer}
    result: dict[str, str] = {}
    for node in graph.graph.node:
        for name in node.input:
            module = _param_module(name) if name in inits else None
            if module in known:
                result[node.name] = module
                break
    return result


def _by_prefix(name: str, original: Mapping[str, str]) -> str | None:
    """The module of the longest original node name ``name`` extends by ``_<non-digit>...``
    (``/conv1/Conv_token_1`` -> ``/conv1/Conv``; ``/conv1/Conv_1`` is another node, and
    ``/conv1/Conv_output_0_QuantizeLinear`` quantizes the Conv's output tensor)."""
    best = ""
    for node in original:
        rest = name[len(node) :]
        if (
            len(node) > len(best)
            and name.startswith(node)
            and rest.startswith("_")
            and not rest[1:2].isdigit()
            and not rest.startswith(TENSOR_INFIX)
        ):
            best = node
    return original[best] if best else None


def _by_tensor(
    name: str, producers: Mapping[str, onnx.NodeProto], original: Mapping[str, str]
) -> str | None:
    """The module of an NCHWc node named ``<tensor>_nchwc``: the tensor's producer in the
    original graph (``producers``: tensor -> node), traced back through the activations ORT
    fuses into a Conv."""
    if not name.endswith(NCHWC_SUFFIX):
        return None
    node = producers.get(name[: -len(NCHWC_SUFFIX)])
    for _ in range(4):
        if node is None or node.name in original:
            break
        if node.op_type not in FUSED_ACTIVATIONS or not node.input:
            return None
        node = producers.get(node.input[0])
    return original.get(node.name) if node is not None else None


def _map_nodes(names: Sequence[str], onnx_path: Path, optimized: bytes | None) -> dict[str, str]:
    """Profiled node name -> module name (or ``OTHER``), by the rules of the module's doc,
    from the original model and the optimized graph ORT saved (None: not saved). onnx and the
    node map are imported here: ``pruna_search.measure`` loads on the device agent, which has
    onnxruntime but neither onnx nor torch."""
    import onnx

    from ..export.node_map import node_to_module

    model = onnx.load(str(onnx_path))
    graph = onnx.load_from_string(optimized) if optimized is not None else None
    try:
        original = node_to_module(model)
    except ExportError:  # shared weights: fall back to parameters in the optimized graph
        original = {}
    known = set(original.values()) or {
        m for init in model.graph.initializer if (m := _param_module(init.name))
    }
    params = _by_params(graph, known)
    producers = {out: node for node in model.graph.node for out in node.output}
    result = {}
    for name in names:
        module = (
            params.get(name)
            or original.get(name)
            or _by_prefix(name, original)
            or _by_tensor(name, producers, original)
        )
        result[name] = module or OTHER
    return result
