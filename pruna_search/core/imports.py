"""Import a user's object named ``package.module:name``, with errors that say how to fix it;
and build a settings object from keyword options, with the errors a keyword call gives."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import PrunaSearchError
from .names import did_you_mean

T = TypeVar("T")


def keyword_settings(cls: type[T], options: dict[str, Any], *, caller: str) -> T:
    """``cls(**options)`` for a function ``caller(**options)`` whose keyword options are the
    fields of the dataclass ``cls``: an unknown or missing option is the TypeError a call of
    ``caller`` with those keyword-only parameters raises (``caller() got an unexpected keyword
    argument 'x'``), so messages name the function the user called."""
    try:
        return cls(**options)
    except TypeError as exc:
        message = str(exc).replace(f"{cls.__qualname__}.__init__()", f"{caller}()", 1)
        raise TypeError(message) from None


def _split(path: str) -> tuple[str, str]:
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    return module_name, attr


def _defined_in(module: Any) -> list[str]:
    """Public callables the module itself defines (not the names it imports)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and callable(obj)
        and getattr(obj, "__module__", None) == module.__name__
    )


@dataclass(frozen=True)
class _Wanted:
    """What ``import_object`` looks for, and how its errors are worded."""

    path: str
    field: str
    kind: str
    error: type[PrunaSearchError]

    @property
    def fix(self) -> str:
        return (
            f"write it as 'package.module:{self.kind}' with the package importable (installed "
            "or on PYTHONPATH)"
        )


def import_object(path: str, *, field: str, kind: str, error: type[PrunaSearchError]) -> Any:
    """The object ``path`` names: ``package.module:name`` (or ``package.module.name``).

    Args:
        path: what the user wrote.
        field: the config key, for the message (``model.name``).
        kind: what the name should be, for the message (``ClassName``, ``function``).
        error: the exception raised when it cannot be imported.
    """
    wanted = _Wanted(path, field, kind, error)
    module_name, attr = _split(path)
    if not module_name or not attr:
        raise error(f"{field}: {path!r} names no object; {wanted.fix}")
    module = _import_module(module_name, wanted)
    obj = _attribute(module, module_name, attr, wanted)
    if inspect.ismodule(obj):
        choices = _defined_in(obj)
        example = f"{obj.__name__}:{choices[0] if choices else kind}"
        raise error(
            f"{field}: {path!r} is a module; name the {kind} in it, e.g. {example!r}"
            + (f" (it defines {', '.join(choices[:8])})" if choices else "")
        )
    return obj


def _import_module(module_name: str, wanted: _Wanted) -> Any:
    """The module ``module_name``, or ``wanted.error`` saying why it cannot be imported."""
    field, path, error = wanted.field, wanted.path, wanted.error
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise error(
                f"{field}: cannot import module {module_name!r} of {path!r}; {wanted.fix}"
            ) from None
        raise error(
            f"{field}: importing {module_name!r} for {path!r} failed: {exc}; install the missing "
            "package"
        ) from None
    except Exception as exc:
        raise error(
            f"{field}: importing {module_name!r} for {path!r} failed: {type(exc).__name__}: "
            f"{exc}; fix the module"
        ) from None


def _attribute(module: Any, module_name: str, attr: str, wanted: _Wanted) -> Any:
    """``module``'s (dotted) attribute ``attr``; a missing part of a module may be a submodule."""
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part) and inspect.ismodule(obj):
            # pkg.module written without its object: the submodule, if it is one
            try:
                obj = importlib.import_module(f"{obj.__name__}.{part}")
                continue
            except ImportError:
                pass
        if not hasattr(obj, part):
            choices = _defined_in(obj) if inspect.ismodule(obj) else []
            hint = (
                did_you_mean(part, choices)
                if choices
                else f"it defines no public {wanted.kind} of its own"
            )
            raise wanted.error(
                f"{wanted.field}: {module_name!r} has no {attr!r} (from {wanted.path!r}); {hint}"
            )
        obj = getattr(obj, part)
    return obj
