"""noisy_training: weight noise in training only, straight-through gradients, every preset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext
from invnorm_jax.models import MODELS, PRESETS, build_model
from invnorm_jax.nn import DETERMINISTIC_METHODS, METHODS, QuantDense
from invnorm_jax.nn.noise_training import NoisyTraining, TrainingNoise
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.train import TrainConfig, train

INPUTS = {"digits": (3, 8, 8, 1), "mnist1d": (3, 40, 1), "co2": (3, 12, 1)}


def _x(preset):
    return jax.random.normal(jax.random.key(0), INPUTS[preset])


def _pair(preset, **kwargs):
    return (
        build_model(preset, "nn", rngs=nnx.Rngs(0)),
        build_model(preset, "noisy_training", rngs=nnx.Rngs(0), **kwargs),
    )


def test_method_is_registered_and_deterministic_at_test_time():
    assert "noisy_training" in METHODS and "noisy_training" in DETERMINISTIC_METHODS
    config = config_lib.load_config(
        "digits:smoke", overrides=["methods=nn,spindrop,spatial_spindrop,proposed,noisy_training"]
    )
    assert config.methods[-1] == "noisy_training"
    assert "noisy_training" not in config_lib.load_config("digits:smoke").methods  # not in the demo's budget


@nnx.jit
def _forwards(nn_model, noisy, x):
    chip = FaultContext(Fault("additive", 0.3), jax.random.key(2))
    return dict(
        ref=nn_model(x),
        eval=noisy(x),
        eval_key=noisy(x, key=jax.random.key(5)),
        chip_nn=nn_model(x, faults=chip),
        chip=noisy(x, faults=chip),
        a=noisy(x, key=jax.random.key(1), train=True),
        b=noisy(x, key=jax.random.key(1), train=True),
        c=noisy(x, key=jax.random.key(2), train=True),
        nn_train=nn_model(x, key=jax.random.key(1), train=True),
    )


# The fast tier runs the binary preset; the k-bit path is covered fast by the level-zero test.
ALL_PRESETS = [p if p == "digits" else pytest.param(p, marks=pytest.mark.slow) for p in PRESETS]


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_evaluation_is_the_nn_model_and_training_is_noisy(preset):
    nn_model, noisy = _pair(preset)
    assert isinstance(noisy, NoisyTraining)
    out = {k: np.asarray(v) for k, v in _forwards(nn_model, noisy, _x(preset)).items()}
    # Evaluation: identical to the nn model with the same weights, whatever the key.
    np.testing.assert_array_equal(out["eval"], out["ref"])
    np.testing.assert_array_equal(out["eval_key"], out["ref"])
    # A chip's faults pass through unchanged: the simulator sees the nn model.
    np.testing.assert_array_equal(out["chip"], out["chip_nn"])
    assert not np.allclose(out["chip"], out["ref"])
    # Training: a draw per key, the same for the same key.
    np.testing.assert_array_equal(out["a"], out["b"])
    assert not np.allclose(out["a"], out["c"])
    assert not np.allclose(out["a"], out["nn_train"])


@nnx.jit
def _loss_and_grads(model, x, key):
    def loss(m):
        return jnp.mean(m(x, key=key, train=True) ** 2)

    return nnx.value_and_grad(loss)(model)


def _kernels(grads):
    return {k: np.asarray(v) for k, v in nnx.to_flat_state(grads) if k[-1] == "kernel"}


@pytest.mark.parametrize("preset", [pytest.param("digits", marks=pytest.mark.slow), "mnist1d"])
def test_level_zero_trains_exactly_as_nn(preset):
    nn_model, noisy = _pair(preset, train_noise_level=0.0)
    x, key = _x(preset), jax.random.key(3)
    loss_nn, g_nn = _loss_and_grads(nn_model, x, key)
    loss_noisy, g_noisy = _loss_and_grads(noisy, x, key)
    assert float(loss_nn) == float(loss_noisy)
    k_nn, k_noisy = _kernels(g_nn), {k[1:]: v for k, v in _kernels(g_noisy).items()}  # drop the wrapper's "model"
    assert k_nn.keys() == k_noisy.keys() and k_nn
    for path in k_nn:
        np.testing.assert_allclose(k_noisy[path], k_nn[path], rtol=1e-5, atol=1e-7, err_msg=str(path))


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_gradients_reach_every_latent_kernel_through_the_noise(preset):
    _, noisy = _pair(preset, train_noise_level=0.3)
    loss, grads = _loss_and_grads(noisy, _x(preset), jax.random.key(4))
    assert np.isfinite(float(loss))
    faultable = {
        path
        for path, node in nnx.iter_graph(noisy)
        if hasattr(node, "deployed_weights") and getattr(node, "bits", None)
    }
    kernels = _kernels(grads)
    assert faultable and all(p + ("kernel",) in kernels for p in faultable)
    for p in faultable:
        g = kernels[p + ("kernel",)]
        assert np.all(np.isfinite(g)) and np.any(g != 0), p


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_noise_on_codes_matches_float64_reference(kind):
    """The k-bit layer's kernel in training: codes + sigma max|codes| n (or codes (1 + sigma n)), times scale."""
    layer = QuantDense(64, 48, bits=8, rngs=nnx.Rngs(0))
    key, sigma = jax.random.key(9), 0.2
    got = np.asarray(layer._effective_kernel(TrainingNoise(kind, sigma, key)), np.float64)
    codes, scale = (np.asarray(a, np.float64) for a in layer.deployed_weights())
    n = np.asarray(jax.random.normal(jax.random.fold_in(key, layer.fault_id), codes.shape), np.float64)
    noisy = codes + sigma * np.abs(codes).max() * n if kind == "additive" else codes * (1 + sigma * n)
    np.testing.assert_allclose(got, noisy * scale, rtol=1e-5, atol=1e-6 * np.abs(scale).max())
    # The gradient of a linear read-out is straight through: d sum(kernel * u) / d latent = u.
    u = jax.random.normal(jax.random.key(1), layer.kernel.shape)
    grads = nnx.grad(lambda m: jnp.sum(m._effective_kernel(TrainingNoise(kind, sigma, key)) * u))(layer)
    np.testing.assert_allclose(np.asarray(grads["kernel"][...]), np.asarray(u), rtol=1e-6)


def test_full_precision_layers_are_left_alone_unless_asked():
    w = jnp.ones((4, 3))
    assert TrainingNoise("additive", 0.5, jax.random.key(0)).weights(0, w, bits=None) is w
    moved = TrainingNoise("additive", 0.5, jax.random.key(0), include_full_precision=True).weights(0, w, bits=None)
    assert not np.allclose(np.asarray(moved), 1.0)


@pytest.mark.parametrize("name", list(MODELS))
def test_builds_for_every_model(name):
    small = {
        "resnet": dict(widths=(8, 16), blocks=(1, 1)),
        "m5": dict(channels=(8, 8, 8, 8)),
        "lstm": dict(hidden=8),
        "unet": dict(widths=(8, 16)),
    }[name]
    try:
        model = build_model(name, "noisy_training", rngs=nnx.Rngs(0), **small)
    except TypeError:  # a model without these size options: its defaults
        model = build_model(name, "noisy_training", rngs=nnx.Rngs(0))
    assert isinstance(model, NoisyTraining) and model.level == 0.1 and model.kind == "additive"


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(train_noise="gaussian"), "train_noise"), (dict(train_noise_level=-0.1), "train_noise_level")],
)
def test_bad_noise_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("digits", "noisy_training", rngs=nnx.Rngs(0), **kwargs)


def test_training_without_a_key_is_refused():
    _, noisy = _pair("digits")
    with pytest.raises(ValueError, match="key"):
        noisy(_x("digits"), train=True)


def test_a_few_training_steps_run_and_move_the_weights():
    model = build_model("digits", "noisy_training", rngs=nnx.Rngs(0))
    flat_before = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, size=32)
    history = train(model, x, y, TrainConfig(steps=3, batch_size=16, log_every=1, checkpoint_every=3), progress=False)
    assert history is not None
    after = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert any(not np.array_equal(after[k], flat_before[k]) for k in flat_before)
