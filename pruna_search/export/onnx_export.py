"""Export a torch model to one self-contained ONNX file with a dynamic batch axis.

BatchNorm is folded into the preceding convolution in torch first, so every Conv/Gemm node
keeps its module's weight name (``layer1.0.conv1.weight``); that is how nodes map back to modules.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

from ..core.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("torchscript", "dynamo")
OPSET = 17


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv->BatchNorm pair folded (FX); the model itself when
    the graph cannot be traced symbolically (ONNX Runtime then fuses BatchNorm at load)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval())
    except Exception:  # untraceable control flow: export unfused, still correct
        return model


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    *,
    exporter: str = "torchscript",
    fold_bn: bool = True,
) -> Path:
    """Write ``model`` to ``path`` (atomically) and check it with ``onnx.checker``.

    Args:
        model: the model, put in eval mode.
        example: a real input batch of 2 or more (a batch of 1 can freeze the batch size).
        path: destination ``.onnx``; weights are embedded, no side file.
        exporter: ``torchscript`` (about 0.1 s for a ResNet-20) or ``dynamo`` (torch's new
            default, about 2.5 s); both give graphs whose weights carry module names.
        fold_bn: fold BatchNorm into convolutions before export.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"export.exporter: {exporter!r} is unknown; use one of {EXPORTERS}")
    if example.shape[0] < 2:
        example = torch.cat([example, example])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    module = fold_batchnorm(model) if fold_bn else model
    module.eval()
    try:
        with warnings.catch_warnings(), _silenced():
            warnings.simplefilter("ignore")
            _torch_export(module, example, tmp, exporter)
        _inline_constant_identities(str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as exc:
        _remove(tmp)
        _remove(Path(str(tmp) + ".data"))
        raise ExportError(
            f"export: {type(model).__name__} could not be exported to ONNX with the {exporter} "
            f"exporter ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); use operations "
            f"ONNX opset {OPSET} supports in its forward pass, or from Python try "
            f"optimize(..., exporter={_other(exporter)!r})"
        ) from exc
    os.replace(tmp, path)
    return path


def _other(exporter: str) -> str:
    return next(e for e in EXPORTERS if e != exporter)


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Nothing the exporter prints reaches the terminal: Python's ``print`` and what its C++
    side writes to file descriptors 1 and 2 (the TorchScript graph at an exception, tens of
    lines)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, copy_of in zip((1, 2), saved, strict=True):
            os.dup2(copy_of, fd)
            os.close(copy_of)


def _torch_export(module: nn.Module, example: torch.Tensor, tmp: Path, exporter: str) -> None:
    """``torch.onnx.export`` of ``module`` to ``tmp`` with ``exporter``, batch axis dynamic."""
    if exporter == "torchscript":
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    else:
        batch = torch.export.Dim("batch", min=1)
        arg = next(iter(_forward_arg_names(module)), "x")
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=True,
            opset_version=18,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={arg: {0: batch}},
            external_data=False,
        )


def _inline_constant_identities(path: str) -> None:
    """Replace ``Identity(initializer)`` nodes with their own initializer copies.

    The TorchScript exporter shares identical constants (e.g. two all-zero conv biases) through
    Identity nodes; a conv whose bias is not an initializer cannot be fused by the quantizer.
    """
    model = onnx.load(path)
    inits = {init.name: init for init in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    keep = []
    changed = False
    for node in model.graph.node:
        if (
            node.op_type == "Identity"
            and node.input[0] in inits
            and node.output[0] not in graph_outputs
        ):
            copy_ = onnx.TensorProto()
            copy_.CopyFrom(inits[node.input[0]])
            copy_.name = node.output[0]
            model.graph.initializer.append(copy_)
            changed = True
        else:
            keep.append(node)
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        onnx.save_model(model, path, save_as_external_data=False)


def _forward_arg_names(module: nn.Module) -> list[str]:
    import inspect

    params = inspect.signature(module.forward).parameters
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def load(path: str | Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    """Save atomically as one file, after ``onnx.checker``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp), save_as_external_data=False)
    try:
        onnx.checker.check_model(str(tmp))
    except Exception:
        _remove(tmp)
        raise
    os.replace(tmp, path)
    return path
