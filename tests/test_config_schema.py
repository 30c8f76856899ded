"""The config schema: each default written once (the dataclasses), YAML options that set only
what differs, type errors read from the schema, and every key in ``pruna-search --help``."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hydra import compose, initialize_config_dir

from pruna_search.cli import schema
from pruna_search.cli.errors import CONF_DIR, one_line, option_keys, options
from pruna_search.cli.help import help_text

schema.register()


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("search", overrides=list(overrides))


def test_every_key_is_in_the_help_with_a_description():
    text = help_text()
    described = dict(re.findall(r"^  ([\w.]+) \[.*?\]: (.*)$", text, flags=re.M))
    expected = [f"{group}.{key}" for group in schema.SECTIONS for key in schema.keys(group)]
    for group in ("model", "data", "sampler"):
        expected += [f"{group}.{k}" for o in options(group) for k in option_keys(group, o)]
    missing = [key for key in expected if not described.get(key)]
    assert not missing, missing


@pytest.mark.parametrize("group", sorted(schema.SECTIONS))
def test_a_yaml_option_sets_only_what_differs_from_the_schema(group):
    """No option file repeats a schema default (each default is written once)."""
    defaults = schema.schema_node(group)
    for option in options(group):
        for key in option_keys(group, option):
            value = composed(f"{group}={option}")[group][key]
            assert value != defaults.get(key) or key == "name", (group, option, key)


def test_the_default_config_is_the_dataclasses_defaults():
    config = composed()
    from pruna_search.search.study import StudySettings

    study = {f.name: getattr(StudySettings(), f.name) for f in dataclasses.fields(StudySettings)}
    assert {k: v for k, v in config.study.items()} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in study.items()
    }


@pytest.mark.parametrize(
    "override, line",
    [
        ("study.n_trials=abc", "study.n_trials: 'abc' is not an integer; e.g. study.n_trials=1"),
        ("target.cache=maybe", "target.cache: 'maybe' is not true or false"),
        ("space.ratios=abc", "space.ratios: 'abc' is not a list like [0.5, ...]"),
        ("finetune.lr=fast", "finetune.lr: 'fast' is not a number"),
        ("study.nope=1", "study.nope: unknown option; did you mean 'name'?"),
        ("target.repeats=5", "target.repeats: renamed; use target.min_runs / target.max_runs"),
        ("model=nosuch", "model=nosuch: no such option; choose one of: cnn, custom"),
        ("data.root=x", "data.root: the chosen data option has no 'root'; options that have it"),
    ],
)
def test_type_errors_and_unknown_keys_are_one_line_from_the_schema(override, line):
    with pytest.raises(Exception) as raised:
        composed(override)
    assert one_line(raised.value).startswith(line)
