"""What can be compressed in a model: quantizable layers, prunable groups, MACs and params.

``analyze`` reaches torch-pruning through ``compress.prune`` so that library stays imported in
one file; nothing else in this package touches compress/.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch
from torch import nn

from ..compress.prune import dependency_groups, execution_order
from ..core.errors import ModelError
from ..core.model_info import LayerInfo, ModelInfo
from ..core.target import CONV, LINEAR
from .macs import count_macs, count_params


class HasExamples(Protocol):
    """What gives real inputs: a DataSplits (``example`` reads its val split)."""

    def example(self, batch: int = 2) -> torch.Tensor: ...


ShapeSource = HasExamples | torch.Tensor | Iterable[int]


def example_input(shape_source: ShapeSource, batch: int = 2) -> torch.Tensor:
    """A batch of real inputs (from a DataSplits) or zeros of a given example shape."""
    if hasattr(shape_source, "example"):
        return shape_source.example(batch)
    if isinstance(shape_source, torch.Tensor):
        return shape_source
    shape = tuple(int(d) for d in shape_source)
    return torch.zeros((batch, *shape))


def analyze(model: nn.Module, data: ShapeSource) -> ModelInfo:
    """Analyse ``model`` on real inputs from ``data`` (a DataSplits, a tensor, or a shape)."""
    example = example_input(data)
    try:
        order = execution_order(model, example)
    except Exception as exc:
        raise ModelError(
            f"model: a forward pass on inputs of shape {tuple(example.shape)} failed "
            f"({type(exc).__name__}: {exc}); check that the model matches the data"
        ) from exc
    modules = dict(model.named_modules())
    classifier = order[-1] if order else None  # the last Conv/Linear run is the classifier
    layers = []
    for name in order:
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            layers.append(
                LayerInfo(
                    name,
                    CONV,
                    module.in_channels,
                    module.out_channels,
                    module.groups,
                    name == classifier,
                )
            )
        else:
            layers.append(
                LayerInfo(
                    name, LINEAR, module.in_features, module.out_features, 1, name == classifier
                )
            )
    return ModelInfo(
        input_shape=tuple(example.shape[1:]),
        layers=tuple(layers),
        groups=dependency_groups(model, example, classifier=classifier),
        macs=count_macs(model, example),
        params=count_params(model),
    )


def layer_names(info: ModelInfo, kinds: Sequence[str] = (CONV, LINEAR)) -> tuple[str, ...]:
    return tuple(layer.name for layer in info.layers if layer.kind in kinds)


__all__ = ["analyze", "count_macs", "count_params", "example_input", "layer_names"]
