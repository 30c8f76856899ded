"""The device agent: ``pruna-search-agent`` runs on the target and measures ONNX models sent
to it over HTTP with the same protocol as the local runner (``measure/timing.py``).

It needs only ``pip install "pruna-search[agent]"``: onnxruntime, numpy, FastAPI and uvicorn;
nothing here imports torch, optuna, mlflow or hydra.
"""

from __future__ import annotations

from .app import AgentConfig, create_app

__all__ = ["AgentConfig", "create_app"]
