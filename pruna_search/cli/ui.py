"""``pruna-search-ui``: the MLflow UI for the studies tracked in this folder.

    pruna-search-ui [--uri sqlite:///mlflow.db] [--host 127.0.0.1] [--port 5000]

Starts ``mlflow server`` on 127.0.0.1 (only this machine can reach it; pass ``--host`` to share
it on a trusted network) against the tracking store ``pruna-search`` writes by default, and runs
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from ..core.errors import ConfigError
from ..tracking import DEFAULT_URI, check_uri, sqlite_path
from ..tracking.mlflow_tracker import ui_command, ui_url
from .run import EXIT_ERROR, EXIT_INTERRUPTED


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pruna-search-ui", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uri", default=DEFAULT_URI, help=f"tracking store (default {DEFAULT_URI})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        check_uri(args.uri)
        db = sqlite_path(args.uri)
        if db is not None and not db.is_file():
            raise ConfigError(
                f"--uri: {args.uri!r} has no tracked study yet ({db.resolve()} is missing); run "
                "pruna-search here first, or pass the --uri it tracked to"
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    command, env = ui_command(args.uri, args.host, args.port)
    print(
        f"MLflow UI for {args.uri}: {ui_url(args.host, args.port)} (Ctrl-C stops it)",
        flush=True,
    )
    # its own process group, so stopping this command stops the server and its workers
    server = subprocess.Popen(command, env=env, start_new_session=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop(server)
        return EXIT_INTERRUPTED


def _stop(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    sys.exit(main())
