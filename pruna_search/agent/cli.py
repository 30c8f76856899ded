"""``pruna-search-agent``: the device agent (run it on the target device).

    pruna-search-agent [--host 127.0.0.1] [--port 8765] [--token T] [--max-model-mb 200]
                       [--max-input-mb 512] [--timeout-s 120]

The token comes from ``--token`` or ``PRUNA_AGENT_TOKEN``. Without one the agent answers
anyone who can reach it, so it then listens on loopback only; any other ``--host`` needs a
token. Uploads are kept in a temporary folder of its own, removed when it stops (Ctrl-C or
SIGTERM). uvicorn is imported here only.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from ..core.hosts import url_host

EXIT_ERROR = 2
TOKEN_ENV = "PRUNA_AGENT_TOKEN"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pruna-search-agent", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (8765)")
    parser.add_argument(
        "--token", default=None, help=f"bearer token clients must send (or ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--max-model-mb", type=float, default=200.0, help="largest ONNX file accepted (200)"
    )
    parser.add_argument(
        "--max-input-mb",
        type=float,
        default=512.0,
        help="largest input generated for a model, from its input shape and batch size (512)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=120.0, help="longest one measurement may run (120)"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per measurement")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(args: argparse.Namespace, token: str | None) -> None:
    """One-line errors for settings the agent must refuse (raised as SystemExit messages)."""
    if token is None and not is_loopback(args.host):
        raise ValueError(
            f"--host {args.host}: refusing to listen beyond loopback without a token; pass "
            f"--token or set {TOKEN_ENV} (clients then send 'Authorization: Bearer <token>')"
        )
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: must be between 1 and 65535")
    if args.max_model_mb <= 0:
        raise ValueError(f"--max-model-mb {args.max_model_mb:g}: must be > 0")
    if args.max_input_mb <= 0:
        raise ValueError(f"--max-input-mb {args.max_input_mb:g}: must be > 0")
    if args.timeout_s <= 0:
        raise ValueError(f"--timeout-s {args.timeout_s:g}: must be > 0")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise ValueError(
                f"--port {args.port}: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                "choose another --port or --host"
            ) from None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        check(args, token)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    workdir = Path(tempfile.mkdtemp(prefix="pruna-agent-"))
    # every temporary file of this process (uploads spooled by the web library) and of its
    # measuring processes goes to the agent's own folder
    tempfile.tempdir = str(workdir)
    os.environ["TMPDIR"] = str(workdir)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s"
    )
    try:
        import uvicorn

        from .app import AgentConfig, create_app

        app = create_app(
            AgentConfig(
                workdir=workdir,
                token=token,
                max_model_bytes=int(args.max_model_mb * 1e6),
                timeout_s=args.timeout_s,
                max_input_bytes=int(args.max_input_mb * 1e6),
            )
        )
        # SIGTERM stops it like Ctrl-C: uvicorn finishes, the folder is removed
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        print(
            f"pruna-search-agent on http://{url_host(args.host)}:{args.port} "
            f"({'token required' if token else 'no token: loopback only'}; models up to "
            f"{args.max_model_mb:g} MB, inputs up to {args.max_input_mb:g} MB; temporary "
            f"folder {workdir})",
            flush=True,
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
        )
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
