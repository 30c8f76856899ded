"""Hydra / OmegaConf errors as one line that names the field, the value and the fix."""

from __future__ import annotations

import re
from pathlib import Path

from ..core.names import did_you_mean

# the Hydra configs ship inside the package, so an installed wheel has them
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def groups() -> list[str]:
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def one_line(exc: BaseException) -> str:
    """The first useful line of a config error, with the choices when there are some."""
    text = str(exc).strip()
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        choices = options or _options(group)
        return f"{group}={option}: no such option; {did_you_mean(option, choices)}"
    override = re.search(r"Could not override '([^']+)'", text)
    if override:
        key = override.group(1)
        if "." not in key:
            return (
                f"{key}: no config group or key of that name; "
                f"{did_you_mean(key, [*groups(), 'seed', 'verbose'])}"
            )
        section, _, field = key.rpartition(".")
        having = _options_with(section, field)
        if having:
            return (
                f"{key}: the chosen {section} option has no {field!r}; options that have it: "
                f"{', '.join(having)} (choose one, e.g. {section}={having[0]}, or add the key "
                f"with +{key}=...)"
            )
        known = _keys(section)
        hint = did_you_mean(field, known) if known else "check the spelling"
        return f"{key}: {section} has no option {field!r}; {hint} (or add it with +{key}=...)"
    missing_value = re.search(r"Missing mandatory value: ([\w.]+)", text)
    if missing_value:
        key = missing_value.group(1)
        return f"{key}: required; give it on the command line ({key}=...)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first


def _options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _options_with(section: str, key: str) -> list[str]:
    folder = CONF_DIR / section.split(".")[0]
    if "." in section or not folder.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(key)}:", flags=re.M)
    return sorted(p.stem for p in folder.glob("*.yaml") if pattern.search(p.read_text()))


def _keys(section: str) -> list[str]:
    """Keys the options of a group define (from its yaml files, comments ignored)."""
    folder = CONF_DIR / section.split(".")[0]
    keys: set[str] = set()
    for path in folder.glob("*.yaml") if folder.is_dir() else ():
        keys.update(re.findall(r"^(\w+):", path.read_text(), flags=re.M))
    keys.discard("defaults")
    return sorted(keys)
