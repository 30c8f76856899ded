"""A client of the device agent (``pruna-search-agent``) over HTTP, standard library only.

``GET /health`` gives the device's fingerprint and providers; ``POST /measure`` uploads ONNX
files (multipart fields ``model`` and optionally ``baseline``) with the timing settings as
JSON and returns the same figures as a local measurement. Connection failures and 5xx answers
are retried with a growing pause; 4xx answers are final and carry the agent's reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import MeasurementError, TargetError
from ..core.timing import ModelRunError


class TokenRefused(TargetError):
    """The agent answered 401/403: no token, or not its token."""


class AgentClient:
    """Talks to one agent at ``url`` with ``token`` (None: no Authorization header)."""

    def __init__(
        self, url: str, token: str | None, *, retries: int = 3, timeout_s: float = 120.0
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.retries = max(1, int(retries))
        self.timeout_s = timeout_s
        self.backoff_s = 1.0

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health", None, {}, timeout=10.0)

    def measure(
        self, models: Sequence[str | Path], settings: Mapping[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        """Time ``models`` on the device, in the local runner's order: the model alone, or the
        baseline, the candidate and optionally a reference timed as a probe."""
        if not 1 <= len(models) <= 3:
            raise ValueError(f"models: {len(models)} files; send 1 to 3")
        roles = ["model"] if len(models) == 1 else ["baseline", "model", "reference"]
        fields = {"settings": json.dumps(dict(settings))}
        files = {role: Path(path) for role, path in zip(roles, models, strict=False)}
        body, content_type = _multipart(fields, files)
        reply = self._request(
            "POST", "/measure", body, {"Content-Type": content_type}, timeout=timeout_s
        )
        # the agent answers by role; callers expect input order
        reply["models"] = [reply[role] for role in files]
        return reply

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict, *, timeout: float
    ) -> dict[str, Any]:
        headers = dict(headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        reason = "no answer"
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url + path, data=body, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = _detail(exc)
                if exc.code in (401, 403):
                    raise TokenRefused(
                        f"target.url: the agent at {self.url} refused the token ({exc.code}: "
                        f"{detail}); set the agent's token in the target's token_env variable"
                    ) from None
                if exc.code < 500:
                    raise ModelRunError(
                        f"the agent refused the measurement ({exc.code}: {detail})", "run"
                    ) from None
                reason = f"{exc.code}: {detail}"
            except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
                reason = str(getattr(exc, "reason", exc))
        raise MeasurementError(
            f"target.url: the agent at {self.url} is not answering ({reason}) after "
            f"{self.retries} tries; start it on the device (pruna-search-agent --port ...) "
            "or fix target.url"
        )


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("detail", exc.reason))
    except (json.JSONDecodeError, OSError, AttributeError):
        return str(exc.reason)


def _multipart(fields: Mapping[str, str], files: Mapping[str, Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, path in files.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + path.read_bytes()
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
