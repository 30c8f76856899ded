"""What analysis knows about a model: its quantizable layers and prunable groups (plain data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerInfo:
    """A quantizable layer (Conv2d or Linear), named by its qualified module name."""

    name: str
    kind: str  # "conv" or "linear" (core.target.CONV / LINEAR)
    in_channels: int
    out_channels: int
    groups: int = 1
    is_classifier: bool = False


@dataclass(frozen=True)
class GroupInfo:
    """A dependency group: layers whose channels must be pruned together.

    Named by its root module. ``members`` are the other coupled Conv/Linear layers
    (e.g. convs joined by a residual add, or a depthwise conv following its expansion).
    """

    name: str
    channels: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """The result of analysing a model on an example input."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerInfo, ...]
    groups: tuple[GroupInfo, ...]
    macs: int
    params: int

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def group(self, name: str) -> GroupInfo:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)
