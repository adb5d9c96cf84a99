"""Run configs: validation, canonical clean setting, identity."""
import pytest

from gdwlib.config import RunConfig, run_id
from gdwlib.profiles import profile_config


def test_clean_settings_share_one_identity():
    assert RunConfig(noise="uniform", ratio=0.0) == RunConfig(noise="flip", ratio=0.0) == RunConfig(noise="none")
    assert run_id(RunConfig(noise="uniform", ratio=0.0), "cpu") == run_id(RunConfig(noise="none", ratio=0.7), "cpu")


def test_identity_ignores_locations_but_not_settings_or_device():
    a = RunConfig(results_dir="a", data_dir="x", threads=1)
    assert run_id(a, "cpu") == run_id(RunConfig(results_dir="b"), "cpu")
    assert run_id(a, "cpu") != run_id(a, "cuda")
    assert run_id(a, "cpu") != run_id(a.replace(seed=2), "cpu")
    assert run_id(a, "cpu") != run_id(a.replace(options={"gamma": 2.0}), "cpu")


def test_identity_includes_the_options_in_force():
    focal = RunConfig(method="Focal")
    assert run_id(focal, "cpu", {"gamma": 1.0}) != run_id(focal, "cpu", {"gamma": 2.0})  # a changed default
    assert run_id(focal, "cpu", {"gamma": 1.0}) == run_id(focal.replace(options={"gamma": 1.0}), "cpu", {"gamma": 1.0})


def test_identity_includes_the_method_revision():
    glc = RunConfig(method="GLC")
    assert run_id(glc, "cpu", {}, revision=1) == run_id(glc, "cpu", {})  # names from before revisions hold
    assert run_id(glc, "cpu", {}, revision=2) != run_id(glc, "cpu", {})


def test_round_trip_through_a_dict():
    c = RunConfig(method="Focal", options=(("gamma", 2.0),))
    assert RunConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown config fields \\['colour'\\]"):
        RunConfig.from_dict({**c.to_dict(), "colour": "red"})


@pytest.mark.parametrize("fields, message", [
    ({"ratio": float("nan")}, r"noise ratio must lie in \[0, 1\]"),
    ({"ratio": -0.2}, r"noise ratio must lie in \[0, 1\], got -0.2"),
    ({"imbalance": 1.5}, r"imbalance factor must lie in \(0, 1\], got 1.5"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"noise": "pair"}, "unknown noise type 'pair'"),
    ({"model": "vgg"}, "unknown model 'vgg'"),
    ({"step_rule": "paper"}, "needs omega_lr"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"device": "tpu"}, "device must be"),
])
def test_bad_settings_say_what_is_wrong(fields, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**fields)


def test_profiles():
    assert profile_config("paper", "cifar100").outer_lr == 1000.0
    assert profile_config("paper", "cifar100").meta_per_class == 10
    assert profile_config(None, "fashion-mnist").model == "mlp_bn"
    with pytest.raises(ValueError, match="'cpu' profile has no setting for 'cifar10'"):
        profile_config("cpu", "cifar10")


def test_every_stated_choice_names_a_field_its_profile_sets():
    from gdwlib.profiles import CHOICES, PROFILES

    for (profile, dataset, field), why in CHOICES.items():
        assert field in PROFILES[profile][dataset] and len(why) > 40
    assert profile_config("paper", "clothing1m").schedule == "constant"


def test_the_command_of_a_run_trains_that_run():
    """Every run of the book's grid, written as a command and parsed back by the CLI, is the same run."""
    from gdwlib.cli import command_for, config_from_args, parser
    from gdwlib.experiments import all_configs

    configs = all_configs("cpu") + [profile_config("cpu", method="GLC", options={"fresh_optimizer": False}, clip=0.5,
                                                   results_dir="/tmp/elsewhere", override="rehearsal")]
    for config in configs:
        command = command_for(config, "cpu")
        parsed = config_from_args(parser().parse_args(command.split()[3:]))
        assert parsed == config, command
    assert command_for(profile_config("cpu", method="MWNet", seed=2), "cpu") == (
        "python -m gdwlib run --profile cpu --dataset fashion-mnist --method MWNet --noise uniform --ratio 0.4 --seed 2")
