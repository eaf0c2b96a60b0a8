"""Tests of invnorm_jax.models: shapes, parameter counts, training, keys, faults, registry.

Tiny widths keep every test on a laptop CPU; the paper-size models are only built abstractly
(``nnx.eval_shape``) to count their parameters.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from invnorm_jax.models import (
    M5,
    MODELS,
    PRESETS,
    BinaryResNet,
    LSTMForecaster,
    UNet,
    available_models,
    build_model,
    count_params,
)
from invnorm_jax.nn.norm import METHODS, InvertedNorm, NormSite

STOCHASTIC = ("spindrop", "spatial_spindrop", "proposed")

# name -> (tiny constructor kwargs, input shape, task)
TINY = {
    "resnet": (dict(in_channels=1, widths=(8, 16), blocks=(1, 1)), (4, 8, 8, 1), "classify"),
    "m5": (
        dict(num_classes=10, channels=(8, 8, 16, 16), first_kernel=5, first_stride=1, pool=2),
        (4, 40, 1),
        "classify",
    ),
    "lstm": (dict(hidden=8), (4, 12, 1), "regress"),
    "unet": (dict(widths=(8, 16)), (2, 8, 8, 1), "segment"),
}
OUT_SHAPES = {"resnet": (4, 10), "m5": (4, 10), "lstm": (4, 1), "unet": (2, 8, 8, 2)}


def tiny(name: str, method: str, seed: int = 0) -> tuple[nnx.Module, jax.Array]:
    kwargs, shape, _ = TINY[name]
    model = build_model(name, method, rngs=nnx.Rngs(seed), **kwargs)
    x = jax.random.normal(jax.random.key(100), shape)
    return model, x


def targets(name: str, x: jax.Array) -> jax.Array:
    rng = np.random.default_rng(0)
    task = TINY[name][2]
    if task == "classify":
        return jnp.asarray(rng.integers(0, 10, x.shape[0]))
    if task == "segment":
        return jnp.asarray(rng.integers(0, 2, x.shape[:3]))
    return jnp.asarray(rng.normal(size=(x.shape[0], 1)), jnp.float32)


def loss_fn(model, x, y, key, task):
    out = model(x, key=key, train=True)
    if task == "regress":
        return jnp.mean((out - y) ** 2)
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


# These programs run in microseconds; compiling them is the cost. Without LLVM's optimizations
# XLA compiles them 1.5-3x faster, which keeps the suite within its CPU budget.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.partial(
    jax.jit, static_argnums=0, static_argnames=("deterministic", "faults"), compiler_options=FAST_COMPILE
)
def _forward(graphdef, state, x, key, *, deterministic, faults):
    return nnx.merge(graphdef, state)(x, key=key, deterministic=deterministic, faults=faults)


def forward(model, x, key=None, *, deterministic=False, faults=None):
    """One compiled forward pass; models of one config share the compiled program."""
    graphdef, state = nnx.split(model)
    return _forward(graphdef, state, x, key, deterministic=deterministic, faults=faults)


def abstract_model(build):
    """Build a model without allocating or computing its weights (shapes only)."""
    return nnx.eval_shape(build)


def abstract_output(model, shape, **kwargs):
    """The output shape of ``model`` on inputs of ``shape``, traced but never run."""
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, **kwargs), state, x).shape


@dataclasses.dataclass(frozen=True)
class NegatingFaults:
    """A fake fault context: every deployed weight is negated; activations are untouched."""

    def weights(self, fault_id, w, *, bits):
        return -w

    def preactivation(self, fault_id, x, *, key=None):
        return x


@dataclasses.dataclass(eq=False)
class RecordingFaults:
    """A fake fault context that records which fault sites a forward pass consults."""

    weight_ids: list = dataclasses.field(default_factory=list)
    preactivation_ids: list = dataclasses.field(default_factory=list)

    def weights(self, fault_id, w, *, bits):
        self.weight_ids.append(fault_id)
        return w

    def preactivation(self, fault_id, x, *, key=None):
        self.preactivation_ids.append(fault_id)
        return x


# ----------------------------------------------------------------- shapes and counts


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(TINY))
def test_output_shape_for_every_model_and_method(name, method):
    model, x = tiny(name, method)
    y = forward(model, x, jax.random.key(1))
    assert y.shape == OUT_SHAPES[name]
    assert bool(jnp.all(jnp.isfinite(y)))


def test_default_resnet18_has_11_2_million_parameters():
    counts = {m: count_params(abstract_model(lambda m=m: BinaryResNet(m, rngs=nnx.Rngs(0)))) for m in METHODS}
    # Same trainable parameters for every method: gamma/beta of the site, BN statistics aside.
    assert set(counts.values()) == {11_173_962}
    assert abs(counts["proposed"] - 11.2e6) / 11.2e6 < 0.01


@pytest.mark.parametrize("cls, expected", [(M5, 26_723), (LSTMForecaster, 50_241), (UNet, 487_744)])
def test_default_parameter_counts(cls, expected):
    counts = {m: count_params(abstract_model(lambda m=m: cls(m, rngs=nnx.Rngs(0)))) for m in ("nn", "proposed")}
    assert counts == {"nn": expected, "proposed": expected}


def test_paper_size_models_take_their_datasets_shapes():
    key = jax.random.key(0)
    resnet = abstract_model(lambda: BinaryResNet("proposed", rngs=nnx.Rngs(0)))
    assert abstract_output(resnet, (2, 32, 32, 3), key=key) == (2, 10)
    m5 = abstract_model(lambda: M5("proposed", rngs=nnx.Rngs(0)))
    assert abstract_output(m5, (2, 8000, 1), key=key) == (2, 35)  # one second at 16 kHz
    unet = abstract_model(lambda: UNet("proposed", rngs=nnx.Rngs(0)))
    assert abstract_output(unet, (1, 64, 64, 1), key=key) == (1, 64, 64, 2)
    lstm = abstract_model(lambda: LSTMForecaster("spindrop", rngs=nnx.Rngs(0)))
    assert abstract_output(lstm, (2, 52, 1), key=key) == (2, 1)


def test_m5_skips_max_pool_once_the_sequence_is_shorter_than_pool():
    model = M5("nn", num_classes=3, channels=(4, 4, 4), first_kernel=3, first_stride=1, pool=4, rngs=nnx.Rngs(0))
    # 6 -> pool 4 -> 1 -> (no pool) 1 -> 1: would be length 0 with unconditional pooling.
    y = forward(model, jnp.ones((2, 6, 1)))
    assert y.shape == (2, 3)
    assert bool(jnp.all(jnp.isfinite(y)))


def test_unet_rejects_spatial_size_not_a_multiple_of_the_downsampling():
    model = abstract_model(lambda: UNet("nn", widths=(8, 16, 32), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="multiples of 4"):
        abstract_output(model, (1, 6, 6, 1))


def test_unet_sites_are_group_style_for_proposed_and_batchnorm_for_baselines():
    proposed = abstract_model(lambda: UNet("proposed", widths=(16, 32), rngs=nnx.Rngs(0)))
    baseline = abstract_model(lambda: UNet("spindrop", widths=(16, 32), rngs=nnx.Rngs(0)))
    p_site, b_site = proposed.down[0][0].site, baseline.down[0][0].site
    assert isinstance(p_site, InvertedNorm) and p_site.num_groups == 8
    assert isinstance(b_site, NormSite) and b_site.norm.kind == "batch"


def test_lstm_sites_are_layernorm_for_baselines():
    model = abstract_model(lambda: LSTMForecaster("nn", hidden=8, rngs=nnx.Rngs(0)))
    assert all(site.norm.kind == "layer" for site in model.sites)


# ----------------------------------------------------------------- training


@pytest.mark.parametrize("method", ["proposed", "nn"])
@pytest.mark.parametrize("name", list(TINY))
def test_one_adam_step_lowers_the_loss(name, method):
    model, x = tiny(name, method)
    y, task = targets(name, x), TINY[name][2]
    key = jax.random.key(7)  # the same masks before and after the step
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def step_and_reevaluate(state):
        model, optimizer = nnx.merge(graphdef, state)
        before, grads = nnx.value_and_grad(loss_fn)(model, x, y, key, task)
        optimizer.update(model, grads)
        return before, loss_fn(model, x, y, key, task)

    before, after = step_and_reevaluate(state)
    assert float(after) < float(before)


# ----------------------------------------------------------------- keys


@pytest.mark.parametrize("method", STOCHASTIC)
@pytest.mark.parametrize("name", list(TINY))
def test_stochastic_methods_depend_on_the_key_only(name, method):
    model, x = tiny(name, method)
    a = forward(model, x, jax.random.key(1))
    b = forward(model, x, jax.random.key(1))
    c = forward(model, x, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_lstm_spindrop_and_spatial_spindrop_drop_differently():
    # In the sites (dropout_site="norm"): element-wise over (step, unit) against whole units for
    # the whole window: same weights, same key, different masks. (On the crossbar inputs both
    # draw one mask per input feature and sequence: there the two readings coincide.)
    kwargs, shape, _ = TINY["lstm"]
    spin, spatial = (
        build_model("lstm", m, rngs=nnx.Rngs(0), dropout_site="norm", **kwargs)
        for m in ("spindrop", "spatial_spindrop")
    )
    x, key = jax.random.normal(jax.random.key(100), shape), jax.random.key(1)
    assert not np.allclose(forward(spin, x, key), forward(spatial, x, key))


@pytest.mark.parametrize("name", list(TINY))
def test_proposed_without_key_raises_unless_deterministic(name):
    model, x = tiny(name, "proposed")
    with pytest.raises(ValueError, match="key"):
        abstract_output(model, x.shape)
    assert abstract_output(model, x.shape, deterministic=True) == OUT_SHAPES[name]  # key-free
    a = forward(model, x, jax.random.key(3), deterministic=True)
    b = forward(model, x, jax.random.key(4), deterministic=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(TINY))
def test_nn_is_deterministic_and_key_free(name):
    model, x = tiny(name, "nn")
    assert abstract_output(model, x.shape) == OUT_SHAPES[name]  # no key needed
    np.testing.assert_array_equal(forward(model, x, jax.random.key(1)), forward(model, x, jax.random.key(5)))


# ----------------------------------------------------------------- faults


@pytest.mark.parametrize("name", list(TINY))
def test_faulty_weights_change_the_output(name):
    model, x = tiny(name, "proposed")
    key = jax.random.key(3)
    clean = forward(model, x, key, deterministic=True)
    faulty = forward(model, x, key, deterministic=True, faults=NegatingFaults())
    assert faulty.shape == clean.shape
    assert not np.allclose(clean, faulty)


@pytest.mark.parametrize("name", list(TINY))
def test_every_fault_site_is_reached_with_a_distinct_id(name):
    model, x = tiny(name, "spindrop")
    faults = RecordingFaults()
    abstract_output(model, x.shape, key=jax.random.key(0), faults=faults)  # tracing calls every hook
    assert model.num_fault_sites > 0
    # Every site is consulted, as a weight site or a pre-activation site, never both.
    assert not set(faults.weight_ids) & set(faults.preactivation_ids)
    assert sorted(set(faults.weight_ids) | set(faults.preactivation_ids)) == list(range(model.num_fault_sites))


def test_preactivation_hook_only_where_activations_are_binary():
    resnet, x = tiny("resnet", "nn")
    faults = RecordingFaults()
    abstract_output(resnet, x.shape, faults=faults)
    # Two binary convs per block, one block per stage, two stages: four normalized outputs.
    assert len(set(faults.preactivation_ids)) == 4
    unet, x = tiny("unet", "nn")
    faults = RecordingFaults()
    abstract_output(unet, x.shape, faults=faults)
    assert faults.weight_ids and faults.preactivation_ids == []  # PACT activations, not sign()


class ShiftingFaults(RecordingFaults):
    """Adds 0.5 to every pre-activation: shows where the hook sits in the computation."""

    def preactivation(self, fault_id, x, *, key=None):
        super().preactivation(fault_id, x)
        return x + 0.5


@pytest.mark.parametrize("placement", ["norm_output", "sign_input"])
def test_preactivation_placement_in_a_block(placement):
    from invnorm_jax.models.common import hardtanh
    from invnorm_jax.models.resnet import BasicBlock

    block = BasicBlock("nn", 4, 4, 1, rate=0.3, rngs=nnx.Rngs(0), preactivation_site=placement)
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 4))
    faults = ShiftingFaults()
    got = block(x, faults=faults)
    c1 = lambda h: block.site1(block.conv1(h))  # noqa: E731  (no faults: plain convs and sites)
    c2 = lambda h: block.site2(block.conv2(h))  # noqa: E731
    if placement == "norm_output":  # the paper's: on the normalized output, before add and hardtanh
        out = hardtanh(c1(x) + 0.5 + x)
        want = hardtanh(c2(out) + 0.5 + out)
    else:  # at sign()'s input: the conv sees sign(h + 0.5), the skip path is left alone
        out = hardtanh(c1(x + 0.5) + x)
        want = hardtanh(c2(out + 0.5) + out)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert len(faults.preactivation_ids) == 2


def test_lstm_gate_site_normalizes_the_gate_sums():
    from invnorm_jax.nn import ConventionalNorm, QuantLSTMCell

    plain = QuantLSTMCell(3, 5, rngs=nnx.Rngs(0))
    gated = QuantLSTMCell(3, 5, gate_site=ConventionalNorm(20, kind="layer", rngs=nnx.Rngs(1)), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (4, 3))
    carry = (jax.random.normal(jax.random.key(1), (4, 5)), jax.random.normal(jax.random.key(2), (4, 5)))
    c, h = carry
    z = np.asarray(plain.input_proj(x) + plain.recurrent_proj(h), np.float64)
    z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)  # LayerNorm, scale 1, bias 0
    i, f, g, o = np.split(z, 4, axis=-1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_ref = sig(f) * np.asarray(c) + sig(i) * np.tanh(g)
    (c_got, h_got), _ = gated(carry, x)
    np.testing.assert_allclose(np.asarray(c_got), c_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h_got), sig(o) * np.tanh(c_ref), rtol=1e-4, atol=1e-5)
    model = build_model("lstm", "proposed", hidden=4, norm_placement="gates", rngs=nnx.Rngs(0))
    assert all(site is None for site in model.sites) and all(c.gate_site is not None for c in model.cells)


def test_lstm_uses_one_set_of_faulty_weights_at_every_step():
    model, x = tiny("lstm", "proposed")
    faults, key = NegatingFaults(), jax.random.key(4)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def unrolled(state, x):
        # Reference: an explicit Python loop over time with the same cells, sites and keys.
        model = nnx.merge(graphdef, state)
        last = x[:, -1:, :1]  # the residual forecaster reads the window relative to its last value
        h = x - last
        for cell, site in zip(model.cells, model.sites):
            carry, steps = cell.initialize_carry(x.shape[0]), []
            for t in range(x.shape[1]):
                carry, out = cell(carry, h[:, t], faults=faults)
                steps.append(out)
            h = site(jnp.stack(steps, axis=1), key=key)  # each site folds in its own path id
        return last[:, 0] + model.head(h[:, -1], faults=faults)

    graphdef, state = nnx.split(model)
    np.testing.assert_allclose(forward(model, x, key, faults=faults), unrolled(state, x), rtol=1e-5, atol=1e-6)


def test_lstm_cell_scan_is_the_step_by_step_loop_on_a_faulty_chip():
    # scan() deploys and faults both kernels once and projects every input step in one matmul;
    # the values must be those of calling the cell step by step (gate site, affine dropout, bit-flips).
    from invnorm_jax.faults import Fault, FaultContext
    from invnorm_jax.nn import QuantLSTMCell, norm_site

    cell = QuantLSTMCell(3, 4, gate_site=norm_site("proposed", 16, norm="layer", rngs=nnx.Rngs(1)), rngs=nnx.Rngs(0))
    cell.input_proj.fault_id, cell.recurrent_proj.fault_id = 1, 2
    xs = jax.random.normal(jax.random.key(0), (5, 9, 3))
    faults, key = FaultContext(Fault("bit_flip", 0.05), jax.random.key(3)), jax.random.key(7)
    carry, steps = cell.initialize_carry(5), []
    for t in range(xs.shape[1]):
        carry, h = cell(carry, xs[:, t], key=key, faults=faults)
        steps.append(h)
    want = np.stack([np.asarray(h) for h in steps], axis=1)
    got = np.asarray(cell.scan(xs, key=key, faults=faults))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    clean = np.asarray(cell.scan(xs, key=key))
    assert np.abs(clean - got).max() > 1e-3  # the faults reached the scanned cell
    with pytest.raises(ValueError, match="batch, time, features"):
        cell.scan(xs[0])


# ----------------------------------------------------------------- registry


def test_build_model_knows_models_and_presets():
    assert set(MODELS) == {"resnet", "m5", "lstm", "unet"}
    assert set(PRESETS) <= set(available_models())
    digits = abstract_model(lambda: build_model("digits", "nn", rngs=nnx.Rngs(0), num_classes=3))
    assert isinstance(digits, BinaryResNet)  # kwargs override the preset's
    assert abstract_output(digits, (2, 8, 8, 1)) == (2, 3)


@pytest.mark.parametrize(
    "preset, shape, out",
    [("digits", (2, 8, 8, 1), (2, 10)), ("mnist1d", (2, 40, 1), (2, 10)), ("co2", (2, 104, 1), (2, 26))],
)
def test_presets_fit_the_demo_datasets(preset, shape, out):
    model = abstract_model(lambda: build_model(preset, "proposed", rngs=nnx.Rngs(0)))
    assert abstract_output(model, shape, key=jax.random.key(0)) == out
    assert count_params(model) < 100_000  # trains in seconds on a laptop CPU


def test_build_model_rejects_unknown_names_and_methods():
    with pytest.raises(ValueError, match="resnet.*m5.*lstm.*unet.*digits"):
        build_model("vgg", "nn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="spatial_spindrop"):
        build_model("m5", "dropout", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="method"):
        UNet("mc", rngs=nnx.Rngs(0))
