"""Tests of the chip simulator ``invnorm_jax.faults.simulate_chips``.

Behaviour, not lines: the simulator must equal a plain Python loop over chips and MC samples
(with the same keys), whatever the chunking or the number of devices; chip ``i`` is the same
chip however many are simulated; a chip's faults are static over inputs and samples; a zero
level is exactly the fault-free model; one compilation serves every level of a sweep; and bad
arguments fail early with a message that names them.

Two tiny models keep the file fast on a 2-core CPU: a binary CNN on 8x8x1 images (full-precision
stem and classifier, inverted-norm sites, one binary conv: the ``bits=1`` weight site and the
``preactivation`` site) and an 8-bit MLP (``bits=8`` codes: the k-bit weight site, and no
binary activation). Most runs share one shape so that they share compilations (XLA's CPU
compile, not the simulation, is what costs time here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext, chip_keys, chunking, number_fault_sites, sample_keys, simulate_chips
from invnorm_jax.faults import models as fm
from invnorm_jax.faults import simulate as simulate_module
from invnorm_jax.models.common import Call, global_avg_pool, hardtanh
from invnorm_jax.nn import BinaryConv, QuantConv, QuantDense, norm_site

# Jitted+vmapped vs eager evaluation may round differently in the last float bits.
TOL = dict(rtol=1e-5, atol=1e-5)


def _uniform_init(key, shape, dtype=jnp.float32):
    """LeCun-uniform from NumPy, seeded by the key: saves a threefry compilation per shape."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    limit = np.sqrt(3.0 / np.prod(shape[:-1]))
    return jnp.asarray(rng.uniform(-limit, limit, shape), dtype)


class TinyBNN(nnx.Module):
    """fp stem -> site -> hardtanh -> binary conv (sign inputs) -> site -> pool -> fp dense."""

    def __init__(self, *, rngs: nnx.Rngs, width: int = 4, classes: int = 3):
        init = dict(kernel_init=_uniform_init, rngs=rngs)
        self.stem = QuantConv(1, width, (3, 3), bits=None, act_bits=None, use_bias=False, **init)
        self.site0 = norm_site("proposed", width, rngs=rngs)
        self.conv = BinaryConv(width, 2 * width, (3, 3), strides=2, **init)
        self.site1 = norm_site("proposed", 2 * width, rngs=rngs)
        self.head = QuantDense(2 * width, classes, bits=None, act_bits=None, **init)
        number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        call = Call(key, train, deterministic, faults)
        h = hardtanh(self.site0(self.stem(x, **call.at(0)), **call.at(1)))
        h = hardtanh(self.site1(self.conv(h, **call.at(2)), **call.at(3)))
        return self.head(global_avg_pool(h), **call.at(4))


class TinyQuantMLP(nnx.Module):
    """8-bit dense -> inverted-norm site -> relu -> 8-bit dense: k-bit codes, no sign()."""

    def __init__(self, *, rngs: nnx.Rngs, features: int = 16, hidden: int = 8, classes: int = 3):
        init = dict(kernel_init=_uniform_init, rngs=rngs)
        self.fc1 = QuantDense(features, hidden, bits=8, act_bits=8, **init)
        self.site = norm_site("proposed", hidden, rngs=rngs)
        self.fc2 = QuantDense(hidden, classes, bits=8, act_bits=8, **init)
        number_fault_sites(self)

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        call = Call(key, train, deterministic, faults)
        h = jax.nn.relu(self.site(self.fc1(x, **call.at(0)), **call.at(1)))
        return self.fc2(h, **call.at(2))


KEY = jax.random.key(7)
# One shape for most runs, so that tests share compilations (the level is traced, so a fault
# kind at any level reuses its compiled simulation).
CHIPS, SAMPLES = 10, 2
WEIGHTS = Fault("bit_flip", 0.1)
PREACT = Fault("additive", 0.5, site="preactivation")

_DEVICES_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from flax import nnx
    from invnorm_jax.faults import Fault, simulate_chips
    from test_simulate import TinyBNN
    assert jax.local_device_count() == 4, jax.devices()
    model = TinyBNN(rngs=nnx.Rngs(0))
    x = np.random.default_rng(42).standard_normal((3, 8, 8, 1)).astype(np.float32)
    worst = 0.0
    # 6 chips on 4 devices: 2 per device, 2 padding chips dropped; 8 chips: no padding.
    for fault, chips in ((Fault("bit_flip", 0.1), 6), (Fault("additive", 0.5, site="preactivation"), 8)):
        run = lambda d: np.asarray(simulate_chips(model, x, fault=fault, num_chips=chips, num_samples=2,
                                                 key=jax.random.key(7), num_devices=d))
        four, one = run(4), run(1)
        assert four.shape == one.shape == (chips, 2, 3, 3), four.shape
        assert not np.allclose(four[0], four[1]), "chips should differ"
        worst = max(worst, float(np.max(np.abs(four - one))))
    print(f"MAXDIFF {worst!r}")
    """
)


@pytest.fixture(scope="module", autouse=True)
def four_device_run():
    """Start the 4-device subprocess with the module's first test, so that it runs alongside."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([here, os.path.dirname(here), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEVICES_SCRIPT],
        env=env,
        cwd=here,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def bnn():
    return TinyBNN(rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def mlp():
    return TinyQuantMLP(rngs=nnx.Rngs(1))


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(np.random.default_rng(42).standard_normal((4, 8, 8, 1)), jnp.float32)


@pytest.fixture(scope="module")
def vectors():
    return jnp.asarray(np.random.default_rng(43).standard_normal((4, 16)), jnp.float32)


def simulate(model, x, fault, **kwargs):
    """``simulate_chips`` with the module's common shape, as a NumPy array."""
    kwargs = {**dict(num_chips=CHIPS, num_samples=SAMPLES, key=KEY), **kwargs}
    return np.asarray(simulate_chips(model, x, fault=fault, **kwargs))


@pytest.fixture(scope="module")
def bnn_weights(bnn, images):
    return simulate(bnn, images, WEIGHTS)


@pytest.fixture(scope="module")
def bnn_preact(bnn, images):
    return simulate(bnn, images, PREACT)


def python_loop(model, x, fault, *, num_chips, num_samples=SAMPLES, key=KEY, level=None, deterministic=False):
    """The reference: every chip, every sample, one direct model call each."""
    chips = chip_keys(key, num_chips)
    samples = sample_keys(key, num_samples)
    out = []
    for i in range(num_chips):
        faults = FaultContext(fault, chips[i], level)
        out.append([model(x, key=samples[t], deterministic=deterministic, faults=faults) for t in range(num_samples)])
    return np.asarray(out)


def fault_free(model, x, *, num_samples=SAMPLES, key=KEY):
    """The model without faults, with the simulator's MC sample keys: ``[samples, batch, ...]``."""
    samples = sample_keys(key, num_samples)
    return np.asarray([model(x, key=samples[t]) for t in range(num_samples)])


# --------------------------------------------------------------------------- loop equality


def test_weight_faults_equal_python_loop(bnn, images, bnn_weights):
    assert bnn_weights.shape == (CHIPS, SAMPLES, 4, 3)
    np.testing.assert_allclose(bnn_weights[:3], python_loop(bnn, images, WEIGHTS, num_chips=3), **TOL)


def test_preactivation_faults_equal_python_loop(bnn, images, bnn_preact):
    assert bnn_preact.shape == (CHIPS, SAMPLES, 4, 3)
    np.testing.assert_allclose(bnn_preact[:3], python_loop(bnn, images, PREACT, num_chips=3), **TOL)


def test_kbit_faults_equal_python_loop(mlp, vectors):
    fault = Fault("bit_flip", 0.05)
    out = simulate(mlp, vectors, fault)
    np.testing.assert_allclose(out[:3], python_loop(mlp, vectors, fault, num_chips=3), **TOL)


# --------------------------------------------------------------------------- chunks, devices, identity


def test_chunked_equals_unchunked(bnn, images, bnn_weights, bnn_preact):
    # The fixtures ran at the per-site default chunk; 3 does not divide 10 (lax.map's
    # remainder path), 10 vmaps every chip in one step.
    for chunk in (1, 3, 10):
        np.testing.assert_allclose(simulate(bnn, images, WEIGHTS, chunk_size=chunk), bnn_weights, **TOL)
    for chunk in (3, 10):
        np.testing.assert_allclose(simulate(bnn, images, PREACT, chunk_size=chunk), bnn_preact, **TOL)


def test_chip_identity_does_not_depend_on_num_chips(bnn, images, bnn_weights):
    few = simulate(bnn, images, WEIGHTS, num_chips=4)
    np.testing.assert_allclose(bnn_weights[:4], few, **TOL)


def test_four_devices_equal_one_device(four_device_run):
    stdout, stderr = four_device_run.communicate(timeout=300)
    assert four_device_run.returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.startswith("MAXDIFF ")]
    assert lines, stdout
    assert float(lines[-1].split()[1]) <= 1e-5, lines[-1]


# --------------------------------------------------------------------------- static faults


@pytest.mark.parametrize(
    "fault", [Fault("bit_flip", 0.2), Fault("additive", 1.0, site="preactivation")], ids=["weights", "preactivation"]
)
def test_static_faults_same_for_every_sample_and_input(bnn, images, fault):
    # A deterministic model: the only randomness left is the chip's faults, drawn once per chip.
    common = dict(num_samples=3, deterministic=True)
    batch = simulate(bnn, images, fault, **common)
    np.testing.assert_array_equal(batch, np.broadcast_to(batch[:, :1], batch.shape))
    assert not np.allclose(batch[0], batch[1]), "chips 0 and 1 should differ"
    # batch_size=1: every input evaluated alone (one call each) on the same chips.
    alone = simulate(bnn, images, fault, batch_size=1, **common)
    np.testing.assert_allclose(alone, batch, **TOL)


def test_per_inference_preactivation_differs_between_samples(bnn, images):
    fault = Fault("additive", 1.0, site="preactivation", per_inference=True)
    noisy = simulate(bnn, images, fault, num_samples=3, deterministic=True)
    for t in (1, 2):
        assert not np.allclose(noisy[:, 0], noisy[:, t]), f"sample {t} repeats sample 0's read noise"
    reference = python_loop(bnn, images, fault, num_chips=2, num_samples=3, deterministic=True)
    np.testing.assert_allclose(noisy[:2], reference, **TOL)


# --------------------------------------------------------------------------- levels

ZERO_CASES = [
    ("bnn", WEIGHTS),
    ("bnn", Fault("additive", 0.0)),
    ("bnn", Fault("multiplicative", 0.0)),
    ("bnn", Fault("uniform", 0.0)),
    ("bnn", Fault("stuck_at", 0.0)),
    ("bnn", PREACT),
    ("mlp", Fault("bit_flip", 0.0)),
    ("mlp", Fault("stuck_at", 0.0)),
]


@pytest.mark.parametrize("which,fault", ZERO_CASES, ids=[f"{w}-{f.kind}-{f.site}" for w, f in ZERO_CASES])
def test_zero_level_is_fault_free(which, fault, request):
    model = request.getfixturevalue(which)
    x = request.getfixturevalue("images" if which == "bnn" else "vectors")
    clean = fault_free(model, x)
    out = simulate(model, x, fault, level=0.0)
    for chip in range(CHIPS):
        np.testing.assert_allclose(out[chip], clean, **TOL)
    nonzero = {"bit_flip": 0.2, "stuck_at": 0.4}.get(fault.kind, 0.5)
    faulty = simulate(model, x, fault, level=nonzero)
    assert not np.allclose(faulty[0], faulty[1]), "two chips at a nonzero level should differ"
    assert not np.allclose(faulty[0], clean), "a nonzero level should change the outputs"


class _CountCompiles:
    """Counts the chip simulator's step compilations while active (JAX's own monitoring event;
    small eager ops such as making n chip keys compile too, and are not counted)."""

    def __enter__(self):
        from jax._src import dispatch

        self.count, self._event = 0, dispatch.BACKEND_COMPILE_EVENT
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, fun_name="", **kwargs):
        self.count += event == self._event and "chip_step" in fun_name

    def __exit__(self, *exc):
        from jax._src import monitoring

        monitoring.unregister_event_duration_listener(self._listen)


def test_traced_level_one_compilation_per_sweep(bnn, images, bnn_weights):
    with _CountCompiles() as compiles:
        zero = simulate(bnn, images, WEIGHTS, level=0.0)
        high = simulate(bnn, images, WEIGHTS, level=jnp.float32(0.3))
    assert compiles.count == 0, "a new level recompiled the simulation"
    assert not np.allclose(zero, bnn_weights) and not np.allclose(high, bnn_weights)
    np.testing.assert_allclose(zero[0], fault_free(bnn, images), **TOL)


def test_one_compilation_for_any_chip_count_and_any_number_of_slices(bnn, images, monkeypatch):
    """Calls of chips_per_call() chips: a fault-free chip, 1, 3, 4, 9 and 13 chips (calls of 4 whose
    active chips are a traced count) and twice the inputs in slices of the same shape compile one call."""
    monkeypatch.setattr(chunking, "CHIPS_PER_CALL", 4)
    base = simulate(bnn, images, WEIGHTS, num_chips=4)  # compiles the call of 4 chips
    twice = jnp.concatenate([images, images[::-1]])
    with _CountCompiles() as compiles:
        healthy = simulate(bnn, images, WEIGHTS, num_chips=1, level=0.0)
        one, three = simulate(bnn, images, WEIGHTS, num_chips=1), simulate(bnn, images, WEIGHTS, num_chips=3)
        nine = simulate(bnn, images, WEIGHTS, num_chips=9)
        more = simulate(bnn, images, WEIGHTS, num_chips=13)
        sliced = simulate(bnn, twice, WEIGHTS, num_chips=4, batch_size=len(images))
    assert compiles.count == 0, f"{compiles.count} compilations; the compiled call should be reused"
    np.testing.assert_array_equal(nine[:4], base)  # chip i is chip i, in whichever call
    np.testing.assert_array_equal(more[:9], nine)
    np.testing.assert_array_equal(three, base[:3])
    np.testing.assert_array_equal(one, base[:1])
    assert one.shape[0] == 1 and three.shape[0] == 3
    np.testing.assert_allclose(healthy[0], fault_free(bnn, images), **TOL)
    np.testing.assert_array_equal(sliced[:, :, : len(images)], base)
    assert sliced.shape == (4, SAMPLES, 2 * len(images), 3) and more.shape[0] == 13
    np.testing.assert_allclose(more, python_loop(bnn, images, WEIGHTS, num_chips=13), **TOL)


def test_compile_effort_changes_compile_options_not_outputs(bnn, images, bnn_weights, monkeypatch):
    """INVNORM_XLA_OPT_LEVEL picks the chip steps' XLA level (a separate compilation each); the
    outputs agree to float32 rounding at every level (XLA may fuse and vectorize differently)."""
    from invnorm_jax.faults.compiling import chip_compiler_options

    for value, want in [("", 1), ("auto", 1), ("2", 2), ("default", None)]:
        monkeypatch.setenv("INVNORM_XLA_OPT_LEVEL", value)
        assert chip_compiler_options("cpu") == (() if want is None else (("xla_backend_optimization_level", want),))
    monkeypatch.setenv("INVNORM_XLA_OPT_LEVEL", "auto")
    assert chip_compiler_options("gpu") == ()  # accelerators keep XLA's default
    for bad in ("4", "fast", "-1"):
        monkeypatch.setenv("INVNORM_XLA_OPT_LEVEL", bad)
        with pytest.raises(ValueError, match=r"INVNORM_XLA_OPT_LEVEL=.*expected 0, 1, 2, 3"):
            simulate(bnn, images, WEIGHTS)
    for value in ("1", "default"):
        monkeypatch.setenv("INVNORM_XLA_OPT_LEVEL", value)
        with _CountCompiles() as compiles:
            out = simulate(bnn, images, WEIGHTS)
        assert compiles.count == 1, f"level {value}: {compiles.count} compilations, expected its own one"
        np.testing.assert_allclose(out, bnn_weights, **TOL)


def test_chips_per_call():
    per_call = simulate_module.chips_per_call
    assert per_call() == simulate_module.CHIPS_PER_CALL == 20  # for any number of chips
    assert per_call(10) == 20 and per_call(32) == 32 and per_call(3) == 18  # whole chunks; at least one
    assert per_call(1, num_devices=4) == 20 and per_call(8, num_devices=4) == 32


def test_a_small_run_keeps_the_chunk_and_the_compiled_call(bnn, images, monkeypatch):
    """With chunk_size=3, runs of 1, 2 and 7 chips share one compiled call (of 6 chips, 2 chunks):
    the chunk is not cut down to a small run's chips, and the chips equal those of a chunk-1 run."""
    monkeypatch.setattr(chunking, "CHIPS_PER_CALL", 6)
    seven = simulate(bnn, images, WEIGHTS, num_chips=7, chunk_size=3)
    with _CountCompiles() as compiles:
        one = simulate(bnn, images, WEIGHTS, num_chips=1, chunk_size=3)
        two = simulate(bnn, images, WEIGHTS, num_chips=2, chunk_size=3)
    assert compiles.count == 0, f"{compiles.count} compilations for a smaller run with the same chunk"
    np.testing.assert_array_equal(one, seven[:1])
    np.testing.assert_array_equal(two, seven[:2])
    np.testing.assert_allclose(seven, simulate(bnn, images, WEIGHTS, num_chips=7, chunk_size=1), **TOL)


def test_inside_a_callers_jit_the_step_is_traced_once(bnn, images, bnn_weights):
    """Under jit the chip loop is one loop: one chip_step in the program however many chips."""
    graphdef, state = nnx.split(bnn)

    def run(state, x):
        return simulate_chips(
            nnx.merge(graphdef, state), x, fault=WEIGHTS, num_chips=CHIPS, num_samples=SAMPLES, key=KEY
        )

    text = str(jax.make_jaxpr(run)(state, images))
    assert text.count("name=chip_step") == 1, text.count("name=chip_step")
    np.testing.assert_allclose(np.asarray(jax.jit(run)(state, images)), bnn_weights, **TOL)


def test_gradient_through_simulate_chips_inside_a_callers_jit():
    """Inside a caller's jit every chip runs in a loop of static length, which reverse-mode
    differentiation goes through; the gradient equals that of a Python loop over the chips'
    faulty copies (faults.inject) and the samples."""
    from invnorm_jax.faults import inject

    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    w0 = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2)), jnp.float32)
    apply_fn = lambda p, x, key: jnp.tanh(x @ p["w"])  # noqa: E731
    fault = Fault("additive", 0.3)

    def total(w):
        return simulate_chips(
            apply_fn, x, params={"w": w}, fault=fault, num_chips=CHIPS, num_samples=SAMPLES, key=KEY
        ).sum()

    def loop(w):
        chips, samples = chip_keys(KEY, CHIPS), sample_keys(KEY, SAMPLES)
        return sum(
            apply_fn(inject({"w": w}, fault, chips[i]), x, jax.random.fold_in(samples[t], 0)).sum()
            for i in range(CHIPS)
            for t in range(SAMPLES)
        )

    grad = jax.jit(jax.grad(total))(w0)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.grad(loop)(w0)), rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(grad)).min() > 0


def test_last_slice_is_padded_not_recompiled(bnn, images, bnn_weights):
    """Slices of 3 of 4 inputs: the last slice (1 input) is padded to 3, one compilation for both,
    and the outputs equal the whole batch's."""
    with _CountCompiles() as compiles:
        sliced = simulate(bnn, images, WEIGHTS, batch_size=3)
    assert compiles.count == 1, f"{compiles.count} compilations for two slices of one shape"
    np.testing.assert_allclose(sliced, bnn_weights, **TOL)


@pytest.mark.parametrize(
    "per_chip, budget, chips, want",
    [
        (10, 1000, 100, 100),  # 100 fit: one step
        (40, 1000, 100, 25),  # 25 fit: four steps of 25
        (30, 1000, 100, 25),  # 33 fit: four steps of 25, not 33 + 33 + 33 + 1 padded to 33
        (16, 1024, 100, 50),  # 64 fit: two steps of 50
        (5000, 1000, 100, 1),  # not even one fits: one at a time
        (1, 10**9, 1000, 125),  # at most MAX_ACCELERATOR_CHUNK (128): 8 steps of 125
    ],
)
def test_chunk_for_budget(per_chip, budget, chips, want):
    got = simulate_module.chunk_for_budget(per_chip, budget, chips)
    assert got == want
    steps = -(-chips // got)
    assert got <= max(1, budget // per_chip)  # never over the budget (but at least one chip)
    assert steps * got - chips < steps  # the chips are spread evenly: under one padding chip per step


def test_accelerator_chunk_follows_the_device_memory(bnn, images, bnn_weights, monkeypatch):
    """Off the CPU the chunk comes from the compiled step's memory and the device's free memory;
    the outputs do not depend on it."""

    class Device:
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit, "bytes_in_use": 0}

    chosen = []
    real = chunking.chunk_for_budget
    monkeypatch.setattr(simulate_module.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(chunking, "chunk_for_budget", lambda *a, **k: chosen.append(real(*a, **k)) or chosen[-1])
    for limit in (1, 1 << 40):
        monkeypatch.setattr(simulate_module.jax, "local_devices", lambda limit=limit: [Device(limit)])
        np.testing.assert_allclose(simulate(bnn, images, WEIGHTS), bnn_weights, **TOL)
    assert chosen == [1, CHIPS], chosen  # no room: one chip per step; room: every chip in one step


# --------------------------------------------------------------------------- bad input


class _NoFaultSites(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones((16, 3)))

    def __call__(self, x, *, key=None, train=False, deterministic=False, faults=None):
        return x @ self.w[...]


def test_bad_fault_descriptions_raise():
    with pytest.raises(ValueError, match="kind='bitflip' is unknown"):
        Fault("bitflip", 0.1)
    with pytest.raises(ValueError, match="site='activation' is unknown"):
        Fault("additive", 0.1, site="activation")
    with pytest.raises(ValueError, match="level=-0.1 must be >= 0"):
        Fault("additive", -0.1)
    with pytest.raises(ValueError, match="level=nan must be >= 0"):
        Fault("additive", float("nan"))
    with pytest.raises(ValueError, match="level=1.5 is a probability"):
        Fault("bit_flip", 1.5)
    with pytest.raises(ValueError, match="level=2.0 is a probability"):
        Fault("stuck_at", 2.0)
    with pytest.raises(ValueError, match="not defined at site='preactivation'"):
        Fault("bit_flip", 0.1, site="preactivation")
    with pytest.raises(ValueError, match="per_inference"):
        Fault("additive", 0.1, per_inference=True)


def test_bad_levels_and_bits_in_fault_models_raise():
    codes = jnp.zeros(4, jnp.int32)
    for bits in (0, 17):
        with pytest.raises(ValueError, match=f"bits={bits} is out of range"):
            fm.bit_flip(jax.random.key(0), codes, rate=0.1, bits=bits)
    with pytest.raises(ValueError, match="rate=1.5 is out of range"):
        fm.bit_flip(jax.random.key(0), codes, rate=1.5, bits=8)
    with pytest.raises(ValueError, match="sigma=-1.0 is out of range"):
        fm.additive_variation(jax.random.key(0), codes, sigma=-1.0)


def test_bad_simulate_arguments_raise(bnn, mlp, images, vectors):
    call = dict(num_samples=1, key=KEY)
    with pytest.raises(TypeError, match="must be an invnorm_jax.faults.Fault"):
        simulate_chips(bnn, images, fault=("bit_flip", 0.1), **call)
    with pytest.raises(ValueError, match="num_chips=0 must be an integer >= 1"):
        simulate_chips(bnn, images, fault=WEIGHTS, num_chips=0, **call)
    with pytest.raises(ValueError, match="num_samples=0 must be an integer >= 1"):
        simulate_chips(bnn, images, fault=WEIGHTS, num_chips=2, num_samples=0, key=KEY)
    with pytest.raises(ValueError, match="chunk_size=0 must be an integer >= 1"):
        simulate_chips(bnn, images, fault=WEIGHTS, num_chips=2, chunk_size=0, **call)
    with pytest.raises(ValueError, match="batch_size=0 must be an integer >= 1"):
        simulate_chips(bnn, images, fault=WEIGHTS, num_chips=2, batch_size=0, **call)
    with pytest.raises(ValueError, match="num_devices=0 must be in 1.."):
        simulate_chips(bnn, images, fault=WEIGHTS, num_chips=2, num_devices=0, **call)
    # level= overrides fault.level and must pass the same checks
    with pytest.raises(ValueError, match="level=1.5 is out of range"):
        simulate_chips(bnn, images, fault=WEIGHTS, level=1.5, num_chips=2, **call)
    with pytest.raises(ValueError, match="level=-0.5 is out of range"):
        simulate_chips(bnn, images, fault=Fault("additive", 0.0), level=-0.5, num_chips=2, **call)
    for model in (mlp, _NoFaultSites()):  # 8-bit codes, and no fault site at all: no sign()
        with pytest.raises(ValueError, match="site='preactivation' needs binary activations"):
            simulate_chips(model, vectors, fault=Fault("additive", 0.1, site="preactivation"), num_chips=2, **call)
    with pytest.raises(ValueError, match="needs a quantized representation"):
        simulate_chips(bnn, images, fault=Fault("bit_flip", 0.1, include_full_precision=True), num_chips=2, **call)


def test_bad_bits_on_a_layer_raise(vectors):
    broken = TinyQuantMLP(rngs=nnx.Rngs(1))
    broken.fc1.bits = 17  # past the constructor's check: the simulator must still refuse
    with pytest.raises(ValueError, match="bits=17"):
        simulate_chips(broken, vectors, fault=Fault("bit_flip", 0.1), num_chips=2, num_samples=1, key=KEY)


# --------------------------------------------------------------------------- one step for every fault


PER_INFERENCE = Fault("additive", 0.5, site="preactivation", per_inference=True)


def test_compile_for_one_compilation_serves_every_fault_with_the_same_outputs(bnn, images, bnn_weights, bnn_preact):
    """A step compiled for bit-flips, static and per-inference pre-activation noise (the kind picked at
    run time) gives each fault's own outputs, compiles once, and level 0 stays the fault-free model."""
    program = (WEIGHTS, PREACT, PER_INFERENCE)
    with _CountCompiles() as compiles:
        flips = simulate(bnn, images, WEIGHTS, compile_for=program)
        first = compiles.count
        preact = simulate(bnn, images, PREACT, compile_for=program)
        reads = simulate(bnn, images, PER_INFERENCE, compile_for=program)
        healthy = simulate(bnn, images, WEIGHTS, num_chips=1, level=0.0, compile_for=program)
    assert first == 1 and compiles.count == 1, f"{compiles.count} compilations for one program of three faults"
    np.testing.assert_allclose(flips, bnn_weights, **TOL)
    np.testing.assert_allclose(preact, bnn_preact, **TOL)
    np.testing.assert_allclose(reads, simulate(bnn, images, PER_INFERENCE), **TOL)
    np.testing.assert_allclose(healthy[0], fault_free(bnn, images), **TOL)
    assert not np.allclose(flips, preact) and not np.allclose(preact, reads)


def test_compile_for_kbit_codes_mixes_integer_and_float_faults(mlp, vectors):
    """Bit-flips keep the 8-bit codes integer, variations make them float: the switch promotes, the
    values stay each fault's own (and equal a Python loop over chips)."""
    program = (Fault("bit_flip", 0.05), Fault("multiplicative", 0.2))
    for fault in program:
        both = simulate(mlp, vectors, fault, compile_for=program)
        np.testing.assert_allclose(both, simulate(mlp, vectors, fault), **TOL)
        np.testing.assert_allclose(both[:2], python_loop(mlp, vectors, fault, num_chips=2), **TOL)


def test_compile_for_a_function_with_params():
    """The functional path (any apply_fn): one step for bit-flips of the 1-bit signs and additive
    variation, each equal to its own run."""
    params = {"w": jnp.asarray(np.random.default_rng(3).standard_normal((6, 4)), jnp.float32)}
    x = jnp.asarray(np.random.default_rng(4).standard_normal((5, 6)), jnp.float32)
    apply_fn = lambda p, x, key: jnp.tanh(x @ p["w"])
    program = (Fault("bit_flip", 0.3), Fault("additive", 0.5))
    for fault in program:
        run = lambda **kw: np.asarray(
            simulate_chips(apply_fn, x, params=params, fault=fault, num_chips=4, num_samples=1, key=KEY, **kw)
        )
        # bits=1 is the bit-flips' representation; alone, the additive fault has no use for it (refused).
        np.testing.assert_allclose(
            run(compile_for=program, bits=1), run(bits=1 if fault.kind == "bit_flip" else None), **TOL
        )


def test_fault_choice_keeps_binary_codes_only_if_every_choice_does():
    from invnorm_jax.faults import FaultChoice
    from invnorm_jax.nn.lowp import codes_stay_binary

    chip = lambda *faults: FaultChoice(faults, jax.random.key(0), 0, 0.1)
    assert codes_stay_binary(chip(WEIGHTS, PREACT, PER_INFERENCE))
    assert not codes_stay_binary(chip(WEIGHTS, Fault("additive", 0.1)))
    with pytest.raises(ValueError, match="index=2 is out of range for 2 choices"):
        FaultChoice((WEIGHTS, PREACT), jax.random.key(0), 2, 0.1)
    with pytest.raises(TypeError, match="non-empty tuple of Fault"):
        FaultChoice(("bit_flip",), jax.random.key(0), 0, 0.1)


def test_bad_compile_for_raises(bnn, mlp, images, vectors):
    call = dict(num_samples=1, key=KEY, num_chips=2)
    with pytest.raises(TypeError, match="compile_for=.*must be a list or tuple"):
        simulate_chips(bnn, images, fault=WEIGHTS, compile_for=PREACT, **call)
    with pytest.raises(TypeError, match="compile_for holds 'bit_flip'"):
        simulate_chips(bnn, images, fault=WEIGHTS, compile_for=("bit_flip",), **call)
    with pytest.raises(ValueError, match="site='preactivation' needs binary activations"):
        simulate_chips(mlp, vectors, fault=Fault("bit_flip", 0.1), compile_for=(PREACT,), **call)
