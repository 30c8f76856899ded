"""The search space: trial -> Plan, replayed identically with FixedTrial (design decision 4)."""

from __future__ import annotations

import optuna
import pytest
import torch

from pruna_search import ConfigError, Finetune, Plan, analyze, models
from pruna_search.space import SearchSpace, SpaceOptions, uniform_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def r20():
    model = models.build("resnet20", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    return analyze(model, torch.zeros(2, 1, 32, 32))


@pytest.fixture(scope="module")
def mlp():
    model = models.build("mlp", num_classes=10, in_channels=1, input_shape=(1, 32, 32))
    return analyze(model, torch.zeros(2, 1, 32, 32))


def test_one_param_per_group_and_per_layer(r20):
    space = SearchSpace(r20, "cpu")
    assert sorted(space.prune_params) == sorted(f"prune/{g}" for g in r20.group_names)
    assert sorted(space.bits_params) == sorted(f"bits/{n}" for n in r20.layer_names)
    assert len(space.prune_params) == 12 and len(space.bits_params) == 22
    assert space.bits_params["bits/fc"][1] == ("fp32", "int8", "int4")
    assert space.bits_params["bits/layer1.0.conv1"][1] == ("fp32", "int8")  # no int4 on conv
    # only ratios that build different models: with round_to 8, 16 channels keep 16 or 8
    assert space.ratio_choices["prune/layer1.0.conv1"] == (0.0, 0.5)
    assert space.ratio_choices["prune/layer2.0.conv1"] == (0.0, 0.25, 0.5, 0.75)
    assert space.ratio_choices["prune/layer3.0.conv1"] == (0.0, 0.25, 0.5, 0.625, 0.75)
    sizes = [len(c) for c in space.ratio_choices.values()]
    assert sorted(sizes) == [2] * 4 + [4] * 4 + [5] * 4
    assert space.size == 2**4 * 4**4 * 5**4 * 2**21 * 3


def kept(info, plan: Plan) -> dict[str, int]:
    return {g.name: plan.kept(g.channels, g.name, g.members) for g in info.groups}


def test_precision_tie_model_is_one_choice_for_every_layer(r20):
    space = SearchSpace(r20, "cpu", SpaceOptions(tie="stage", precision_tie="model"))
    assert list(space.bits_params) == ["bits/all"]
    layers, choices = space.bits_params["bits/all"]
    assert choices == ("fp32", "int8", "int4") and len(layers) == 22
    params = {key: 0.5 for key in space.prune_params} | {"bits/all": "int4"}
    plan = space(optuna.trial.FixedTrial(params))
    # conv runs no int4: it takes the lowest precision it runs with >= 4 bits
    assert plan.precision_of("layer2.0.conv1").value == "int8"
    assert plan.precision_of("fc").value == "int4"
    assert space.params_of(Plan.uniform(r20, pruning_ratio=0.5, quantization_bits=4)) == params
    with pytest.raises(ConfigError, match="not one of"):
        space.params_of(Plan(precision={"fc": "int8"}))
    with pytest.raises(ConfigError, match="space.precision_tie: 'layer'"):
        SpaceOptions(precision_tie="layer")
    assert SpaceOptions(tie="stage").precision_tie == "stage"


def test_tie_per_stage_shrinks_the_space(r20):
    space = SearchSpace(r20, "cpu", SpaceOptions(tie="stage"))
    assert sorted(space.prune_params) == [
        "prune/conv1",
        "prune/layer1",
        "prune/layer2",
        "prune/layer3",
    ]
    assert sorted(space.bits_params) == [
        "bits/conv1",
        "bits/fc",
        "bits/layer1",
        "bits/layer2",
        "bits/layer3",
    ]
    plan = space(
        optuna.trial.FixedTrial(
            {
                "prune/conv1": 0.0,
                "prune/layer1": 0.5,
                "prune/layer2": 0.25,
                "prune/layer3": 0.75,
                "bits/conv1": "fp32",
                "bits/fc": "int4",
                "bits/layer1": "int8",
                "bits/layer2": "fp32",
                "bits/layer3": "int8",
            }
        )
    )
    assert plan.ratio("layer1.0.conv1") == 0.5 and plan.ratio("layer2.1.conv1") == 0.25
    assert plan.precision_of("layer3.2.conv2").value == "int8"
    assert plan.precision_of("layer2.0.conv1").value == "fp32"
    assert plan.precision_of("fc").value == "int4"
    plan.validate(r20, "cpu")


def test_replay_with_fixed_trial_gives_the_identical_plan(r20):
    finetune = Finetune(steps=40, lr=0.02)
    space = SearchSpace(r20, "cpu", SpaceOptions(finetune=finetune))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plans = {}

    def objective(trial: optuna.Trial) -> float:
        plan = space(trial)
        plan.validate(r20, "cpu")
        plans[trial.number] = plan
        return sum(plan.prune.values())

    study.optimize(objective, n_trials=8)
    assert len({p.to_json() for p in plans.values()}) == 8  # really different plans
    for trial in study.trials:
        replayed = space(optuna.trial.FixedTrial(trial.params))
        assert replayed == plans[trial.number]
        assert replayed.finetune == finetune


PER_PRECISION = {"fp32": 8, "int8": 16}


@pytest.mark.parametrize("round_to", [8, PER_PRECISION])
@pytest.mark.parametrize(("ratio", "bits"), [(0.0, 32), (0.0, 8), (0.5, 8), (0.25, 32), (0.5, 4)])
def test_uniform_reference_plans_are_in_the_space(r20, ratio, bits, round_to):
    space = SearchSpace(r20, "cpu", SpaceOptions(round_to=round_to))
    params = uniform_params(space, ratio, bits)
    plan = space(optuna.trial.FixedTrial(dict(params)))
    expected = Plan.uniform(r20, pruning_ratio=ratio, quantization_bits=bits, round_to=round_to)
    # the same model: ratios that keep the same channels are offered once (0.25 of 16 keeps 16)
    assert kept(r20, plan) == kept(r20, expected)
    assert plan.precision == expected.precision


def test_channel_multiple_per_precision(r20):
    """{fp32: 8, int8: 16}: a group whose layers run int8 keeps a multiple of 16 channels;
    ratios are offered once per distinct model under either multiple."""
    space = SearchSpace(r20, "cpu", SpaceOptions(round_to=PER_PRECISION))
    assert space.options.round_to == PER_PRECISION
    # 16 channels: 0.5 keeps 8 (fp32) or 16 (int8); 0.625 and 0.75 build the same two models
    assert space.ratio_choices["prune/layer1.0.conv1"] == (0.0, 0.5)
    # 64 channels: 0.625 keeps 24 (fp32) or 32 (int8), distinct from 0.5 under fp32
    assert space.ratio_choices["prune/layer3.0.conv1"] == (0.0, 0.25, 0.5, 0.625, 0.75)
    params = dict(uniform_params(space, 0.625, 32))
    fp32 = space(optuna.trial.FixedTrial(params))
    params.update({k: "int8" for k in space.bits_params if k.startswith("bits/layer3")})
    mixed = space(optuna.trial.FixedTrial(params))
    assert kept(r20, fp32)["layer3.0.conv1"] == 24 and kept(r20, mixed)["layer3.0.conv1"] == 32
    assert kept(r20, fp32)["layer2.0.conv1"] == kept(r20, mixed)["layer2.0.conv1"] == 16
    assert kept(r20, fp32)["layer1.0.conv1"] == 8  # 0.625 of 16 channels, fp32: 8
    assert space.params_of(mixed) == params
    # one multiple for every precision is just that multiple
    assert SpaceOptions(round_to={"fp32": 16, "int8": 16}).round_to == 16


def test_mlp_int4_is_offered_on_every_linear(mlp):
    space = SearchSpace(mlp, "cpu", SpaceOptions(ratios=(0.0, 0.5)))
    assert {c for _, c in space.bits_params.values()} == {("fp32", "int8", "int4")}
    assert space.size == 2 ** len(space.prune_params) * 3**3


def test_fixed_precision_space(r20):
    space = SearchSpace(r20, "cpu", SpaceOptions(precisions=False, ratios=(0.0, 0.5)))
    assert not space.bits_params
    with pytest.raises(ConfigError, match="not searched"):
        space.params_of(Plan.uniform(r20, quantization_bits=8))


def test_bad_options(r20):
    with pytest.raises(ConfigError, match="space.ratios: 0.99 is out of range"):
        SpaceOptions(ratios=(0.0, 0.99))
    with pytest.raises(ConfigError, match="space.tie: 'block'"):
        SpaceOptions(tie="block")
    with pytest.raises(ConfigError, match="space.ratios: empty"):
        SpaceOptions(ratios=())
    with pytest.raises(ConfigError, match=r"space.round_to\['int8'\]: 0 must be an integer"):
        SpaceOptions(round_to={"fp32": 8, "int8": 0})
    with pytest.raises(ConfigError, match="space.round_to: .* has no fp32 multiple"):
        SpaceOptions(round_to={"int8": 16})
    with pytest.raises(ConfigError, match="add them to space.ratios"):
        SearchSpace(r20).params_of(Plan.uniform(r20, pruning_ratio=0.1))
