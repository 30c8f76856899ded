"""``pruna-search-ui``: the MLflow UI for the studies tracked in this folder.

    pruna-search-ui [--uri sqlite:///mlflow.db] [--host 127.0.0.1] [--port 5000]

Starts ``mlflow server`` on 127.0.0.1 (only this machine can reach it; pass ``--host`` to share
it on a trusted network) against the tracking store ``pruna-search`` writes by default, and runs
until Ctrl-C. It prints, for the most recent experiments, the address of their trials view
(every trial run with its metrics, fastest first) and of their studies view, then the experiments
page.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from ..core.errors import ConfigError
from ..tracking import DEFAULT_URI, check_uri, sqlite_path
from ..tracking.ui import (
    STUDIES_VIEW,
    TRIALS_VIEW,
    UI_HOST,
    UI_PORT,
    base_url,
    ui_command,
    ui_url,
    view_url,
)
from .run import EXIT_ERROR, EXIT_INTERRUPTED


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pruna-search-ui", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uri", default=DEFAULT_URI, help=f"tracking store (default {DEFAULT_URI})"
    )
    parser.add_argument("--host", default=UI_HOST, help=f"address to bind (default {UI_HOST})")
    parser.add_argument("--port", type=int, default=UI_PORT, help=f"port (default {UI_PORT})")
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
    print(banner(args), flush=True)
    # its own process group, so stopping this command stops the server and its workers
    server = subprocess.Popen(command, env=env, start_new_session=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop(server)
        return EXIT_INTERRUPTED


def banner(args: argparse.Namespace) -> str:
    """The trials and studies views of the most recent experiments, then all experiments."""
    lines = [f"MLflow UI for {args.uri} (Ctrl-C stops it)"]
    try:
        from ..tracking.mlflow_tracker import pruna_experiments

        experiments = pruna_experiments(args.uri)
    except Exception:  # an unreadable store: the server says why once it starts
        experiments = []
    base = base_url(args.host, args.port)
    for experiment_id, name in experiments:
        for label, view in (("trials", TRIALS_VIEW), ("studies", STUDIES_VIEW)):
            lines.append(f"  {label} of {name}: {view_url(base, experiment_id, view)}")
    lines.append(f"  all experiments: {ui_url(args.host, args.port)}")
    return "\n".join(lines)


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
