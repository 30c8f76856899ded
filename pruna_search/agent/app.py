"""The device agent's web service (FastAPI; the only importer of fastapi and starlette).

``GET /health``: the device's fingerprint, its ONNX Runtime providers and the queue.
``POST /measure``: multipart field ``model`` (the ONNX file), optional ``baseline`` (timed
alternately with it, so ``speedup`` is a same-window ratio), optional ``reference`` (with a
baseline: a third model timed in the same window, a probe of the device's state) and
``settings`` (JSON: ``batch_size``, ``intra_op_threads``, ``warmup``, ``time_budget_s``
seconds, and the other ``TimingSettings`` fields, under the target's names) -> the figures of
one window as JSON.

Rules: with a token, every request needs ``Authorization: Bearer <token>`` (401 otherwise); a
body over the size limit is refused with 413 before it is stored, and so is a model whose
declared input shape (at the batch size asked for) would need an input over the input limit,
before that input is made; a file ONNX Runtime cannot load is 400, one that fails, hangs or
crashes at run time 422, a request missing a field or with a field of the wrong kind 422; every
error is ``{"detail": "<one line>"}`` naming the field, and never shows the agent's own paths
(an upload is named by its field). One measurement runs at a time and the others wait in
arrival order; uploads live in the agent's own temporary folder only, and are deleted after
their measurement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import hardware, runtime
from ..core.timing import ModelRunError, TimingSettings
from ..measure.timing import run_isolated

log = logging.getLogger("pruna_search.agent")
# HTTP status of each stage a measurement can fail at
STATUS = {"settings": 400, "load": 400, "input": 413, "run": 422, "timeout": 422, "crash": 422}
FORM_OVERHEAD = 64 * 1024  # multipart headers and the settings field
MAX_FILES = 3  # model, baseline and reference
FIELDS = ("model", "baseline", "reference")  # the upload fields, each saved as <field>.onnx
# the largest input the agent generates for one model (float32, its declared shape at the
# batch size asked for): a tiny file can declare an input of gigabytes
MAX_INPUT_BYTES = 512_000_000


@dataclass(frozen=True)
class AgentConfig:
    """How the agent runs: ``token`` (None: no authentication, loopback only), the largest
    model accepted, the largest input generated for a model, the timeout of one measurement,
    and its temporary folder."""

    workdir: Path
    token: str | None = None
    max_model_bytes: int = 200_000_000
    timeout_s: float = 120.0
    max_input_bytes: int = MAX_INPUT_BYTES


class Guard:
    """ASGI middleware: the token first, then the body size, before anything is parsed.

    A refused request's body is read and discarded (never stored), so the client always gets
    the answer instead of a broken connection.
    """

    def __init__(self, app: ASGIApp, config: AgentConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        refusal = None
        if self.config.token is not None:
            scheme, _, given = headers.get("authorization", "").strip().partition(" ")
            right = scheme.lower() == "bearer"  # schemes are case-insensitive (RFC 7235)
            if not (
                right
                and secrets.compare_digest(given.strip().encode(), self.config.token.encode())
            ):
                refusal = (401, "missing or wrong token: send 'Authorization: Bearer <token>'")
        if refusal is None and "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                length = 0
            if length > self.config.max_model_bytes * MAX_FILES + FORM_OVERHEAD:
                refusal = (413, too_large("request", length, self.config.max_model_bytes))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        while True:  # drain the body
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        status, detail = refusal
        extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        await JSONResponse({"detail": detail}, status_code=status, headers=extra)(
            scope, receive, send
        )


class _Queue:
    """One measurement at a time: ``lock`` is taken in arrival order; the counters are what
    ``/health`` reports, and ``next`` numbers the requests' folders."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0
        self.measuring = False
        self.served = 0
        self.next = 0


def create_app(config: AgentConfig) -> FastAPI:
    """The agent's app; ``config.workdir`` must exist and belong to this agent alone."""
    app = FastAPI(title="pruna-search-agent", docs_url=None, redoc_url=None)
    queue = _Queue()  # FIFO: waiters acquire its lock in arrival order

    @app.get("/health")
    def health() -> dict[str, Any]:
        return _health(config, queue)

    @app.post("/measure")
    async def measure(
        model: Annotated[UploadFile, File()],
        baseline: Annotated[UploadFile | None, File()] = None,
        reference: Annotated[UploadFile | None, File()] = None,
        settings: Annotated[str, Form()] = "{}",
    ) -> dict[str, Any]:
        timing = _settings(settings)
        _limits(timing)
        uploads = _uploads(config, model, baseline, reference)
        queue.next += 1
        folder = config.workdir / f"request-{queue.next}"
        folder.mkdir()
        try:
            paths = _save(uploads, folder)
            reply, times = await _run(queue, paths, timing, config)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        stats = dict(zip(paths, reply.pop("models"), strict=True))
        result = _result(stats, reply, times)
        log.info(
            f"measured {model.filename} ({(model.size or 0) / 1e6:.2f} MB): p10 "
            f"{stats['model']['p10']:.3f} ms, {stats['model']['runs']} runs, other load "
            f"{_cores(reply.get('other_load'))}, waited {result['queued_s']:.1f} s"
        )
        return result

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.detail, str):  # one place: no reply shows the agent's own paths
            exc = StarletteHTTPException(exc.status_code, scrub(exc.detail, config), exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": invalid(exc.errors())}, status_code=422)

    app.add_middleware(Guard, config=config)
    return app


def scrub(text: str, config: AgentConfig) -> str:
    """``text`` without the agent's temporary folder: an upload's path becomes its field's
    name, any other path in the folder "the agent's temporary folder"."""
    for root in dict.fromkeys((str(config.workdir), os.path.realpath(config.workdir))):
        folder = re.escape(root.rstrip("/\\"))
        upload = rf"{folder}[/\\]request-\d+[/\\]({'|'.join(FIELDS)})\.onnx"
        text = re.sub(upload, r"\1", text)
        text = re.sub(rf"{folder}[^\s'\"():;,]*", "the agent's temporary folder", text)
    return text


def invalid(errors: Any) -> str:
    """FastAPI's validation errors as one line: ``<field>: <message>`` each, then the fix."""
    parts = []
    for error in errors:
        names = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = " ".join(str(error.get("msg", "invalid")).split())
        message = re.sub(r"^value error, ", "", message, flags=re.IGNORECASE)
        parts.append(f"{'.'.join(names) or 'request'}: {message[:1].lower()}{message[1:]}")
    return "; ".join(
        [
            *parts,
            "send the ONNX files as multipart/form-data file fields model (and optional "
            "baseline, reference) and the settings JSON as the text field settings",
        ]
    )


def _health(config: AgentConfig, queue: _Queue) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": _version(),
        "fingerprint": hardware.fingerprint(),
        "providers": runtime.available_providers(),
        "measuring": queue.measuring,
        "waiting": queue.waiting,
        "served": queue.served,
        "max_model_mb": config.max_model_bytes / 1e6,
        "max_input_mb": config.max_input_bytes / 1e6,
    }


def _uploads(
    config: AgentConfig,
    model: UploadFile,
    baseline: UploadFile | None,
    reference: UploadFile | None,
) -> list[tuple[str, UploadFile]]:
    """The files sent, as (field, upload) in the order they are timed, each checked."""
    if reference is not None and baseline is None:
        raise HTTPException(400, "reference: sent without a baseline; send both or neither")
    # timed in this order, like the local runner: [baseline, model, reference]
    given = (("baseline", baseline), ("model", model), ("reference", reference))
    uploads = [(field, upload) for field, upload in given if upload is not None]
    for field, upload in uploads:
        size = upload.size if upload.size is not None else 0
        if size > config.max_model_bytes:
            raise HTTPException(413, too_large(field, size, config.max_model_bytes))
        if size == 0:
            raise HTTPException(400, f"{field}: the file is empty; send the ONNX file")
    return uploads


def _save(uploads: list[tuple[str, UploadFile]], folder: Path) -> dict[str, Path]:
    """Each upload written to ``folder/<field>.onnx``."""
    paths = {}
    for field, upload in uploads:
        paths[field] = folder / f"{field}.onnx"
        with open(paths[field], "wb") as handle:
            shutil.copyfileobj(upload.file, handle)
    return paths


async def _run(
    queue: _Queue, paths: dict[str, Path], timing: TimingSettings, config: AgentConfig
) -> tuple[dict[str, Any], dict[str, float]]:
    """``run_isolated`` on the saved uploads (in ``paths``' order) when the queue comes to this
    request: its reply, and when the request arrived, started and finished."""
    order = list(paths.values())
    arrived = time.time()
    queue.waiting += 1
    async with queue.lock:
        queue.waiting -= 1
        queue.measuring = True
        started = time.time()
        try:
            reply = await asyncio.to_thread(
                run_isolated,
                order,
                timing,
                timeout_s=config.timeout_s,
                max_input_bytes=config.max_input_bytes,
            )
        except ModelRunError as exc:
            raise HTTPException(STATUS.get(exc.stage, 422), _failure(exc, paths)) from None
        finally:
            finished = time.time()
            queue.measuring = False
            queue.served += 1
    return reply, {"arrived": arrived, "started": started, "finished": finished}


def _failure(exc: ModelRunError, paths: dict[str, Path]) -> str:
    """A measurement's error, prefixed by the field of the one upload it names ("model" when
    it names none); the paths themselves are scrubbed from every reply (``scrub``)."""
    text = str(exc)
    named = [field for field, path in paths.items() if str(path) in text]
    field = named[0] if len(named) == 1 else "model"
    if exc.stage == "input":
        text += ", or start the agent with a larger --max-input-mb"
    return f"{field}: {text}"


def _result(
    stats: dict[str, Any], reply: dict[str, Any], times: dict[str, float]
) -> dict[str, Any]:
    """The answer: each model's figures, the speedup over the baseline, the rest of the
    reply, and when the measurement started and finished and how long it waited."""
    result: dict[str, Any] = {
        "model": stats["model"],
        "baseline": stats.get("baseline"),
        "reference": stats.get("reference"),
        "speedup": None,
    }
    if "baseline" in stats:
        result["speedup"] = stats["baseline"]["p10"] / stats["model"]["p10"]
    result.update(reply)
    started = times["started"]
    result.update(started=started, finished=times["finished"], queued_s=started - times["arrived"])
    return result


def too_large(field: str, size: int, limit: int) -> str:
    return (
        f"{field}: {size / 1e6:.1f} MB is over this agent's limit of {limit / 1e6:.1f} MB per "
        "model; start the agent with a larger --max-model-mb"
    )


# the most a request may ask of one measurement (it holds the only measurement slot; the
# agent's --timeout-s stops a run that outlasts it, these refuse at once what cannot be meant)
SETTING_LIMITS: dict[str, float] = {
    "batch_size": 1024,
    "warmup": 10_000,
    "min_runs": 100_000,
    "max_runs": 100_000,
    "time_budget_s": 600.0,
    "min_window_s": 600.0,
}


def _limits(settings: TimingSettings) -> None:
    """A setting over this agent's limits: 400 naming it, the value and the limit."""
    for name, limit in SETTING_LIMITS.items():
        value = getattr(settings, name)
        if value > limit:
            raise HTTPException(
                400, f"settings.{name}: {value!r} is over this agent's limit of {limit:g}"
            )


def _settings(text: str) -> TimingSettings:
    try:
        values = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"settings: not valid JSON ({exc.msg}); send an object") from None
    if not isinstance(values, dict):
        raise HTTPException(400, f"settings: {values!r} is not a JSON object")
    try:
        settings = TimingSettings.from_mapping(values)
        runtime.check_provider(settings.provider, field="settings.provider")
    except ModelRunError as exc:
        raise HTTPException(
            400, str(exc) if str(exc).startswith("settings") else f"settings.{exc}"
        ) from None
    except Exception as exc:  # TargetError: a provider this agent lacks
        raise HTTPException(400, str(exc)) from None
    return settings


def _cores(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} cores"


def _version() -> str:
    from .. import __version__

    return __version__
