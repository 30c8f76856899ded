"""The config schema: the settings dataclasses, registered with Hydra's ConfigStore.

Each typed section's keys, types and defaults are the fields of one dataclass (``SECTIONS``),
written once; a group's YAML options start from it (``defaults: [base]``) and set only what
differs. OmegaConf checks types when a value is set on the command line, so a wrong type or
an unknown key fails before anything runs; ranges are checked by the dataclasses themselves.
The one-line descriptions ``pruna-search --help`` prints come from the same dataclasses'
docstrings.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from ..core.target import Target
from ..search.objectives import Objective
from ..search.settings import (
    AnalysisSettings,
    FinetuneSettings,
    SpaceSettings,
    TrackingSettings,
)
from ..search.study import StudySettings

SCHEMA = "base"  # the option name every typed group's YAML starts from
# model, data and sampler stay plain YAML: their keys differ from one option to the next (a data
# set's loader options, a sampler's Optuna options); each option's file lists its keys
SECTIONS: dict[str, type] = {
    "target": Target,
    "space": SpaceSettings,
    "objective": Objective,
    "study": StudySettings,
    "finetune": FinetuneSettings,
    "tracking": TrackingSettings,
    "analysis": AnalysisSettings,
}
# keys the YAML spells otherwise than the dataclass field, with their schema type and default
RENAMED: dict[str, dict[str, tuple[str, Any, Any]]] = {
    "target": {"precisions": ("capabilities", dict[str, list[str]] | None, None)},
}
# keys a section has besides its dataclass's fields
EXTRA: dict[str, tuple[tuple[str, Any, Any], ...]] = {}
PRIMITIVES = (bool, int, float, str)


def register() -> None:
    """Store each section's schema as ``<group>/base`` (idempotent)."""
    store = ConfigStore.instance()
    for group in SECTIONS:
        store.store(group=group, name=SCHEMA, node=schema_node(group))


def schema_node(group: str) -> DictConfig:
    """The section as a typed, writable DictConfig (the dataclasses are frozen; OmegaConf
    makes a frozen dataclass's config read-only, which would refuse every override)."""
    made = dataclasses.make_dataclass(SECTIONS[group].__name__, list(_schema_fields(group)))
    node = OmegaConf.structured(made)
    OmegaConf.set_readonly(node, False)
    return node


def _schema_fields(group: str):
    renamed = RENAMED.get(group, {})
    hints = typing.get_type_hints(SECTIONS[group])
    for f in dataclasses.fields(SECTIONS[group]):
        if f.name in renamed:
            key, annotation, default = renamed[f.name]
            yield key, annotation, _field_default(default)
        elif f.init:
            yield f.name, omega_type(hints[f.name]), _field_default(_default_of(f))
    for key, annotation, default in EXTRA.get(group, ()):
        yield key, annotation, _field_default(default)


def keys(group: str) -> dict[str, Any]:
    """The section's keys and their annotations (as the schema types them)."""
    return {name: annotation for name, annotation, _ in _schema_fields(group)}


def omega_type(annotation: Any) -> Any:
    """The nearest type OmegaConf can check: Mapping becomes dict, unions of anything but
    one primitive and None become Any."""
    origin = typing.get_origin(annotation)
    if (
        annotation in PRIMITIVES
        or isinstance(annotation, type)
        and issubclass(annotation, enum.Enum)
    ):
        return annotation
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and omega_type(args[0]) is not Any:
            return omega_type(args[0]) | None
        return Any
    if origin is tuple:
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis and items[0] in PRIMITIVES:
            return types.GenericAlias(tuple, (items[0], ...))  # tuple[items[0], ...]
        return Any
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return dict[str, Any]
    return Any


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return dict(value) if isinstance(value, Mapping) else value
    return MISSING


def _field_default(value: Any) -> Any:
    if isinstance(value, dict | list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


def describe(annotation: Any) -> str:
    """What a value of this type looks like, for error messages: ``an integer``, ..."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(describe(a) for a in args) + " (or null)"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "text"
    if origin in (tuple, list):
        return f"a list like [{_example(typing.get_args(annotation)[0])}, ...]"
    if origin in (dict, Mapping):
        return "a mapping like {key: value}"
    return "a value"


def _example(annotation: Any) -> str:
    return {int: "1", float: "0.5", str: "a", bool: "true"}.get(annotation, "...")


def example(annotation: Any) -> str:
    """A valid value of this type, for the fix in an error message."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return example(args[0]) if args else "null"
    if origin in (tuple, list):
        return f"[{_example(typing.get_args(annotation)[0])}]"
    if origin in (dict, Mapping):
        return "{a: 1}"
    return _example(annotation)


def descriptions(cls: Any) -> dict[str, str]:
    """``name: text`` entries of the docstring's ``Attributes:`` (or ``Args:``) block, first
    sentence of each, one line; ``a / b: text`` documents both. A class inherits its bases'."""
    found: dict[str, str] = {}
    for base in reversed(getattr(cls, "__mro__", (cls,))):
        found |= _documented(base.__doc__ or "")
    return found


def _documented(doc: str) -> dict[str, str]:
    found: dict[str, str] = {}
    lines = doc.splitlines()
    inside = False
    current: list[str] = []
    for line in lines:
        text = line.strip()
        if text in ("Attributes:", "Args:"):
            inside = True
            continue
        if not inside:
            continue
        if not text:
            break
        head, sep, rest = text.partition(": ")
        names = [n.strip() for n in head.split("/")]
        if (
            sep
            and all(n.isidentifier() for n in names)
            and line.startswith(" " * 8)
            and not line.startswith(" " * 9)
        ):
            current = names
            for name in names:
                found[name] = rest.strip()
        elif current:
            for name in current:
                found[name] += " " + text
    return {name: _first_sentence(text) for name, text in found.items()}


def _first_sentence(text: str) -> str:
    return text.split(". ", 1)[0].rstrip(".")


__all__ = ["SCHEMA", "SECTIONS", "describe", "descriptions", "example", "keys", "register"]
