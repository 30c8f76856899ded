"""ONNX export, the module <-> node map and the torch-vs-ORT parity check."""

from __future__ import annotations

from .node_map import module_to_node, node_to_module
from .onnx_export import EXPORTERS, export_onnx, fold_batchnorm, load, save
from .parity import check_parity, max_abs_diff

__all__ = [
    "EXPORTERS",
    "check_parity",
    "export_onnx",
    "fold_batchnorm",
    "load",
    "max_abs_diff",
    "module_to_node",
    "node_to_module",
    "save",
]
