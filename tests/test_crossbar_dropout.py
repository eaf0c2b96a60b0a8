"""The baselines' MC dropout on the crossbar inputs (``dropout_site="crossbar"``, the default).

SpinDrop drops single input lines of a binary / quantized layer, Spatial-SpinDrop whole input
channels; the kept inputs are not rescaled (binary operands stay in {-1, 0, +1}), the layer's
output is, by 1/(1-p). Full-precision layers carry none; ``nn`` and ``proposed`` are unaffected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import invnorm_jax.nn.quantized as quantized
from invnorm_jax.errors import ArgumentError
from invnorm_jax.models import build_model
from invnorm_jax.nn import BinaryConv, BinaryDense, QuantDense, QuantLSTMCell
from invnorm_jax.nn.dropout import CrossbarDropout, crossbar_dropout
from invnorm_jax.nn.norm import NormSite

RATE = 0.3
TINY = {
    "resnet": (dict(in_channels=1, widths=(8, 16), blocks=(1, 1)), (4, 8, 8, 1)),
    "m5": (dict(num_classes=10, channels=(8, 8, 16), first_kernel=5, first_stride=1, pool=2), (4, 40, 1)),
    "lstm": (dict(hidden=8), (4, 12, 1)),
    "unet": (dict(widths=(8, 16)), (2, 8, 8, 1)),
}


def tiny(name, method, **kwargs):
    base, shape = TINY[name]
    model = build_model(name, method, rngs=nnx.Rngs(0), **base, **kwargs)
    return model, jax.random.normal(jax.random.key(100), shape)


def binomial_band(n: int, p: float) -> float:
    """Five standard errors of a drop share measured on ``n`` independent draws."""
    return 5.0 * np.sqrt(p * (1 - p) / n)


def dropout_layers(model):
    return {
        "/".join(map(str, path)): node
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Module) and getattr(node, "input_dropout", None) is not None
    }


@pytest.fixture
def operands(monkeypatch):
    """The (binarized, masked) input of every binary layer's product, as the crossbar sees it."""
    seen = []

    def recording(layer, op, x, codes, scale, faults, _original=quantized.layer_product):
        seen.append(np.asarray(x))
        return _original(layer, op, x, codes, scale, faults)

    monkeypatch.setattr(quantized, "layer_product", recording)
    return seen


@pytest.mark.parametrize("spatial", [False, True])
def test_drop_share_is_the_rate(spatial):
    x = jnp.ones((64, 16, 16, 32))
    mask = np.asarray(CrossbarDropout(RATE, spatial=spatial).mask(x, key=jax.random.key(0)))
    assert mask.shape == ((64, 1, 1, 32) if spatial else x.shape)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert abs((mask == 0).mean() - RATE) < binomial_band(mask.size, RATE)


def test_spatial_masks_are_constant_over_the_spatial_axes(operands):
    model, x = tiny("resnet", "spatial_spindrop")
    model(x, key=jax.random.key(1))
    assert len(operands) == 4
    for op in operands:
        dropped = op == 0
        assert np.all(dropped.all(axis=(1, 2)) | ~dropped.any(axis=(1, 2))), "a channel kept at some positions only"
    share = np.mean([(op == 0).all(axis=(1, 2)).mean() for op in operands])
    channels = sum(op.shape[0] * op.shape[-1] for op in operands)
    assert abs(share - RATE) < binomial_band(channels, RATE) * 1.5  # equal-weighted mean of 4 shares


@pytest.mark.parametrize("method", ["spindrop", "spatial_spindrop"])
def test_binary_operands_stay_in_minus_one_zero_one(method, operands):
    model, x = tiny("resnet", method)
    model(x, key=jax.random.key(1))
    for op in operands:
        assert set(np.unique(op)) <= {-1.0, 0.0, 1.0}
    if method == "spindrop":  # element-wise: about p of all inputs are zero
        n = sum(op.size for op in operands)
        assert abs(sum((op == 0).sum() for op in operands) / n - RATE) < binomial_band(n, RATE)


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("method", ["spindrop", "spatial_spindrop"])
def test_only_crossbar_layers_get_a_dropout_and_the_norm_sites_none(name, method):
    model, _ = tiny(name, method)
    layers = dropout_layers(model)
    assert layers
    for path, layer in layers.items():
        assert layer.bits is not None, f"{path} is full precision"
        assert layer.input_dropout.spatial == (method == "spatial_spindrop")
    full = [n for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Module) and getattr(n, "bits", 1) is None]
    assert all(layer.input_dropout is None for layer in full)
    assert all(n.dropout is None for _, n in nnx.iter_graph(model) if isinstance(n, NormSite))
    if name == "resnet":  # the four binary convs; not the stem, the shortcut or the classifier
        assert sorted(layers) == ["blocks/0/conv1", "blocks/0/conv2", "blocks/1/conv1", "blocks/1/conv2"]


def test_full_precision_m5_has_no_crossbar_dropout():
    model, _ = tiny("m5", "spindrop", bits=None)
    assert not dropout_layers(model)


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("method", ["spindrop", "spatial_spindrop"])
def test_deterministic_is_the_model_without_dropout(name, method):
    model, x = tiny(name, method)
    plain, _ = tiny(name, "nn")  # the same weights (same rngs), no sampler anywhere
    np.testing.assert_array_equal(np.asarray(model(x, deterministic=True)), np.asarray(plain(x)))


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("method", ["spindrop", "spatial_spindrop"])
def test_active_at_test_time_and_determined_by_the_key(name, method):
    model, x = tiny(name, method)
    a, b, c = (np.asarray(model(x, key=jax.random.key(k))) for k in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("method", ["nn", "proposed"])
def test_nn_and_proposed_ignore_the_dropout_site(name, method):
    (a, x), (b, _) = tiny(name, method, dropout_site="crossbar"), tiny(name, method, dropout_site="norm")
    key = jax.random.key(3)
    np.testing.assert_array_equal(np.asarray(a(x, key=key)), np.asarray(b(x, key=key)))


def test_every_layer_draws_its_own_mask():
    model, x = tiny("resnet", "spindrop")
    layers = dropout_layers(model)
    key = jax.random.key(1)
    # blocks/0/conv1 and blocks/0/conv2 both read [B, 8, 8, 8]: same shape, same call key.
    m1, m2 = (
        np.asarray(layers[p].input_mask(x.repeat(8, axis=-1), key=key)) for p in ("blocks/0/conv1", "blocks/0/conv2")
    )
    assert m1.shape == m2.shape and not np.array_equal(m1, m2)
    assert len({layer.input_dropout.key_id for layer in layers.values()}) == len(layers)


def test_the_output_is_rescaled_not_the_input():
    layer = BinaryDense(64, 5, input_dropout=CrossbarDropout(RATE), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (8, 64))
    key = jax.random.key(4)
    mask = np.asarray(layer.input_mask(x, key=key), np.float64)
    codes, scale = (np.asarray(a, np.float64) for a in layer.deployed_weights())
    want = (np.where(np.asarray(x) >= 0, 1.0, -1.0) * mask) @ (codes * scale) / (1 - RATE)
    np.testing.assert_allclose(np.asarray(layer(x, key=key), np.float64), want, rtol=1e-5, atol=1e-5)


def test_quantized_layer_masks_its_quantized_input():
    layer = QuantDense(16, 3, bits=8, act_bits=8, input_dropout=CrossbarDropout(RATE, spatial=True), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (6, 16))
    key = jax.random.key(4)
    mask = np.asarray(layer.input_mask(x, key=key), np.float64)
    xq = np.asarray(layer._quant_input(x), np.float64)
    want = (xq * mask) @ np.asarray(layer._effective_kernel(None), np.float64) / (1 - RATE) + np.asarray(
        layer.bias[...], np.float64
    )
    np.testing.assert_allclose(np.asarray(layer(x, key=key), np.float64), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compute", ["int8", "bfloat16"])
def test_low_precision_products_stay_exact_under_dropout(compute):
    x = jax.random.normal(jax.random.key(0), (3, 6, 6, 64))
    key = jax.random.key(2)
    outs = []
    for mode in ("float32", compute):
        conv = BinaryConv(64, 16, (3, 3), compute=mode, input_dropout=CrossbarDropout(RATE), rngs=nnx.Rngs(0))
        outs.append(np.asarray(conv(x, key=key)))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_lstm_cell_uses_one_mask_per_sequence():
    cell = QuantLSTMCell(3, 5, input_dropout=lambda: CrossbarDropout(0.5, spatial=True), rngs=nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(0), (4, 3, 3))
    key = jax.random.key(1)
    carry, steps = cell.initialize_carry(4), []
    for t in range(xs.shape[1]):  # each step draws from the same key: the same masks
        carry, h = cell(carry, xs[:, t], key=key)
        steps.append(h)
    scanned = cell.scan(xs, key=key)
    np.testing.assert_allclose(np.asarray(scanned), np.asarray(jnp.stack(steps, axis=1)), rtol=1e-6, atol=1e-6)
    assert cell.input_proj.input_mask(xs[:, 0], key=key).shape == (4, 3)  # one draw per input feature
    assert not np.allclose(np.asarray(scanned), np.asarray(cell.scan(xs, key=key, deterministic=True)))


def test_lstm_elementwise_masks_are_fresh_at_every_step_and_spatial_ones_fixed():
    xs = jnp.ones((64, 20, 6))
    key = jax.random.key(2)
    for spatial in (False, True):
        cell = QuantLSTMCell(6, 5, input_dropout=lambda: CrossbarDropout(0.3, spatial=spatial), rngs=nnx.Rngs(0))
        mask_x, mask_h = (np.asarray(m) for m in cell._masks(xs, key, None))  # time-major
        assert mask_x.shape == ((20, 64, 6) if not spatial else (1, 64, 6)) and mask_h.shape[2] == 5
        if not spatial:  # SpinDrop: each step a new read of the crossbar, its own draw
            changed = np.mean(mask_x[1:] != mask_x[:-1])
            # Two independent Bernoulli(0.7) draws differ with probability 2 * 0.3 * 0.7 = 0.42.
            n = mask_x[1:].size
            assert abs(changed - 0.42) < 4 * np.sqrt(0.42 * 0.58 / n)
            assert abs(1 - mask_x.mean() - 0.3) < 4 * np.sqrt(0.21 / mask_x.size)
        out = cell.scan(xs, key=key)
        assert np.isfinite(np.asarray(out)).all()


def test_unknown_dropout_site_is_an_argument_error():
    with pytest.raises(ArgumentError, match="dropout_site"):
        build_model("digits", "spindrop", rngs=nnx.Rngs(0), dropout_site="weights")
    with pytest.raises(ArgumentError, match="dropout_site"):
        crossbar_dropout("spindrop", RATE, "everywhere")
