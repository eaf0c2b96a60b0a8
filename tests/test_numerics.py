"""NaN/Inf guards: opt-in checks name where a bad value appeared; a diverged run stops before saving it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax import numerics
from invnorm_jax.data.common import Split
from invnorm_jax.errors import NonFiniteError, TrainingDivergedError
from invnorm_jax.pipeline import evaluation
from invnorm_jax.pipeline.config import load_config
from invnorm_jax.train import Checkpointer, TrainConfig, batch_indices, train


class Linear(nnx.Module):
    """``y = x @ w + b`` with the library's call convention; ``spare`` takes no part in the loss."""

    def __init__(self, spare=0.0):
        self.w = nnx.Param(jnp.zeros((4, 1)))
        self.b = nnx.Param(jnp.zeros((1,)))
        self.spare = nnx.Param(jnp.full((3,), spare))

    def __call__(self, x, *, key=None, train=False, **kwargs):
        return x @ self.w + self.b


def _regression(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32))[:, None]


SGD = dict(steps=12, batch_size=8, optimizer="sgd", schedule="constant", loss="mse", checkpoint_every=4, log_every=5)


# ------------------------------------------------------------------------------ the helpers


def test_describe_nonfinite_counts_like_numpy():
    a = np.zeros((3, 4), np.float32)
    a[1, 2], a[2, 0], a[2, 3] = np.nan, np.inf, -np.inf
    assert numerics.describe_nonfinite(a) == "1 NaN, 2 Inf of 12 values, first at index (1, 2)"
    assert numerics.describe_nonfinite(np.ones(3)) is None
    assert numerics.describe_nonfinite(np.arange(3)) is None  # integers are always finite
    numerics.check_array(jnp.ones(2), "fine")
    with pytest.raises(NonFiniteError, match=r"^the thing: 1 NaN, 2 Inf of 12 values.* try this$"):
        numerics.check_array(a, "the thing", "try this")


def test_check_tree_names_every_bad_leaf_by_path():
    tree = {"a": {"b": jnp.array([1.0, jnp.nan]), "c": jnp.ones(2)}, "d": [jnp.ones(1), jnp.array([jnp.inf])]}
    assert [s.split(" ")[0] for s in numerics.nonfinite_leaves(tree)] == ["a/b", "d/1"]
    with pytest.raises(NonFiniteError, match=r"params: non-finite values in a/b \(1 NaN.*; d/1 \(0 NaN, 1 Inf"):
        numerics.check_tree(tree, "params")
    numerics.check_tree({"a": jnp.ones(3), "k": jax.random.key(0)}, "fine")


@pytest.mark.parametrize(
    "value, on", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), (None, False)]
)
def test_the_environment_variable_switches_the_checks(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(numerics.ENV_VAR, value)
    assert numerics.check_finite_enabled() is on
    assert numerics.check_finite_enabled(True) is True and numerics.check_finite_enabled(False) is False


# ------------------------------------------------------------------------------ training


def _no_checks(monkeypatch):
    """Make every opt-in check fail loudly, to show that none runs."""

    def boom(*args, **kwargs):
        raise AssertionError("an opt-in check ran while the checks are off")

    for name in ("check_array", "check_tree"):
        monkeypatch.setattr(numerics, name, boom)


def test_nan_input_is_named_with_its_example_when_checked(monkeypatch):
    x, y = _regression()
    x[5, 2] = np.nan
    monkeypatch.setenv(numerics.ENV_VAR, "1")
    with pytest.raises(
        NonFiniteError,
        match=r"training inputs x: 1 NaN, 0 Inf of 128 values, first at "
        r"index \(5, 2\)",
    ):
        train(Linear(), x, y, TrainConfig(learning_rate=0.01, **SGD), progress=False)


def test_nan_batch_unchecked_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    x, y = _regression()
    config = TrainConfig(learning_rate=0.01, **SGD)  # checkpoints at 4, 8, 12; losses read at 5, 10, 12

    def nan_at_step_7(batch, rng):
        nan_at_step_7.calls += 1
        if nan_at_step_7.calls == 7:
            batch = batch.copy()
            batch[3, 1] = np.nan
        return batch

    nan_at_step_7.calls = 0
    monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    _no_checks(monkeypatch)
    with pytest.raises(TrainingDivergedError) as err:
        train(Linear(), x, y, config, workdir=tmp_path, progress=False, augment=nan_at_step_7)
    text = str(err.value)
    # Found before the save of step 8, although the loss is only logged at step 10.
    assert "the loss of step 7 of 12 is nan" in text and "at step 6," in text
    assert "learning rate 0.01" in text and "Lower train.learning_rate" in text
    assert "the last good one is step 4" in text
    monkeypatch.undo()
    assert Checkpointer(tmp_path).latest_step() == 4
    model = Linear()
    Checkpointer(tmp_path).restore(model)
    assert numerics.nonfinite_leaves(nnx.state(model)) == []


def test_a_diverging_learning_rate_stops_with_the_step_and_last_finite_loss(tmp_path):
    x, y = _regression()
    config = TrainConfig(learning_rate=1000.0, **SGD)
    with pytest.raises(TrainingDivergedError) as err:
        train(Linear(), x, y, config, workdir=tmp_path, progress=False)
    text = str(err.value)
    # A numpy replay (float32, as the run) of SGD with Nesterov momentum finds the first non-finite loss.
    w, b, mw, mb = np.zeros((4, 1)), np.zeros(1), np.zeros((4, 1)), np.zeros(1)
    losses = []
    with np.errstate(all="ignore"):
        for s in range(config.steps):
            idx = batch_indices(len(x), config.batch_size, config.seed, s)
            xb, yb = x[idx].astype(np.float32), y[idx]
            r = (xb @ w + b - yb).astype(np.float32)
            losses.append(float(np.mean(np.square(r), dtype=np.float32)))
            gw, gb = 2 * xb.T @ r / r.size, 2 * r.sum(0) / r.size
            mw, mb = 0.9 * mw + gw, 0.9 * mb + gb
            w, b = w - 1000.0 * (gw + 0.9 * mw), b - 1000.0 * (gb + 0.9 * mb)
            w, b = w.astype(np.float32), b.astype(np.float32)
    first = next(i for i, v in enumerate(losses) if not np.isfinite(v))
    assert first >= 2
    assert f"the loss of step {first + 1} of 12 is" in text and f"at step {first}" in text
    latest = Checkpointer(tmp_path).latest_step()
    assert latest is None or latest <= first
    if latest is not None:
        model = Linear()
        Checkpointer(tmp_path).restore(model)
        assert numerics.nonfinite_leaves(nnx.state(model)) == []


def test_nonfinite_parameters_are_never_checkpointed_even_with_a_finite_loss(tmp_path):
    x, y = _regression()
    with pytest.raises(TrainingDivergedError, match=r"after step 4 of 12 the parameters are not finite \(spare"):
        train(Linear(spare=np.nan), x, y, TrainConfig(learning_rate=0.01, **SGD), workdir=tmp_path, progress=False)
    assert Checkpointer(tmp_path).latest_step() is None


def test_checked_training_names_the_parameter_and_step_that_went_bad():
    x, y = _regression()
    with pytest.raises(
        NonFiniteError,
        match=r"the parameters at initialization: non-finite values in "
        r"spare",
    ):
        train(Linear(spare=np.inf), x, y, TrainConfig(learning_rate=0.01, **SGD), progress=False, check_finite=True)
    # The first update overflows w (gradient ~1e19, learning rate 1e21) while the loss of step 1 is finite.
    with pytest.raises(NonFiniteError, match=r"the parameters after step 1: non-finite values in w \("):
        train(Linear(), x * 1e18, y, TrainConfig(learning_rate=1e21, **SGD), progress=False, check_finite=True)


def test_unchecked_training_runs_no_check_and_learns_the_same(monkeypatch):
    x, y = _regression()
    config = TrainConfig(learning_rate=0.01, **SGD)
    checked = train(Linear(), x, y, config, progress=False, check_finite=True)["losses"]
    monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    _no_checks(monkeypatch)
    assert train(Linear(), x, y, config, progress=False)["losses"] == checked


# ------------------------------------------------------------------------------ evaluation


@pytest.fixture
def tiny_eval(monkeypatch):
    """A config and split of 6 test inputs, and a stand-in simulator whose outputs go NaN above level 0.15."""
    config = load_config(
        "digits:smoke", overrides=["methods=nn", "eval.num_chips=3", "sweeps.bit_flip.levels=0,0.1,0.2"]
    )
    split = Split(
        x_train=np.zeros((1, 2)), y_train=np.zeros(1), x_test=np.zeros((6, 2)), y_test=np.arange(6) % 3, num_classes=3
    )

    def simulate(model, x, *, fault, num_chips, num_samples, level=None, **kwargs):
        level = fault.level if level is None else level
        out = np.tile(np.eye(3, dtype=np.float32)[np.arange(len(x)) % 3], (num_chips, num_samples, 1, 1))
        if level > 0.15:
            out[1, 0, 4, 0] = np.nan
        yield 0, jnp.asarray(out)

    monkeypatch.setattr(evaluation, "iter_simulate_chips", simulate)
    return config, split


def test_evaluation_names_the_sweep_level_chip_and_input(tiny_eval):
    config, split = tiny_eval
    with pytest.raises(NonFiniteError) as err:
        evaluation.evaluate_method(None, config, split, "nn", sweeps=["bit_flip"], progress=False, check_finite=True)
    text = str(err.value)
    assert "digits/nn: sweep 'bit_flip' at level 0.2" in text
    assert "not finite on 1 of 3 chips (first: chip 1, test input 4" in text


def test_unchecked_evaluation_runs_no_check(tiny_eval, monkeypatch):
    config, split = tiny_eval
    monkeypatch.delenv(numerics.ENV_VAR, raising=False)
    _no_checks(monkeypatch)
    monkeypatch.setattr(evaluation, "_check_outputs", lambda *a: pytest.fail("an output check ran"))
    result = evaluation.evaluate_method(None, config, split, "nn", sweeps=["bit_flip"], progress=False)
    assert [r.level for r in result.sweeps["bit_flip"]] == [0.0, 0.1, 0.2] and result.fault_free == 1.0
