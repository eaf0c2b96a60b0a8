"""Keys by structure and NNX-native stochastic layers.

Every stochastic site of every model draws from its own key; adding a layer leaves the other
layers' draws unchanged; an example's MC draws are the same whatever the batch it is evaluated
in; and the layers follow nnx conventions (``nnx.Rngs`` streams, ``model.eval()``, dtypes,
agreement with ``nnx.LayerNorm`` / ``nnx.GroupNorm``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import invnorm_jax.nn.dropout as dropout_module
import invnorm_jax.nn.norm as norm_module
from invnorm_jax.faults import Fault, iter_simulate_chips, number_fault_sites, simulate_chips
from invnorm_jax.models import build_model
from invnorm_jax.models.common import Call
from invnorm_jax.nn import InvertedNorm, MCDropout, MCSpatialDropout, QuantDense, norm_site, stochastic_site_ids

TINY = {
    "resnet": (dict(in_channels=1, widths=(8, 16), blocks=(1, 1)), (3, 8, 8, 1)),
    "m5": (dict(num_classes=10, channels=(8, 8), first_kernel=5, first_stride=1, pool=2), (3, 40, 1)),
    "lstm": (dict(hidden=8), (3, 6, 1)),
    "unet": (dict(widths=(8, 16)), (2, 8, 8, 1)),
}


@pytest.fixture
def recorded_keys(monkeypatch):
    """Every per-example key the samplers draw from, in call order: ``[(site, example) -> key data]``."""
    calls = []
    # The norm sites' samplers, and the masks of the dropout on the crossbar inputs.
    for module, name in (
        (norm_module, "affine_dropout"),
        (norm_module, "mc_dropout"),
        (norm_module, "mc_spatial_dropout"),
        (dropout_module, "dropout_mask"),
    ):
        original = getattr(module, name)

        def wrapper(key, *args, _original=original, **kwargs):
            calls.append(np.asarray(jax.random.key_data(key)).reshape(-1, 2))
            return _original(key, *args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
    # MCDropout keeps the functional as a class attribute.
    monkeypatch.setattr(norm_module.MCDropout, "_drop", staticmethod(norm_module.mc_dropout))
    monkeypatch.setattr(norm_module.MCSpatialDropout, "_drop", staticmethod(norm_module.mc_spatial_dropout))
    return calls


@pytest.mark.parametrize("method", ["proposed", "spindrop", "spatial_spindrop"])
@pytest.mark.parametrize("name", list(TINY))
def test_every_stochastic_site_draws_from_a_distinct_key(name, method, recorded_keys):
    kwargs, shape = TINY[name]
    model = build_model(name, method, rngs=nnx.Rngs(0), **kwargs)
    model(jnp.ones(shape), key=jax.random.key(0))
    sites = stochastic_site_ids(model)
    assert len(recorded_keys) == len(sites) > 1
    rows = np.concatenate(recorded_keys)
    assert rows.shape[0] == len(sites) * shape[0]
    assert len({tuple(r) for r in rows}) == rows.shape[0], "two sites or examples share a key"


def test_adding_a_layer_leaves_the_other_draws_unchanged(recorded_keys):
    kwargs, shape = TINY["m5"]
    x = jnp.ones(shape)
    build_model("m5", "proposed", rngs=nnx.Rngs(0), **kwargs)(x, key=jax.random.key(3))
    two = list(recorded_keys)
    recorded_keys.clear()
    deeper = dict(kwargs, channels=(8, 8, 16))
    build_model("m5", "proposed", rngs=nnx.Rngs(0), **deeper)(x, key=jax.random.key(3))
    assert len(recorded_keys) == 3
    for old, new in zip(two, recorded_keys[:2]):
        np.testing.assert_array_equal(old, new)


class _Net(nnx.Module):
    """dense -> site_a -> [extra site] -> site_b; the extra one is *inserted* in the middle."""

    def __init__(self, extra: bool):
        rngs = nnx.Rngs(0)
        self.dense = QuantDense(4, 6, rngs=rngs)
        self.site_a = norm_site("proposed", 6, rngs=rngs)
        self.extra = MCDropout(0.5) if extra else None
        self.site_b = norm_site("spindrop", 6, norm="layer", rngs=rngs)
        number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        call = Call(key, train, deterministic, faults)
        h = self.site_a(self.dense(x, **call.kw), **call.kw)
        if self.extra is not None:
            h = self.extra(h, **call.kw)
        return self.site_b(h, **call.kw)


def test_inserting_a_layer_between_two_others_moves_no_draw(recorded_keys):
    x = jnp.ones((2, 4))
    _Net(False)(x, key=jax.random.key(1))
    without = list(recorded_keys)
    recorded_keys.clear()
    _Net(True)(x, key=jax.random.key(1))
    assert len(without) == 2 and len(recorded_keys) == 3
    np.testing.assert_array_equal(without[0], recorded_keys[0])  # site_a
    np.testing.assert_array_equal(without[1], recorded_keys[2])  # site_b, after the inserted layer


@pytest.mark.parametrize("name", ["m5", "resnet"])
def test_stochastic_results_do_not_depend_on_batch_size(name):
    kwargs, shape = TINY[name]
    model = build_model(name, "proposed" if name == "m5" else "spindrop", rngs=nnx.Rngs(0), **kwargs)
    x = jax.random.normal(jax.random.key(9), (9,) + shape[1:])
    fault = Fault("additive", 0.3) if name == "m5" else Fault("additive", 0.5, site="preactivation", per_inference=True)
    run = dict(fault=fault, num_chips=2, num_samples=3, key=jax.random.key(4))
    whole = np.asarray(simulate_chips(model, x, **run))
    assert not np.allclose(whole[:, 0], whole[:, 1]), "MC samples should differ"
    for batch_size in (1, 7):
        np.testing.assert_allclose(
            np.asarray(simulate_chips(model, x, batch_size=batch_size, **run)), whole, rtol=1e-5, atol=1e-5
        )
    pieces = {start: np.asarray(out) for start, out in iter_simulate_chips(model, x, batch_size=7, **run)}
    assert sorted(pieces) == [0, 7]
    np.testing.assert_allclose(np.concatenate([pieces[0], pieces[7]], axis=2), whole, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ your own models, no numbering


def _user_layer(kind: str, rngs):
    """A stochastic layer of ``kind`` for 8 features, built from ``rngs`` (None: no stream)."""
    if kind == "inverted":
        return InvertedNorm(8, rate=0.5, rngs=rngs if rngs is not None else nnx.Rngs(0), keep_rngs=rngs is not None)
    layer = MCSpatialDropout if kind == "spatial" else MCDropout
    return layer(0.5, rngs=rngs)


class _Flat(nnx.Module):
    """A user's model: layers as attributes, no numbering call; each layer's own ``nnx.Rngs(3)``
    (``rngs="each"``), one shared ``nnx.Rngs`` (``"shared"``) or none."""

    def __init__(self, kinds, rngs):
        shared = nnx.Rngs(params=0, dropout=7)
        self.layers = nnx.List(
            [_user_layer(k, {"each": nnx.Rngs(3), "shared": shared, None: None}[rngs]) for k in kinds]
        )

    def __call__(self, x, *, key=None):
        return [layer(x, key=key) for layer in self.layers]


class _Block(nnx.Module):
    def __init__(self):
        self.drop = MCDropout(0.5)

    def __call__(self, x, *, key):
        return self.drop(x, key=key)


def _through_a_helper(block, x, key):  # a plain function between two modules on the stack
    return block(x, key=key)


class _Nested(nnx.Module):
    """The same block class twice (equal relative paths), one of them called through a helper."""

    def __init__(self):
        self.first, self.second, self.top = _Block(), _Block(), MCDropout(0.5)

    def __call__(self, x, *, key=None):
        return [self.first(x, key=key), _through_a_helper(self.second, x, key), self.top(x, key=key)]


KINDS = [
    ("inverted", "inverted"),
    ("dropout", "dropout", "spatial"),
    ("inverted", "dropout", "inverted", "dropout"),
    ("dropout",) * 5,
]


@pytest.mark.parametrize("rngs", ["each", "shared", None])
@pytest.mark.parametrize("kinds", KINDS, ids=lambda k: f"{len(k)}layers")
def test_a_user_models_layers_draw_from_distinct_keys_without_numbering(kinds, rngs, recorded_keys):
    model = _Flat(kinds, rngs)
    x = jnp.ones((4, 8))
    model(x, key=jax.random.key(0))
    assert len(recorded_keys) == len(kinds)
    rows = np.concatenate(recorded_keys)
    assert len({tuple(r) for r in rows}) == rows.shape[0], "two layers (or examples) share a key"
    # The same draws as the chip simulator's numbered copy, and as an explicit numbering.
    first = list(recorded_keys)
    recorded_keys.clear()
    number_fault_sites(model)
    model(x, key=jax.random.key(0))
    for a, b in zip(first, recorded_keys):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rngs", ["each", "shared"])
def test_a_user_models_own_streams_give_independent_masks(rngs):
    """Called without a key, each layer draws from its stream: masks must still be independent."""
    model = _Flat(("dropout",) * 3, rngs)
    x = jnp.ones((64, 8))
    masks = [np.asarray(m) > 0 for m in model(x)]  # "each": three equal streams; the paths differ
    n = masks[0].size
    for i in range(3):
        for j in range(i + 1, 3):
            agree = (masks[i] == masks[j]).mean()
            assert abs(agree - 0.5) < 5 * 0.5 / np.sqrt(n), (i, j, agree)  # independent at p = 0.5


def test_nested_blocks_and_helpers_get_distinct_masks_that_match_the_numbered_copy():
    model = _Nested()
    x = jnp.ones((256, 8))
    outs = [np.asarray(o) > 0 for o in model(x, key=jax.random.key(5))]
    n = outs[0].size
    for i in range(3):
        for j in range(i + 1, 3):
            agree = (outs[i] == outs[j]).mean()
            assert abs(agree - 0.5) < 5 * 0.5 / np.sqrt(n), (i, j, agree)
    expected = stochastic_site_ids(model)
    assert set(expected.values()) == {None}  # nothing numbered them
    again = [np.asarray(o) > 0 for o in model(x, key=jax.random.key(5))]
    number_fault_sites(model)
    numbered = [np.asarray(o) > 0 for o in model(x, key=jax.random.key(5))]
    for a, b, c in zip(outs, again, numbered):
        np.testing.assert_array_equal(a, b)  # the same key, the same masks
        np.testing.assert_array_equal(a, c)  # and the ids the path gives


def test_a_hand_written_mc_loop_agrees_with_the_chip_simulator():
    from invnorm_jax.faults import FaultContext
    from invnorm_jax.faults.simulate import chip_keys, sample_keys
    from invnorm_jax.functional.keys import example_keys
    from invnorm_jax.nn import BinaryDense

    class Mine(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(1)
            self.dense = BinaryDense(8, 8, binarize_input=False, rngs=rngs)
            self.norm_a = InvertedNorm(8, rate=0.5, rngs=nnx.Rngs(3))
            self.norm_b = InvertedNorm(8, rate=0.5, rngs=nnx.Rngs(3))

        def __call__(self, x, *, key=None, deterministic=None, faults=None):
            h = self.norm_a(self.dense(x, faults=faults), key=key, deterministic=deterministic)
            return self.norm_b(h, key=key, deterministic=deterministic)

    model = Mine()
    x = jax.random.normal(jax.random.key(2), (5, 8))
    key, fault = jax.random.key(7), Fault("bit_flip", 0.1)
    out = np.asarray(simulate_chips(model, x, fault=fault, num_chips=2, num_samples=3, key=key))
    for c, chip in enumerate(chip_keys(key, 2)):
        for t, sample in enumerate(sample_keys(key, 3)):
            by_hand = model(x, key=example_keys(sample, 5), faults=FaultContext(fault, chip))
            np.testing.assert_allclose(out[c, t], by_hand, rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[0, 0], out[0, 1])


def test_linen_models_use_the_layers_through_nnx_bridge():
    """docs/any_model.md's linen recipe: parameters in linen's variables, independent masks per
    bridged layer (linen's module path names them), the same draws for the same key under jit."""
    import flax.linen as linen
    from flax.nnx import bridge

    class Mine(linen.Module):
        @linen.compact
        def __call__(self, x, *, key):
            h = linen.Dense(16)(x)
            h = bridge.to_linen(InvertedNorm, 16, rate=0.5, keep_rngs=False, name="norm")(h, key=key)
            drops = [bridge.to_linen(MCDropout, 0.5, skip_rng=True, name=f"drop{i}")(h, key=key) for i in range(2)]
            return h, drops

    model, x = Mine(), jax.random.normal(jax.random.key(0), (128, 8))
    variables = model.init(jax.random.key(1), x, key=jax.random.key(2))
    assert set(variables["params"]["norm"]) == {"scale", "bias"}
    apply = jax.jit(lambda v, x, k: model.apply(v, x, key=k))
    h, (a, b) = apply(variables, x, jax.random.key(3))
    h2, (a2, _) = model.apply(variables, x, key=jax.random.key(3))
    np.testing.assert_allclose(np.asarray(h), np.asarray(h2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a) == 0, np.asarray(a2) == 0)
    h3, _ = apply(variables, x, jax.random.key(4))
    assert not np.allclose(h, h3), "another key, other affine-dropout masks"
    kept_a, kept_b = np.asarray(a) != 0, np.asarray(b) != 0
    n = kept_a.size
    assert abs((kept_a == kept_b).mean() - 0.5) < 5 * 0.5 / np.sqrt(n), "the two dropouts share masks"


# ------------------------------------------------------------------ NNX-native layers


@pytest.mark.parametrize("groups", [None, 2])
def test_deterministic_inverted_norm_equals_flax_norm_of_the_affine_input(groups):
    x = jax.random.normal(jax.random.key(0), (3, 5, 4)) * 3 + 1
    layer = InvertedNorm(4, num_groups=groups, epsilon=1e-3, rngs=nnx.Rngs(1))
    y = layer(x, deterministic=True)
    affine = layer.scale[...] * x + layer.bias[...]
    if groups is None:
        flax_norm = nnx.LayerNorm(
            4, epsilon=1e-3, use_scale=False, use_bias=False, reduction_axes=(1, 2), feature_axes=-1, rngs=nnx.Rngs(0)
        )
    else:
        flax_norm = nnx.GroupNorm(4, num_groups=groups, epsilon=1e-3, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(y, flax_norm(affine), rtol=1e-5, atol=1e-5)


def test_inverted_norm_keeps_bfloat16_and_computes_statistics_in_float32():
    x = jax.random.normal(jax.random.key(0), (2, 6, 8)) * 0.01 + 100.0  # |mean| >> std
    layer = InvertedNorm(8, rngs=nnx.Rngs(0))
    y16 = layer(x.astype(jnp.bfloat16), deterministic=True)
    assert y16.dtype == jnp.bfloat16
    y32 = layer(x.astype(jnp.bfloat16).astype(jnp.float32), deterministic=True)
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.05)  # one bfloat16 rounding
    assert (
        InvertedNorm(8, dtype=jnp.float32, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(
            x.astype(jnp.bfloat16), deterministic=True
        ).dtype
        == jnp.float32
    )


def test_eps_is_a_deprecated_alias_of_epsilon():
    with pytest.warns(DeprecationWarning, match="epsilon"):
        layer = InvertedNorm(4, eps=0.5, rngs=nnx.Rngs(0))
    assert layer.epsilon == 0.5


def test_eval_and_train_switch_the_samplers():
    model = build_model("m5", "proposed", rngs=nnx.Rngs(0), **TINY["m5"][0])
    x = jax.random.normal(jax.random.key(1), TINY["m5"][1])
    model.eval()
    a, b = model(x, key=jax.random.key(1)), model(x, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, model(x))  # no key needed once deterministic
    model.train()
    assert not np.allclose(model(x, key=jax.random.key(1)), model(x, key=jax.random.key(2)))
    np.testing.assert_array_equal(model(x, key=jax.random.key(1), deterministic=True), a)  # the call wins


def test_rngs_stream_as_in_nnx_dropout_and_explicit_keys_under_vmap():
    x = jnp.ones((3, 4)) * jnp.arange(4.0)
    layer = InvertedNorm(4, rate=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    assert not np.allclose(layer(x), layer(x)), "the stream should advance between calls"
    bare = InvertedNorm(4, rate=0.5, rngs=nnx.Rngs(0))  # the default stream, as nnx.Dropout
    assert not np.allclose(bare(x), bare(x))
    with pytest.raises(ValueError, match="rngs=nnx.Rngs"):
        InvertedNorm(4, rngs=nnx.Rngs(0), keep_rngs=False)(x)  # no stream, no key: a clear error
    assert nnx.state(norm_site("proposed", 4, rngs=nnx.Rngs(0)), nnx.RngState) == nnx.State({})
    drop = MCDropout(0.5, rngs=nnx.Rngs(dropout=2))
    assert drop(x).shape == x.shape
    np.testing.assert_array_equal(drop(x, rngs=jax.random.key(3)), drop(x, key=jax.random.key(3)))
    keys = jax.random.split(jax.random.key(4), 5)
    graphdef, state = nnx.split(layer)
    batched = jax.vmap(lambda k: nnx.merge(graphdef, state)(x, key=k))(keys)
    np.testing.assert_allclose(batched[2], layer(x, key=keys[2]), rtol=1e-6)
