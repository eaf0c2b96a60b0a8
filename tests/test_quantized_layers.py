"""Binary / k-bit NNX layers: references, jit, fault hooks, EDE progress, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from numpy.lib.stride_tricks import sliding_window_view

from invnorm_jax.nn.keys import number_fault_sites
from invnorm_jax.nn.quantized import (
    PACT,
    BinaryConv,
    BinaryDense,
    EDEProgress,
    QuantConv,
    QuantDense,
    set_training_progress,
)
from invnorm_jax.nn.recurrent import QuantLSTMCell


class RecordingFaults:
    """Stands in for a FaultContext: records every hook call; optionally negates the codes."""

    def __init__(self, negate=True, shift=0.0):
        self.negate, self.shift = negate, shift
        self.weight_calls, self.pre_calls = [], []

    def weights(self, fault_id, codes, *, bits):
        self.weight_calls.append((fault_id, bits, codes.dtype, codes.shape))
        return -codes if self.negate else codes

    def preactivation(self, fault_id, x, *, key=None):
        self.pre_calls.append((fault_id, key is not None))
        return x + self.shift


def _np_sign(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


def _np_irnet(kernel):
    """float64 Libra-PB codes and power-of-two scale per output channel."""
    w = np.asarray(kernel, np.float64)
    axes = tuple(range(w.ndim - 1))
    w_std = (w - w.mean(axes, keepdims=True)) / (w - w.mean(axes, keepdims=True)).std(axes, keepdims=True)
    scale = 2.0 ** np.round(np.log2(np.abs(w_std).mean(axes, keepdims=True)))
    return _np_sign(w_std), scale


def _np_conv(x, kernel, stride, padding):
    """float64 channels-last convolution (1-D or 2-D), odd kernels for SAME."""
    nd = kernel.ndim - 2
    ks = kernel.shape[:nd]
    if padding == "SAME":
        pads = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in ks] + [(0, 0)]
        x = np.pad(x, pads)
    win = sliding_window_view(x, ks, axis=tuple(range(1, nd + 1)))
    win = win[(slice(None),) + (slice(None, None, stride),) * nd]
    sub = "hw"[:nd]
    return np.einsum(f"n{sub}c{sub.upper()},{sub.upper()}co->n{sub}o", win, kernel)


def _np_fake_quant(x, bits, axes):
    x = np.asarray(x, np.float64)
    qmax = 2 ** (bits - 1) - 1
    absmax = np.abs(x).max(axis=axes, keepdims=True)
    scale = np.where(absmax > 0, absmax / qmax, 1.0)
    return np.clip(np.round(x / scale), -qmax - 1, qmax) * scale


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    "kernel_size,shape,stride,padding",
    [((3, 3), (2, 7, 6, 3), 1, "SAME"), ((3, 3), (2, 9, 9, 3), 2, "VALID"), (5, (3, 16, 2), 1, "SAME")],
)
def test_binary_conv_matches_float64_reference(kernel_size, shape, stride, padding):
    conv = BinaryConv(shape[-1], 4, kernel_size, strides=stride, padding=padding, rngs=nnx.Rngs(1))
    x = _x(shape)
    codes, scale = _np_irnet(conv.kernel[...])
    expected = _np_conv(_np_sign(x), codes * scale, stride, padding)
    np.testing.assert_allclose(conv(x), expected, rtol=1e-6, atol=1e-6)
    dep_codes, dep_scale = conv.deployed_weights()
    np.testing.assert_array_equal(dep_codes, codes)
    np.testing.assert_array_equal(dep_scale, scale)


def test_binary_dense_without_input_binarization_uses_float_inputs():
    dense = BinaryDense(6, 3, binarize_input=False, use_bias=True, rngs=nnx.Rngs(2))
    dense.bias[...] = jnp.array([0.5, -1.0, 2.0])
    x = _x((4, 6))
    codes, scale = _np_irnet(dense.kernel[...])
    expected = np.asarray(x, np.float64) @ (codes * scale) + [0.5, -1.0, 2.0]
    np.testing.assert_allclose(dense(x), expected, rtol=1e-5, atol=1e-5)
    assert dense.has_preactivation_site is False and BinaryDense.has_preactivation_site is True


def test_quant_dense_matches_numpy_reference_and_full_precision_is_plain():
    x = _x((5, 7))
    q = QuantDense(7, 3, bits=4, act_bits=6, rngs=nnx.Rngs(3))
    q.bias[...] = jnp.array([0.1, 0.2, 0.3])
    expected = _np_fake_quant(x, 6, axes=(1,)) @ _np_fake_quant(q.kernel[...], 4, axes=(0,)) + [0.1, 0.2, 0.3]
    np.testing.assert_allclose(q(x), expected, rtol=1e-5, atol=1e-5)

    fp = QuantDense(7, 3, bits=None, act_bits=None, rngs=nnx.Rngs(3))
    np.testing.assert_allclose(fp(x), np.asarray(x) @ np.asarray(fp.kernel[...]), rtol=1e-5, atol=1e-6)
    codes, scale = fp.deployed_weights()
    np.testing.assert_array_equal(codes, fp.kernel[...])
    assert float(scale) == 1.0


def test_quant_conv_deployed_codes_are_in_range_integers():
    conv = QuantConv(2, 5, (3, 3), bits=4, rngs=nnx.Rngs(4))
    codes, scale = conv.deployed_weights()
    assert codes.dtype == jnp.int32 and scale.shape == (1, 1, 1, 5)
    assert int(codes.min()) >= -8 and int(codes.max()) <= 7
    assert conv(_x((2, 6, 6, 2))).shape == (2, 6, 6, 5)


def test_activation_scale_is_per_example():
    """An example's output must not depend on its batch-mates (MC samples share batches)."""
    q = QuantConv(1, 3, 5, bits=8, act_bits=4, rngs=nnx.Rngs(5))
    x = _x((4, 20, 1)).at[3].multiply(100.0)
    np.testing.assert_allclose(q(x)[:1], q(x[:1]), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- jit, gradients


LAYERS = {
    "binary_conv": (lambda: BinaryConv(3, 4, (3, 3), rngs=nnx.Rngs(0)), (2, 5, 5, 3)),
    "binary_dense": (lambda: BinaryDense(6, 4, use_bias=True, rngs=nnx.Rngs(0)), (3, 6)),
    "quant_conv": (lambda: QuantConv(2, 4, 3, bits=8, act_bits=8, rngs=nnx.Rngs(0)), (2, 10, 2)),
    "quant_dense": (lambda: QuantDense(6, 4, bits=3, act_bits=None, rngs=nnx.Rngs(0)), (3, 6)),
    "fp_dense": (lambda: QuantDense(6, 4, bits=None, rngs=nnx.Rngs(0)), (3, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_jit_agrees_with_eager_with_and_without_faults(name):
    make, shape = LAYERS[name]
    layer, x = make(), _x(shape, 7)
    faults = RecordingFaults()
    call = nnx.jit(lambda m, v, f: m(v, faults=f), static_argnums=2)
    np.testing.assert_allclose(call(layer, x, None), layer(x), rtol=1e-6, atol=1e-6)
    jitted_faulty = nnx.jit(lambda m, v: m(v, faults=faults))(layer, x)
    np.testing.assert_allclose(jitted_faulty, layer(x, faults=faults), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_training_gradient_flows_through_the_quantizer(name):
    make, shape = LAYERS[name]
    layer, x = make(), _x(shape, 8)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x, train=True) ** 2)))(layer)
    g = np.asarray(grads.kernel[...])
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_ede_progress_changes_gradient_not_forward():
    class Net(nnx.Module):
        def __init__(self):
            self.a = BinaryDense(8, 8, rngs=nnx.Rngs(0))
            self.b = nnx.List([BinaryConv(8, 2, 3, rngs=nnx.Rngs(1)), QuantDense(2, 2, rngs=nnx.Rngs(2))])

        def __call__(self, x):
            return self.b[1](self.b[0](self.a(x)[:, None, :]))

    net, x = Net(), _x((4, 8), 9)
    # One jitted function for both progress values: progress is state, not a static.
    loss = lambda m: jnp.sum(m(x) * jnp.arange(4.0)[:, None, None])
    forward_and_grad = nnx.jit(lambda m: (m(x), nnx.grad(loss)(m)))
    y_end, g_end = forward_and_grad(net)
    assert set_training_progress(net, 0.0) == 2
    assert float(net.b[0].ede_progress[...]) == 0.0 and isinstance(net.a.ede_progress, EDEProgress)
    y_start, g_start = forward_and_grad(net)
    np.testing.assert_array_equal(y_start, y_end)
    assert not np.allclose(g_start.a.kernel[...], g_end.a.kernel[...])


# ----------------------------------------------------------------------------- fault hooks


def test_binary_weight_fault_hook_is_called_and_changes_output():
    dense = BinaryDense(6, 4, rngs=nnx.Rngs(0))
    dense.fault_id = 5
    x = _x((3, 6), 10)
    clean = dense(x)
    faults = RecordingFaults(negate=True)
    np.testing.assert_allclose(dense(x, faults=faults), -clean, rtol=1e-6)
    assert faults.weight_calls == [(5, 1, jnp.float32, (6, 4))]
    np.testing.assert_array_equal(dense(x, faults=RecordingFaults(negate=False)), clean)
    np.testing.assert_array_equal(dense(x), clean)


def test_quant_weight_fault_hook_gets_integer_codes_and_bits():
    q = QuantDense(6, 4, bits=5, act_bits=None, use_bias=True, rngs=nnx.Rngs(0))
    q.bias[...] = jnp.ones(4)
    x = _x((3, 6), 11)
    clean, faults = q(x), RecordingFaults(negate=True)
    np.testing.assert_allclose(q(x, faults=faults), 2.0 - clean, rtol=1e-5, atol=1e-6)
    assert faults.weight_calls == [(0, 5, jnp.int32, (6, 4))]
    np.testing.assert_array_equal(q(x, faults=RecordingFaults(negate=False)), clean)


def test_full_precision_layer_passes_bits_none():
    faults = RecordingFaults(negate=False)
    QuantConv(2, 3, 3, bits=None, rngs=nnx.Rngs(0))(_x((1, 8, 2)), faults=faults)
    assert faults.weight_calls == [(0, None, jnp.float32, (3, 2, 3))]


def test_preactivation_hook_runs_before_sign_only_when_binarizing():
    conv = BinaryConv(2, 3, (3, 3), rngs=nnx.Rngs(0))
    conv.fault_id = 2
    x = -jnp.abs(_x((1, 4, 4, 2), 12))  # all inputs negative: a +10 shift flips every sign
    faults = RecordingFaults(negate=False, shift=10.0)
    shifted = conv(x, key=jax.random.key(0), faults=faults)
    assert faults.pre_calls == [(2, True)]
    np.testing.assert_allclose(shifted, conv(-x), rtol=1e-6)
    assert not np.allclose(shifted, conv(x))

    plain = BinaryConv(2, 3, (3, 3), binarize_input=False, rngs=nnx.Rngs(0))
    quiet = RecordingFaults(negate=False, shift=10.0)
    np.testing.assert_array_equal(plain(x, faults=quiet), plain(x))
    assert quiet.pre_calls == [] and len(quiet.weight_calls) == 1


def test_fault_sites_are_numbered_across_layers():
    class Net(nnx.Module):
        def __init__(self):
            self.conv = BinaryConv(1, 2, 3, rngs=nnx.Rngs(0))
            self.act = PACT(bits=4)
            self.cell = QuantLSTMCell(2, 3, rngs=nnx.Rngs(1))

    net = Net()
    assert number_fault_sites(net) == 3
    ids = {net.conv.fault_id, net.cell.input_proj.fault_id, net.cell.recurrent_proj.fault_id}
    assert ids == {0, 1, 2}


# ----------------------------------------------------------------------------- LSTM, PACT, validation


def test_quant_lstm_cell_shapes_forget_bias_and_faults():
    cell = QuantLSTMCell(3, 5, bits=8, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(cell.input_proj.bias[...], [0.0] * 5 + [1.0] * 5 + [0.0] * 10)
    carry = cell.initialize_carry(2)
    assert [a.shape for a in carry] == [(2, 5), (2, 5)]
    step = nnx.jit(lambda m, c, v: m(c, v))
    for t in range(3):
        carry, h = step(cell, carry, _x((2, 3), t))
    assert h.shape == (2, 5) and carry[0].shape == (2, 5)
    np.testing.assert_array_equal(h, carry[1])
    assert np.all(np.abs(np.asarray(h)) < 1) and np.abs(np.asarray(h)).sum() > 0

    cell.recurrent_proj.fault_id = 1
    faults = RecordingFaults(negate=True)
    _, h_faulty = cell(carry, _x((2, 3), 4), faults=faults)
    assert [(c[0], c[1]) for c in faults.weight_calls] == [(0, 8), (1, 8)]
    assert not np.allclose(h_faulty, cell(carry, _x((2, 3), 4))[1])


def test_pact_module_learns_alpha_from_clipped_inputs():
    act = PACT(bits=2, alpha_init=2.0)
    x = jnp.array([-1.0, 0.5, 1.9, 2.0, 7.0])
    np.testing.assert_allclose(act(x), [0.0, 2 / 3, 2.0, 2.0, 2.0], rtol=1e-6)
    grads = nnx.grad(lambda m: jnp.sum(m(x) * jnp.arange(1.0, 6.0)))(act)
    assert float(grads.alpha[...]) == pytest.approx(4.0 + 5.0)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: QuantDense(2, 2, bits=1, rngs=nnx.Rngs(0)), "bits"),
        (lambda: QuantConv(2, 2, 3, bits=17, rngs=nnx.Rngs(0)), "bits"),
        (lambda: QuantDense(2, 2, act_bits=0, rngs=nnx.Rngs(0)), "act_bits"),
        (lambda: QuantLSTMCell(2, 2, bits=32, rngs=nnx.Rngs(0)), "bits"),
        (lambda: PACT(bits=0), "bits"),
    ],
)
def test_bad_bits_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=rf"^{name}=.*\d\.\.16"):
        make()


def test_one_dimensional_kernel_on_2d_input_fails_loudly():
    conv = BinaryConv(3, 2, 3, rngs=nnx.Rngs(0))
    assert conv(_x((1, 6, 3))).shape == (1, 6, 2)
    with pytest.raises(ValueError, match="int kernel_size means 1-D"):
        conv(_x((1, 6, 6, 3)))
