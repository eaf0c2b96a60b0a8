"""Your own fault model, and ``Fault`` as a pytree whose level may be traced.

A custom kind ``fn(key, array, level)`` must give what a hand loop over chips gives (chip ``i`` is
``fold_in(chip_root, i)``, a leaf's key ``fold_in(chip, crc32(path))``), through both model kinds
of ``simulate_chips``, with chunks, slices and ``compile_for``; a custom function that calls a
built-in model must reproduce that built-in kind; a traced level under ``jit`` and a ``vmap`` over
levels must equal the concrete calls; integer leaves keep their codes exact.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import runpy
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext, inject, number_fault_sites, simulate_chips
from invnorm_jax.faults import models as fm
from invnorm_jax.functional.quantize import quantize_symmetric
from invnorm_jax.nn import BinaryDense, QuantDense

KEY = jax.random.key(3)
TOL = {"rtol": 1e-5, "atol": 1e-5}
CHIPS = 5


def dead_columns(key, w, level):
    """Each output column of ``w`` reads 0 with probability ``level``."""
    alive = jax.random.bernoulli(key, 1.0 - level, (w.shape[-1],))
    return jnp.where(alive, w, 0).astype(w.dtype)


def additive_mine(key, w, level):
    """A user's function that is the built-in additive variation."""
    return fm.additive_variation(key, w, sigma=level)


def flips_mine(key, w, level, *, bits):
    """A user's function that is the built-in bit-flip (it takes ``bits``)."""
    return fm.bit_flip(key, w, rate=level, bits=bits)


def preact_additive_mine(key, x, level):
    """Pre-activation noise of one example's activation, drawn from the key alone."""
    return x + level * jax.random.normal(key, x.shape, x.dtype)


def leaf_key(chip_key, name):
    return jax.random.fold_in(chip_key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def hand_chips(key, n):
    chip_root, sample_root = jax.random.split(key)
    return [jax.random.fold_in(chip_root, i) for i in range(n)], sample_root


def plain_fn(p, x, key):
    return jnp.tanh(x @ p["w1"]) @ p["w2"] + p["b"]


PARAMS = {
    "w1": jnp.asarray(np.random.default_rng(0).normal(size=(6, 8)), jnp.float32),
    "w2": jnp.asarray(np.random.default_rng(1).normal(size=(8, 3)), jnp.float32),
    "b": jnp.zeros(3),
}
X = jnp.asarray(np.random.default_rng(2).normal(size=(5, 6)), jnp.float32)


class TinyBinary(nnx.Module):
    """An 8-bit dense layer (k-bit codes) then a binary one (±1 weights, sign() input)."""

    def __init__(self, rngs):
        self.fc1 = QuantDense(6, 8, bits=8, act_bits=None, rngs=rngs)
        self.fc2 = BinaryDense(8, 3, rngs=rngs)
        number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        return self.fc2(self.fc1(x, faults=faults), key=key, faults=faults)


@pytest.fixture(scope="module")
def model():
    return TinyBinary(nnx.Rngs(0))


def module_loop(model, x, fault, n=CHIPS):
    """The library path by hand: one FaultContext per chip (the model is deterministic)."""
    chips, _ = hand_chips(KEY, n)
    return np.asarray([model(x, faults=FaultContext(fault, c)) for c in chips])[:, None]


# --------------------------------------------------------------------------- the function path


def test_custom_kind_through_simulate_chips_equals_a_hand_loop():
    """Chips in chunks of 2, x in slices of 2: each chip's leaves are fn(leaf key, w, level)."""
    out = np.asarray(
        simulate_chips(
            plain_fn,
            X,
            params=PARAMS,
            fault=Fault(dead_columns, 0.4),
            num_chips=CHIPS,
            num_samples=1,
            key=KEY,
            chunk_size=2,
            batch_size=2,
        )
    )
    chips, _ = hand_chips(KEY, CHIPS)
    for i, chip in enumerate(chips):
        faulty = {**PARAMS, **{n: dead_columns(leaf_key(chip, n), PARAMS[n], 0.4) for n in ("w1", "w2")}}
        np.testing.assert_allclose(out[i, 0], plain_fn(faulty, X, None), **TOL)
    zeros = [(out[i, 0] == plain_fn(PARAMS, X, None)).all() for i in range(CHIPS)]
    assert not all(zeros), "dead columns at 0.4 changed no chip"


def test_custom_kind_with_a_stochastic_apply_fn_and_mc_samples():
    def noisy(p, x, key):  # MC dropout of the hidden units
        h = jnp.tanh(x @ p["w1"]) * jax.random.bernoulli(key, 0.7, (x.shape[0], 8))
        return h @ p["w2"]

    out = np.asarray(
        simulate_chips(
            noisy, X, params=PARAMS, fault=Fault(dead_columns, 0.3), num_chips=3, num_samples=2, key=KEY, select="w"
        )
    )
    chips, sample_root = hand_chips(KEY, 3)
    for i, chip in enumerate(chips):
        faulty = {**PARAMS, **{n: dead_columns(leaf_key(chip, n), PARAMS[n], 0.3) for n in ("w1", "w2")}}
        for t in range(2):
            key = jax.random.fold_in(jax.random.fold_in(sample_root, t), 0)
            np.testing.assert_allclose(out[i, t], noisy(faulty, X, key), **TOL)


def test_custom_kind_sees_the_representation_bits_names():
    seen = []

    def code_noise(key, w, level, bits=None):
        seen.append((bits, str(w.dtype)))
        return w + jnp.round(level * jax.random.normal(key, w.shape)).astype(w.dtype)

    out = inject(PARAMS, Fault(code_noise, 3.0), KEY, bits=4, select="w1")
    assert seen == [(4, "int32")]
    codes, scale = quantize_symmetric(PARAMS["w1"], 4, axis=-1)
    want = PARAMS["w1"] + (code_noise(leaf_key(KEY, "w1"), codes, 3.0) - codes) * scale
    np.testing.assert_allclose(out["w1"], want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(out["w1"], PARAMS["w1"])
    inject(PARAMS, Fault(code_noise, 0.1), KEY, select="w1")
    assert seen[-1] == (None, "float32")  # no bits: the float leaf itself
    signs = inject(PARAMS, Fault(lambda k, w, level: -w, 0.0), KEY, bits=1, select="w1")["w1"]
    np.testing.assert_array_equal(signs, -PARAMS["w1"])  # bits=1: sign flipped, magnitude kept


def test_a_custom_function_reproduces_the_builtin_kind_exactly():
    run = lambda fault, **kw: np.asarray(
        simulate_chips(plain_fn, X, params=PARAMS, fault=fault, num_chips=CHIPS, num_samples=1, key=KEY, **kw)
    )
    np.testing.assert_array_equal(run(Fault(additive_mine, 0.2)), run(Fault("additive", 0.2)))
    np.testing.assert_array_equal(run(Fault(flips_mine, 0.1), bits=8), run(Fault("bit_flip", 0.1), bits=8))


# --------------------------------------------------------------------------- the library-module path


def test_custom_weight_fault_through_a_library_model_equals_a_hand_loop(model):
    seen = []

    def scaled(key, w, level, *, bits):
        seen.append(bits)
        return w * (1.0 + level * jax.random.normal(key, w.shape))

    fault = Fault(scaled, 0.3)
    out = np.asarray(simulate_chips(model, X, fault=fault, num_chips=CHIPS, num_samples=1, key=KEY))
    assert sorted(set(seen)) == [1, 8]  # the binary layer's ±1 weights and the 8-bit layer's codes
    np.testing.assert_allclose(out, module_loop(model, X, fault), **TOL)
    # The hook: fn(fold_in(chip, fault_id), deployed codes, level, bits=...).
    chip = hand_chips(KEY, 1)[0][0]
    codes, _ = model.fc1.deployed_weights()
    np.testing.assert_array_equal(
        FaultContext(fault, chip).weights(model.fc1.fault_id, codes, bits=8),
        scaled(jax.random.fold_in(chip, model.fc1.fault_id), codes, 0.3, bits=8),
    )
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "builtin,mine",
    [
        (Fault("bit_flip", 0.1), Fault(flips_mine, 0.1)),
        (Fault("additive", 0.7, site="preactivation"), Fault(preact_additive_mine, 0.7, site="preactivation")),
        (
            Fault("additive", 0.7, site="preactivation", per_inference=True),
            Fault(preact_additive_mine, 0.7, site="preactivation", per_inference=True),
        ),
    ],
    ids=["weights", "preactivation", "per-inference"],
)
def test_a_custom_function_reproduces_the_builtin_kind_on_a_library_model(model, builtin, mine):
    run = lambda fault: np.asarray(simulate_chips(model, X, fault=fault, num_chips=CHIPS, num_samples=2, key=KEY))
    theirs = run(builtin)
    np.testing.assert_allclose(run(mine), theirs, rtol=1e-6, atol=1e-6)
    assert not np.allclose(theirs, run(dataclasses.replace(builtin, level=0.0))), "the fault changed nothing"


def test_a_static_custom_preactivation_fault_is_the_same_for_every_input():
    x = jnp.tile(jnp.linspace(-1.0, 1.0, 6)[None], (4, 1))  # four equal inputs
    static = FaultContext(Fault(preact_additive_mine, 0.5, site="preactivation"), KEY).preactivation(2, x)
    np.testing.assert_array_equal(static, jnp.tile(static[:1], (4, 1)))
    np.testing.assert_allclose(
        static[0], x[0] + 0.5 * jax.random.normal(jax.random.fold_in(KEY, 2), (6,)), rtol=1e-6, atol=1e-6
    )
    reads = FaultContext(Fault(preact_additive_mine, 0.5, site="preactivation", per_inference=True), KEY)
    per_input = np.asarray(reads.preactivation(2, x, key=jax.random.key(9)))
    assert len({row.tobytes() for row in per_input}) == 4, "per_inference: every input its own draw"


# --------------------------------------------------------------------------- compile_for


def test_compile_for_serves_custom_and_builtin_kinds_with_one_compilation():
    traces = []

    def counted(key, w, level):
        traces.append(1)
        return dead_columns(key, w, level)

    program = (Fault("bit_flip", 0.0), Fault(counted, 0.0))
    run = lambda fault, **kw: np.asarray(
        simulate_chips(plain_fn, X, params=PARAMS, fault=fault, bits=1, num_chips=CHIPS, num_samples=1, key=KEY, **kw)
    )
    mine = run(Fault(counted, 0.5), compile_for=program)
    compiled = len(traces)
    flips = run(Fault("bit_flip", 0.2), compile_for=program)
    again = run(Fault(counted, 0.2), compile_for=program)
    assert compiled >= 1 and len(traces) == compiled, "a fault of the program compiled its step again"
    np.testing.assert_allclose(mine, run(Fault(counted, 0.5)), **TOL)
    np.testing.assert_allclose(flips, run(Fault("bit_flip", 0.2)), **TOL)
    np.testing.assert_allclose(again, run(Fault(counted, 0.2)), **TOL)
    assert not np.allclose(mine, again)


def test_compile_for_custom_kinds_at_both_sites_of_a_library_model(model):
    """Integer codes (bit-flips) and float ones (a custom variation), and a custom pre-activation fault."""
    preact = Fault(preact_additive_mine, 0.6, site="preactivation")
    program = (Fault("bit_flip", 0.0), Fault(additive_mine, 0.0), dataclasses.replace(preact, level=0.0))
    for fault in (Fault("bit_flip", 0.1), Fault(additive_mine, 0.2), preact):
        both = simulate_chips(model, X, fault=fault, num_chips=3, num_samples=1, key=KEY, compile_for=program)
        alone = simulate_chips(model, X, fault=fault, num_chips=3, num_samples=1, key=KEY)
        np.testing.assert_allclose(both, alone, **TOL)


# --------------------------------------------------------------------------- a pytree, traced


def test_fault_is_a_pytree_of_its_level():
    fault = Fault(dead_columns, 0.25, site="weights")
    leaves, treedef = jax.tree.flatten(fault)
    assert leaves == [0.25]
    assert jax.tree.structure(Fault(dead_columns, 0.5)) == treedef  # the level is not in the static part
    assert jax.tree.structure(Fault(lambda k, w, level: w, 0.5)) != treedef  # a function by identity
    assert jax.tree.unflatten(treedef, [0.5]) == Fault(dead_columns, 0.5)
    assert dataclasses.replace(fault, level=0.0) == Fault(dead_columns, 0.0)
    assert hash(Fault("additive", 0.0)) == hash(Fault("additive", 0.0))
    with pytest.raises(ValueError, match="must be >= 0"):
        dataclasses.replace(Fault("additive", 0.1), level=-1.0)


def test_a_traced_level_under_jit_equals_the_concrete_call(model):
    concrete = simulate_chips(
        plain_fn, X, params=PARAMS, fault=Fault("additive", 0.1), num_chips=3, num_samples=1, key=KEY
    )
    traced = jax.jit(
        lambda level: simulate_chips(
            plain_fn, X, params=PARAMS, fault=Fault("additive", level), num_chips=3, num_samples=1, key=KEY
        )
    )(0.1)
    np.testing.assert_allclose(traced, concrete, **TOL)
    as_argument = jax.jit(lambda f: simulate_chips(model, X, fault=f, num_chips=3, num_samples=1, key=KEY))
    for fault in (Fault("additive", 0.3, site="preactivation"), Fault(dead_columns, 0.3)):
        np.testing.assert_allclose(
            as_argument(fault), simulate_chips(model, X, fault=fault, num_chips=3, num_samples=1, key=KEY), **TOL
        )


def test_vmap_over_levels_equals_a_loop(model):
    levels = jnp.array([0.0, 0.1, 0.5])
    swept = jax.vmap(lambda level: inject(PARAMS, Fault("additive", level), KEY))(levels)
    mine = jax.vmap(lambda fault: inject(PARAMS, fault, KEY))(Fault(dead_columns, levels))
    for i, level in enumerate(levels.tolist()):
        np.testing.assert_allclose(swept["w1"][i], inject(PARAMS, Fault("additive", level), KEY)["w1"], **TOL)
        np.testing.assert_array_equal(mine["w2"][i], inject(PARAMS, Fault(dead_columns, level), KEY)["w2"])
    np.testing.assert_array_equal(swept["w1"][0], PARAMS["w1"])  # level 0: fault-free
    chip = hand_chips(KEY, 1)[0][0]
    preact = lambda level: model(X, faults=FaultContext(Fault("additive", level, site="preactivation"), chip))
    np.testing.assert_allclose(jax.vmap(preact)(levels), [preact(float(v)) for v in levels], **TOL)


# --------------------------------------------------------------------------- integer leaves


def test_bit_faults_on_integer_leaves_act_on_the_stored_codes():
    codes = jnp.asarray(np.random.default_rng(5).integers(-128, 128, size=(6, 5)), jnp.int8)
    out = inject({"q": codes}, Fault("bit_flip", 0.2), KEY, bits=8, select="q")["q"]
    assert out.dtype == jnp.int8
    np.testing.assert_array_equal(out, fm.bit_flip(leaf_key(KEY, "q"), codes, rate=0.2, bits=8))
    small = jnp.clip(codes, -8, 7)  # 4-bit codes stored in int8
    out4 = inject({"q": small}, Fault("stuck_at", 0.5), KEY, bits=4, select="q")["q"]
    np.testing.assert_array_equal(
        out4, fm.stuck_at(leaf_key(KEY, "q"), small.astype(jnp.int32), rate=0.5, bits=4).astype(jnp.int8)
    )
    signs = inject({"q": jnp.array([[-128, -3, 0, 5]], jnp.int8)}, Fault("bit_flip", 1.0), KEY, bits=1, select="q")
    np.testing.assert_array_equal(signs["q"], [[127, 3, 0, -5]])  # +128 saturates at int8's 127; sign(0) is +
    kept = inject({"q": codes}, Fault(lambda k, w, level: w // 2, 0.0), KEY, select="q")["q"]  # integers: kept
    np.testing.assert_array_equal(kept, codes // 2)


def test_a_custom_kind_must_be_hashable_and_its_level_a_number():
    class Unhashable:
        __hash__ = None

        def __call__(self, key, w, level):
            return w

    with pytest.raises(TypeError, match="is not hashable"):
        Fault(Unhashable(), 0.1)
    with pytest.raises(ValueError, match="is NaN"):
        Fault(dead_columns, float("nan"))
    assert Fault(dead_columns, -2.0).level == -2.0  # the user's units: negative levels are allowed


# --------------------------------------------------------------------------- the doc's example


def test_the_docs_example_runs(tmp_path, capsys):
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "any_model.md").read_text()
    section = doc[doc.index("## Your own fault model") :]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, re.DOTALL)[:2]
    (tmp_path / "example.py").write_text(code)
    runpy.run_path(str(tmp_path / "example.py"))
    printed = capsys.readouterr().out.splitlines()
    assert printed[1:3] == ["same as Fault('additive'): True", "jit(run)(0.2) == run(0.2): True"]
    # The doc shows what it prints (numbers to their last printed digit, for other CPUs' rounding).
    number = r"\d+\.\d+"
    assert [re.sub(number, "#", line) for line in printed] == [re.sub(number, "#", line) for line in shown.splitlines()]
    got, want = (np.array(re.findall(number, text), float) for text in ("\n".join(printed), shown))
    np.testing.assert_allclose(got, want, atol=2e-3)
