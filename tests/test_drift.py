"""Conductance drift: the formula against float64 NumPy, its statistics, identities and chips."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext, simulate_chips
from invnorm_jax.faults.drift import PCM, RRAM, DriftModel, drift
from invnorm_jax.models import build_model

HOUR, YEAR, DECADE = 3600.0, 3.15e7, 3.15e8


def _reference(key, w, t, model):
    """float64 NumPy drift from the same draws (the same key split as the library's)."""
    nu_key, noise_key = jax.random.split(key)
    nu = np.asarray(model.nu_mean + model.nu_std * np.asarray(jax.random.normal(nu_key, w.shape)), np.float64)
    n = np.asarray(jax.random.normal(noise_key, w.shape), np.float64)
    w = np.asarray(w, np.float64)
    big_l = math.log(max(float(t), model.t0) / model.t0)
    mag = np.abs(w) * np.exp(-np.maximum(nu, 0.0) * big_l)
    if model.read_noise:
        mag = np.maximum(mag * (1.0 + model.read_noise * math.sqrt(big_l) * n), 0.0)
    if model.compensate and mag.sum() > 0:
        mag = mag * np.abs(w).sum() / mag.sum()
    return np.sign(w) * mag


def _codes(n, bits, seed=0):
    rng = np.random.default_rng(seed)
    if bits == 1:
        return jnp.asarray(rng.choice([-1.0, 1.0], size=n), jnp.float32)
    half = 2 ** (bits - 1)
    return jnp.asarray(rng.integers(-half, half, size=n), jnp.int32)


MODELS = [
    PCM,
    RRAM,
    DriftModel(read_noise=0.05),
    DriftModel(compensate=True, read_noise=0.02),
    DriftModel(nu_mean=0.02, nu_std=0.03),
]  # the last clips many exponents at 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("bits", [1, 8])
def test_drift_matches_float64_reference(model, bits):
    w, key = _codes(4000, bits), jax.random.key(3)
    got = drift(key, w, t=YEAR, model=model)
    assert got.dtype == jnp.float32  # drifted codes are floats, like the other continuous kinds
    np.testing.assert_allclose(np.asarray(got), _reference(key, w, YEAR, model), rtol=2e-5, atol=1e-6)


def _clipped_normal_mean(mu, sd):
    """E[max(X, 0)] for X ~ N(mu, sd)."""
    z = mu / sd
    phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return mu * cdf + sd * phi


@pytest.mark.parametrize("model", [PCM, DriftModel(nu_mean=0.02, nu_std=0.03)])
def test_mean_log_ratio_is_minus_nu_times_log_time(model):
    """mean log(|w'| / |w|) = -E[max(nu, 0)] log(t / t0), within 5 standard errors."""
    n = 200_000
    w = _codes(n, 1)
    for t in (HOUR, DECADE):
        log_ratio = np.log(np.abs(np.asarray(drift(jax.random.key(1), w, t=t, model=model), np.float64)))
        big_l = math.log(t / model.t0)
        expected = -_clipped_normal_mean(model.nu_mean, model.nu_std) * big_l
        stderr = log_ratio.std() / math.sqrt(n)
        assert abs(log_ratio.mean() - expected) < 5 * stderr + 1e-6 * big_l
        assert log_ratio.max() <= 1e-6  # drift only ever lowers a conductance


def test_rram_drifts_much_less_than_pcm():
    w = _codes(20_000, 1)
    loss = {
        name: 1 - float(jnp.mean(jnp.abs(drift(jax.random.key(0), w, t=DECADE, model=m))))
        for name, m in (("pcm", PCM), ("rram", RRAM))
    }
    assert 5 * loss["rram"] < loss["pcm"]


@pytest.mark.parametrize("model", [PCM, DriftModel(compensate=True, read_noise=0.5)])
@pytest.mark.parametrize("t", [0.0, 5.0, 20.0])
def test_no_drift_up_to_t0_exactly(model, t):
    for w in (_codes(500, 1), _codes(500, 8), jnp.asarray(np.random.default_rng(0).normal(size=500), jnp.float32)):
        got = drift(jax.random.key(0), w, t=t, model=model)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(w, np.float32))


def test_traced_time_under_jit_matches_eager_and_level_zero_is_identity():
    w = _codes(300, 4)
    jitted = jax.jit(lambda t: drift(jax.random.key(2), w, t=t))
    np.testing.assert_array_equal(np.asarray(jitted(0.0)), np.asarray(w, np.float32))
    np.testing.assert_allclose(np.asarray(jitted(YEAR)), np.asarray(drift(jax.random.key(2), w, t=YEAR)), rtol=1e-6)


@pytest.mark.parametrize("model", [PCM, DriftModel(read_noise=1.0), DriftModel(read_noise=1.0, compensate=True)])
def test_sign_never_flips_and_zero_codes_stay_zero(model):
    w = _codes(20_000, 8)
    got = np.asarray(drift(jax.random.key(4), w, t=DECADE, model=model))
    w = np.asarray(w)
    assert np.all(got[w == 0] == 0)
    assert np.all(np.sign(got[w != 0]) * np.sign(w[w != 0]) >= 0)  # same sign, or read down to 0


def test_compensation_restores_the_mean_magnitude():
    n = 50_000
    w = _codes(n, 8)
    plain = np.abs(np.asarray(drift(jax.random.key(5), w, t=DECADE, model=PCM), np.float64))
    comp = np.abs(np.asarray(drift(jax.random.key(5), w, t=DECADE, model=DriftModel(compensate=True)), np.float64))
    before = np.abs(np.asarray(w, np.float64)).mean()
    # One float32 sum each side: relative error ~ n * eps at worst.
    assert abs(comp.mean() / before - 1) < n * np.finfo(np.float32).eps
    # Without it the mean decays by about E[exp(-nu L)]; the sample mean within 5 standard errors.
    big_l = math.log(DECADE / PCM.t0)
    nu = np.linspace(-8, 8, 20001) * PCM.nu_std + PCM.nu_mean
    dens = np.exp(-(((nu - PCM.nu_mean) / PCM.nu_std) ** 2) / 2)
    expected = float(np.sum(np.exp(-np.maximum(nu, 0) * big_l) * dens) / np.sum(dens))
    ratio = plain / np.maximum(np.abs(np.asarray(w, np.float64)), 1e-30)
    ratio = ratio[np.asarray(w) != 0]
    assert abs(ratio.mean() - expected) < 5 * ratio.std() / math.sqrt(ratio.size)
    assert ratio.mean() < 0.6  # a decade of PCM drift loses about half the conductance
    # Compensation keeps the spread (the exponents differ per device), only the mean is restored.
    assert np.std(comp[np.asarray(w) != 0] / np.abs(np.asarray(w, np.float64))[np.asarray(w) != 0]) > 0.05


def test_deterministic_per_key():
    w = _codes(1000, 1)
    a, b = drift(jax.random.key(7), w, t=YEAR), drift(jax.random.key(7), w, t=YEAR)
    c = drift(jax.random.key(8), w, t=YEAR)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("kwargs, match", [(dict(t=-1.0), "t=-1.0"), (dict(t=float("nan")), "t=nan")])
def test_bad_time_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        drift(jax.random.key(0), jnp.ones(3), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t0=0.0), "t0"),
        (dict(nu_mean=-0.1), "nu_mean"),
        (dict(nu_std=-1.0), "nu_std"),
        (dict(read_noise=-0.1), "read_noise"),
    ],
)
def test_bad_model_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DriftModel(**kwargs)


def test_fault_kind_drift_is_a_weights_fault():
    with pytest.raises(ValueError, match="level"):
        Fault("drift", -1.0)
    with pytest.raises(ValueError, match="preactivation"):
        Fault("drift", 60.0, site="preactivation")
    ctx = FaultContext(Fault("drift", YEAR), jax.random.key(0))
    w = _codes(100, 1)
    got = ctx.weights(3, w, bits=1)
    np.testing.assert_array_equal(
        np.asarray(got), np.asarray(drift(jax.random.fold_in(jax.random.key(0), 3), w, t=YEAR))
    )


@pytest.mark.slow  # about 10 s: two compiled chip simulations
def test_drift_on_chips_grows_with_time():
    model = build_model("digits", "nn", rngs=nnx.Rngs(0))
    model.eval()
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    clean = model(x)
    fault = Fault("drift", 0.0)
    dev = {}
    for t in (0.0, HOUR, DECADE):
        out = simulate_chips(model, x, fault=fault, level=t, num_chips=3, num_samples=1, key=jax.random.key(1))
        dev[t] = float(jnp.mean(jnp.abs(out - clean[None, None])))
    assert dev[0.0] < 1e-6  # no drift: the fault-free model (jitted vs eager: float rounding only)
    assert 1e-4 < dev[HOUR] < dev[DECADE], dev


@pytest.mark.parametrize("task", ["digits", "mnist1d", "co2"])
def test_drift_configs_reuse_the_tasks_checkpoints(task):
    from invnorm_jax.pipeline import config as config_lib

    for variant in ("full", "smoke"):
        base = config_lib.load_config(task, variant)
        c = config_lib.load_config(f"{task}_drift", variant)
        assert "drift" not in base.sweeps  # the demo does not pay for it
        assert list(c.sweeps) == ["drift", "drift_compensated"]
        assert c.sweeps.drift.kind == c.sweeps.drift_compensated.kind == "drift"
        assert c.sweeps.drift.drift is None and c.sweeps.drift_compensated.drift.compensate is True
        levels = c.sweeps.drift.levels
        assert levels[0] == 0.0 and list(levels) == sorted(levels) and levels[-1] >= 3.15e8
        assert config_lib.training_differences(config_lib.to_dict(base), c) == []
