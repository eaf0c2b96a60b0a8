"""Faults for models this library did not build: ``inject`` and the functional ``simulate_chips``.

Three model styles (a Flax linen model through ``model.apply``, an NNX model of stock ``nnx``
layers through ``nnx.split`` / ``nnx.merge``, and a plain function) must equal a Python loop
over chips and MC samples with the same keys; ``inject``'s representations are checked against
NumPy; and every way of getting no faults at all must fail loudly.
"""

from __future__ import annotations

import math

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext, chip_keys, inject, sample_keys, select_paths, simulate_chips
from invnorm_jax.nn import path_id
from invnorm_jax.nn.quantized import QuantDense

KEY = jax.random.key(11)
CHIPS, SAMPLES = 4, 2
TOL = dict(rtol=1e-5, atol=1e-5)


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x, *, deterministic: bool):
        h = linen.relu(linen.Dense(8)(x))
        h = linen.Dropout(0.3)(h, deterministic=deterministic)
        return linen.Dense(3)(h)


class StockNNX(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.linear(jnp.mean(jax.nn.relu(self.conv(x)), axis=(1, 2)))


def plain_fn(params, x, key):
    return jnp.tanh(x @ params["w1"]) @ params["w2"] + params["b"]


def _plain_params():
    rng = np.random.default_rng(0)
    return {
        "w1": jnp.asarray(rng.normal(size=(5, 6)), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32),
        "b": jnp.zeros(2),
    }


def _styles():
    x_vec = jnp.asarray(np.random.default_rng(1).normal(size=(6, 5)), jnp.float32)
    linen_model = LinenMLP()
    linen_params = linen_model.init(jax.random.key(0), x_vec, deterministic=True)

    def linen_apply(p, x, key):
        return linen_model.apply(p, x, deterministic=False, rngs={"dropout": key})

    stock = StockNNX(nnx.Rngs(0))
    graphdef, state = nnx.split(stock)

    def nnx_apply(p, x, key):
        return nnx.merge(graphdef, p)(x)

    x_img = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6, 6, 1)), jnp.float32)
    return {
        "linen": (linen_apply, linen_params, x_vec),
        "nnx": (nnx_apply, state, x_img),
        "function": (plain_fn, _plain_params(), x_vec),
    }


STYLES = _styles()
FAULTS = [(Fault("bit_flip", 0.2), 1), (Fault("bit_flip", 0.05), 8), (Fault("additive", 0.3), None)]


def python_loop(apply_fn, params, x, fault, bits):
    chips, samples = chip_keys(KEY, CHIPS), sample_keys(KEY, SAMPLES)
    out = []
    for i in range(CHIPS):
        faulty = inject(params, fault, chips[i], bits=bits)
        out.append([apply_fn(faulty, x, jax.random.fold_in(samples[t], 0)) for t in range(SAMPLES)])
    return np.asarray(out)


@pytest.mark.parametrize("fault,bits", FAULTS, ids=["binary", "8bit", "additive"])
@pytest.mark.parametrize("style", list(STYLES))
def test_three_model_styles_equal_python_loop(style, fault, bits):
    apply_fn, params, x = STYLES[style]
    out = np.asarray(
        simulate_chips(
            apply_fn, x, params=params, fault=fault, bits=bits, num_chips=CHIPS, num_samples=SAMPLES, key=KEY
        )
    )
    assert out.shape[:3] == (CHIPS, SAMPLES, x.shape[0])
    np.testing.assert_allclose(out, python_loop(apply_fn, params, x, fault, bits), **TOL)
    assert not np.allclose(out[0], out[1]), "two chips should differ"
    clean = np.asarray(
        simulate_chips(
            apply_fn, x, params=params, fault=fault, bits=bits, level=0.0, num_chips=2, num_samples=SAMPLES, key=KEY
        )
    )
    reference = np.asarray([apply_fn(params, x, jax.random.fold_in(k, 0)) for k in sample_keys(KEY, SAMPLES)])
    np.testing.assert_allclose(clean[1], reference, **TOL)  # level 0 is the fault-free model


def test_inject_representations_against_numpy():
    w = jnp.asarray(np.random.default_rng(3).normal(size=(64, 32)), jnp.float32)
    params = {"layer": {"kernel": w, "bias": jnp.ones(32)}}
    key = jax.random.key(5)
    # Level 0: the very same values, for every kind.
    for fault, bits in FAULTS + [(Fault("stuck_at", 0.0), 4), (Fault("uniform", 0.0), None)]:
        zero = inject(params, Fault(fault.kind, 0.0), key, bits=bits)
        np.testing.assert_array_equal(zero["layer"]["kernel"], w)
        assert zero["layer"]["bias"] is params["layer"]["bias"]  # unselected: the same array
    # Binary: a flipped cell negates the weight, nothing else changes.
    flipped = np.asarray(inject(params, Fault("bit_flip", 0.3), key, bits=1)["layer"]["kernel"])
    changed = flipped != np.asarray(w)
    np.testing.assert_array_equal(flipped[changed], -np.asarray(w)[changed])
    n = w.size
    assert abs(changed.mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    # 8 bits: each code moves by a power-of-two multiple of its channel's scale; P(unchanged) = (1-p)^8.
    p = 0.05
    faulty = np.asarray(inject(params, Fault("bit_flip", p), key, bits=8)["layer"]["kernel"], np.float64)
    scale = np.abs(np.asarray(w, np.float64)).max(axis=0) / 127
    steps = (faulty - np.asarray(w, np.float64)) / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    q = (1 - p) ** 8
    assert abs(np.mean(np.round(steps) == 0) - q) < 5 * math.sqrt(q * (1 - q) / n)


def test_inject_selects_by_path_and_keys_by_path():
    params = _plain_params()
    assert select_paths(params) == ("w1", "w2")
    assert select_paths(params, "w2$") == ("w2",)
    assert select_paths(params, lambda path, leaf: leaf.ndim == 1) == ("b",)
    key, fault = jax.random.key(0), Fault("additive", 0.5)
    only_w2 = inject(params, fault, key, select="w2")
    assert only_w2["w1"] is params["w1"]
    # A leaf's faults depend on its path, not on what else is in the tree.
    bigger = {**params, "w0": jnp.ones((5, 5))}
    np.testing.assert_array_equal(inject(bigger, fault, key)["w2"], inject(params, fault, key)["w2"])
    w2 = np.asarray(params["w2"])
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, path_id("w2")), w2.shape))
    np.testing.assert_allclose(only_w2["w2"], w2 + 0.5 * np.abs(w2).max() * noise, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ never silently fault-free


def test_zero_fault_sites_is_an_error():
    apply_fn, params, x = STYLES["function"]
    with pytest.raises(ValueError, match=r"no fault site: select='conv' picked none of the 3 leaves.*looked for"):
        simulate_chips(apply_fn, x, params=params, select="conv", fault=Fault("additive", 0.1), num_samples=1, key=KEY)
    with pytest.raises(ValueError, match="no fault site"):
        inject({"b": jnp.ones(3)}, Fault("additive", 0.1), KEY)  # default: kernels only


def test_bit_faults_need_bits_and_preactivation_needs_library_layers():
    apply_fn, params, x = STYLES["function"]
    with pytest.raises(ValueError, match="pass bits=1"):
        simulate_chips(apply_fn, x, params=params, fault=Fault("bit_flip", 0.1), num_samples=1, key=KEY)
    with pytest.raises(ValueError, match="site='preactivation' needs the library's binary layers"):
        inject(params, Fault("additive", 0.1, site="preactivation"), KEY)


def test_plain_nnx_module_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"StockNNX is a plain NNX module.*nnx.split\(model\)"):
        simulate_chips(StockNNX(nnx.Rngs(0)), STYLES["nnx"][2], fault=Fault("bit_flip", 0.3), num_samples=1, key=KEY)


class _FullPrecisionOnly(nnx.Module):
    def __init__(self):
        self.dense = QuantDense(5, 2, bits=None, act_bits=None, rngs=nnx.Rngs(0))

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        return self.dense(x, faults=faults)


def test_library_module_without_reachable_sites_is_an_error():
    x = STYLES["function"][2]
    with pytest.raises(ValueError, match="no fault site: _FullPrecisionOnly"):
        simulate_chips(_FullPrecisionOnly(), x, fault=Fault("additive", 0.1), num_samples=1, key=KEY)
    out = simulate_chips(
        _FullPrecisionOnly(),
        x,
        fault=Fault("additive", 0.1, include_full_precision=True),
        num_chips=2,
        num_samples=1,
        key=KEY,
    )
    assert not np.allclose(out[0], out[1])


def test_fault_given_as_context_says_how_to_make_one():
    layer = QuantDense(5, 2, rngs=nnx.Rngs(0))
    x = STYLES["function"][2]
    with pytest.raises(TypeError, match=r"FaultContext\(fault, chip_key\)"):
        layer(x, key=KEY, faults=Fault("bit_flip", 0.1))
    assert layer(x, faults=FaultContext(Fault("bit_flip", 0.0), KEY)).shape == (6, 2)


def test_simulate_does_not_touch_the_callers_model():
    model = _FullPrecisionOnly()
    model.dense.fault_id = 41  # as a user might leave it: the simulator numbers its own copy
    before = nnx.graphdef(model)
    simulate_chips(
        model,
        STYLES["function"][2],
        fault=Fault("additive", 0.1, include_full_precision=True),
        num_chips=2,
        num_samples=1,
        key=KEY,
    )
    assert model.dense.fault_id == 41
    assert nnx.graphdef(model) == before


def test_documented_example_runs(capsys):
    import pathlib
    import runpy

    runpy.run_path(str(pathlib.Path(__file__).parents[1] / "docs" / "examples" / "any_model.py"))
    out = capsys.readouterr().out
    for name, shape in (("linen", "(100, 10, 8, 4)"), ("nnx", "(100, 1, 8, 4)"), ("function", "(100, 1, 8, 4)")):
        assert f"{name}" in out and shape in out, out
    assert "ValueError: no fault site" in out


def test_the_docs_other_examples_run():
    """Every other python block of docs/any_model.md runs, in order, as a reader would paste them
    (the first is docs/examples/any_model.py, run above)."""
    import pathlib
    import re

    docs = pathlib.Path(__file__).parents[1] / "docs"
    example = (docs / "examples" / "any_model.py").read_text().strip()
    blocks = re.findall(r"```python\n(.*?)```", (docs / "any_model.md").read_text(), re.S)
    others = [b for b in blocks if b.strip() != example]
    assert len(blocks) - len(others) == 1 and len(others) >= 2, "the md should show the example file once"
    namespace: dict = {}
    for block in others:
        exec(compile(block, "docs/any_model.md", "exec"), namespace)
