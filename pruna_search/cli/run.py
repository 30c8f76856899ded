"""Run a Hydra app and turn any error into one line on stderr and a non-zero exit code."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from ..core.errors import PrunaSearchError
from .errors import one_line

EXIT_ERROR = 2
EXIT_NO_FEASIBLE = 3
EXIT_INTERRUPTED = 130


def _verbose(argv: list[str]) -> bool:
    return any(a.lower() in ("verbose=true", "verbose=1", "verbose=yes") for a in argv)


class _DropHydraReport:
    """stderr without Hydra's "Error executing job with overrides" line (one line is ours)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides"):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


RUN_DIR_KEYS = ("hydra.run.dir=", "hydra.sweep.dir=")


def _run_dir_problem(exc: BaseException, argv: list[str]) -> str | None:
    """The one line for a run folder that cannot be made (an OSError on the path given as
    ``hydra.run.dir``/``hydra.sweep.dir``, or under the default ``outputs/``/``multirun/``)."""
    if not isinstance(exc, OSError) or not exc.filename:
        return None
    path = str(exc.filename)
    given = [a.split("=", 1) for a in argv if a.startswith(RUN_DIR_KEYS)]
    for key, value in given:
        if value.startswith(path) or path.startswith(value):
            return (
                f"{key}: {value!r} cannot be created ({exc.strerror}: {path!r}); choose a "
                "folder you can write"
            )
    if not given and path.startswith(("outputs", "multirun")):
        return (
            f"hydra.run.dir: {path!r} cannot be created ({exc.strerror}); run from a folder you "
            "can write, or set hydra.run.dir=..."
        )
    return None


def discard_run_dir(output_dir: str | os.PathLike) -> None:
    """Bad input: nothing ran, so leave no half-written run folder behind — the folder, and
    the folders above it up to the working folder that it leaves empty (``outputs/export``)."""
    logging.shutdown()  # the run's search.log handler holds the folder open
    folder = Path(output_dir).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    here = Path.cwd().resolve()
    for parent in folder.parents:
        if parent == here or here not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def guarded(app: Callable[[], None]) -> int:
    """Call ``app`` (it parses ``sys.argv``); 0 on success, else print one line and return the
    exit code. ``verbose=true`` on the command line re-raises with the traceback;
    ``--version`` prints the package's version instead."""
    if "--version" in sys.argv[1:]:
        from .. import __version__

        print(f"pruna_search {__version__}")
        return 0
    verbose = _verbose(sys.argv[1:])
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
    stderr = sys.stderr
    sys.stderr = _DropHydraReport(stderr)
    try:
        app()
    except KeyboardInterrupt:
        print(
            "interrupted: the study is kept; run the same command again to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except PrunaSearchError as exc:
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if verbose:
            raise
        folder = _run_dir_problem(exc, sys.argv[1:])
        if folder:
            print(f"error: {folder}", file=sys.stderr)
            return EXIT_ERROR
        name = type(exc).__module__.split(".")[0]
        if name in ("hydra", "omegaconf"):
            print(f"error: {one_line(exc)}", file=sys.stderr)
        else:
            print(
                f"error: {type(exc).__name__}: {one_line(exc)} (verbose=true shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_ERROR
    finally:
        sys.stderr = stderr
    return 0
