"""Configs: shipped files, variants, command-line overrides, unknown keys, saved configs."""

import json

import ml_collections
import pytest

from invnorm_jax.errors import ConfigError
from invnorm_jax.pipeline import cli
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.config_checks import REQUIRED


@pytest.mark.parametrize("name", config_lib.available_configs())
@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_every_shipped_config_loads_with_every_key(name, variant):
    config = config_lib.load_config(name, variant)
    assert isinstance(config, ml_collections.ConfigDict)
    assert set(REQUIRED) <= set(config.keys())
    assert config.name == name and config.variant == variant
    for sweep in config.sweeps.values():
        assert sweep.levels[0] == 0.0 and len(sweep.levels) >= 2
    # Locked: code cannot add a key by a typo either.
    with pytest.raises(AttributeError):
        config.eval.num_chip = 3


def test_override_changes_one_value_and_keeps_types():
    config = config_lib.load_config(
        "digits:quick",
        overrides=[
            "eval.num_chips=7",
            "train.learning_rate=1",
            "methods=nn,proposed",
            "ood.fault.level=0.2",
            "eval.max_test=50",
            "sweeps.bit_flip.levels=(0, 0.1)",
        ],
    )
    assert config.eval.num_chips == 7 and config.variant == "quick"
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.methods == ("nn", "proposed")
    assert config.ood.fault.level == 0.2 and config.eval.max_test == 50
    assert config.sweeps.bit_flip.levels == (0.0, 0.1)
    untouched = config_lib.load_config("digits:quick")
    assert untouched.eval.num_chips == 20  # the file's value: overrides do not leak between loads


@pytest.mark.parametrize(
    "item, match",
    [
        ("eval.num_chip=7", r"no key 'eval.num_chip' \(did you mean 'eval.num_chips'"),
        ("trian.steps=3", r"did you mean 'train.steps'"),
        ("eval.num_chips=many", r"expected an int"),
        ("train.learning_rate=fast", r"expected a float"),
        ("eval.num_chips=0", r"eval.num_chips=0 must be an integer >= 1"),
        ("metric=f1", r"metric='f1' is unknown"),
        ("methods=nn,bnn", r"methods='bnn' is unknown"),
        ("sweeps.bit_flip.levels=0,2", r"level=2.0 is a probability"),
        ("train.optimizer=lion", r"optimizer='lion'"),
        ("eval", r"must look like --config.KEY=VALUE"),
        ("ood.shifts=rotation,spin", r"ood.shifts='spin' is unknown"),
    ],
)
def test_bad_override_is_a_clear_error(item, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.load_config("digits", overrides=[item])


def test_unknown_config_and_variant():
    with pytest.raises(ConfigError, match=r"config 'digitz' not found \(did you mean 'digits'"):
        config_lib.load_config("digitz")
    with pytest.raises(ConfigError, match=r"variant 'huge'"):
        config_lib.load_config("digits:huge")
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.load_config("missing/file.py")


def test_ood_on_a_regression_task_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="needs a classifier"):
        config_lib.load_config("co2", overrides=["ood.shifts=gaussian_noise"])


def test_config_file_with_a_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def get_config(variant='full'):\n    return dict(name='x'\n")
    with pytest.raises(ConfigError, match=r"syntax error on line \d"):
        config_lib.load_config(str(path))


def test_user_config_file_with_variant(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from invnorm_jax.pipeline.configs.digits import get_config as base\n\n"
        "def get_config(variant='full'):\n    c = base(variant)\n    c.name = 'mine'\n    return c\n"
    )
    config = config_lib.load_config(f"{path}:smoke")
    assert config.name == "mine" and config.variant == "smoke" and config.train.steps == 8


def test_training_differences_name_every_changed_training_key(tmp_path):
    trained = config_lib.load_config("digits:smoke")
    config_lib.save(trained, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["eval"]["num_chips"] == 4
    # Evaluation settings may change; training settings may not.
    config_lib.check_same_training(config_lib.load_config("digits:smoke", overrides=["eval.num_chips=9"]), tmp_path)
    placement = config_lib.load_config("digits:smoke", overrides=["model.kwargs.preactivation_site=sign_input"])
    config_lib.check_same_training(placement, tmp_path)  # where faults go is not training
    other = config_lib.load_config("digits:smoke", overrides=["train.steps=9", "rate=0.1"])
    with pytest.raises(ConfigError, match=r"differing keys: rate: 0.3 -> 0.1; train.steps: 8 -> 9"):
        config_lib.check_same_training(other, tmp_path)


def test_cli_parses_overrides_in_both_forms():
    args = cli.parse_args(
        ["demo", "--quick", "--config.eval.num_chips=7", "--config.train.steps", "30", "--chips", "5"]
    )
    assert args.overrides == ["eval.num_chips=7", "train.steps=30"]
    assert cli._overrides(args) == ["eval.num_chips=7", "train.steps=30", "eval.num_chips=5"]


def test_cli_bad_override_exits_with_one_line(capsys):
    assert cli.main(["train", "--config", "digits", "--config.eval.num_chip=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'eval.num_chips'" in err and "Traceback" not in err
    with pytest.raises(ConfigError):
        cli.main(["train", "--config", "digits", "--config.eval.num_chip=3", "--debug"])
