"""Drift parameters from a config: a sweep's ``drift`` key reaches the fault and the layers."""

import dataclasses
import json
import pathlib
import shlex

import jax
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.errors import ConfigError
from invnorm_jax.faults import Fault, FaultContext, simulate_chips
from invnorm_jax.faults.drift import PCM, PRESETS, RRAM, drift, drift_model
from invnorm_jax.faults.spec import fault_from_spec
from invnorm_jax.models import build_model
from invnorm_jax.pipeline import config as config_lib
from invnorm_jax.pipeline.configs._common import drift_sweep, sweep

YEAR = 3.15e7


def _override(spec: str) -> list[str]:
    return [f"--config.sweeps.drift.drift={spec}"]


def test_drift_model_from_a_mapping_is_the_preset_with_overrides():
    assert drift_model(None) is None and drift_model(RRAM) is RRAM
    assert drift_model({}) == PCM
    assert drift_model(dict(preset="rram")) == RRAM
    got = drift_model(dict(preset="rram", compensate=True, t0=1))
    assert got == dataclasses.replace(RRAM, compensate=True, t0=1.0)
    assert isinstance(got.t0, float)  # plain Python numbers: hashable, JSON-ready
    assert drift_model(dict(nu_mean=np.float32(0.1))).nu_mean == pytest.approx(0.1)
    assert set(PRESETS) == {"pcm", "rram"}
    hash(Fault("drift", 1.0, drift=got))  # a static jit argument


@pytest.mark.parametrize(
    "spec, error, match",
    [
        (dict(preset="xx"), ValueError, "preset='xx' is unknown"),
        (dict(nu_man=0.1), ValueError, "did you mean 'nu_mean'"),
        (dict(nu_mean=-0.1), ValueError, "nu_mean"),
        (dict(nu_std=float("nan")), ValueError, "nu_std"),
        (dict(t0=0.0), ValueError, "t0"),
        (dict(read_noise="a"), TypeError, "read_noise='a' must be a number"),
        (dict(compensate="yes"), TypeError, "compensate='yes' must be True or False"),
        (3, TypeError, "must be a mapping"),
    ],
)
def test_bad_drift_parameters_are_named(spec, error, match):
    with pytest.raises(error, match=match):
        drift_model(spec)


def test_fault_refuses_drift_parameters_it_cannot_use():
    with pytest.raises(TypeError, match="must be a DriftModel or None"):
        Fault("drift", 1.0, drift=dict(preset="rram"))
    with pytest.raises(ValueError, match="kind='drift' only"):
        Fault("bit_flip", 0.1, drift=RRAM)
    with pytest.raises(ValueError, match="kind='drift' only"):
        sweep("bit_flip", (0.0, 0.1), drift=dict(preset="rram"))


def test_sweep_helpers_carry_the_parameters_and_fault_of_forwards_them():
    assert drift_sweep("smoke").drift is None
    assert "drift" not in sweep("bit_flip", (0.0, 0.1))  # other sweeps are unchanged
    s = drift_sweep("smoke", preset="rram", compensate=True)
    assert fault_from_spec(s, YEAR) == Fault("drift", YEAR, drift=dataclasses.replace(RRAM, compensate=True))
    assert fault_from_spec(drift_sweep("smoke"), YEAR) == Fault("drift", YEAR)  # PCM defaults
    # The sweep cache key holds the parameters: another model never reads these values.
    keys = {json.dumps(dataclasses.asdict(fault_from_spec(x, YEAR)), sort_keys=True) for x in (drift_sweep("smoke"), s)}
    assert len(keys) == 2


@pytest.mark.parametrize(
    "spec, expected",
    [("{'compensate': True}", dataclasses.replace(PCM, compensate=True)), ("{'preset': 'rram'}", RRAM)],
)
def test_config_parameters_reach_a_layers_codes(spec, expected):
    c = config_lib.load_config("digits_drift", "smoke", _override(spec))
    config_lib.validate(c)
    model = build_model("digits", "nn", rngs=nnx.Rngs(0))
    layer = next(n for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Module) and hasattr(n, "deployed_weights"))
    codes, scale = layer.deployed_weights()
    chip_key = jax.random.key(7)
    got = layer._effective_kernel(FaultContext(fault_from_spec(c.sweeps.drift, YEAR), chip_key))
    want = drift(jax.random.fold_in(chip_key, layer.fault_id), codes, t=YEAR, model=expected) * scale
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    default = layer._effective_kernel(FaultContext(fault_from_spec(drift_sweep("smoke"), YEAR), chip_key))
    assert not np.allclose(np.asarray(got), np.asarray(default))


def test_chips_with_config_parameters_differ_from_the_pcm_run():
    model = build_model("digits", "nn", rngs=nnx.Rngs(0))
    model.eval()
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    run = dict(level=YEAR, num_chips=2, num_samples=1, key=jax.random.key(1))
    rram = simulate_chips(model, x, fault=fault_from_spec(drift_sweep("smoke", preset="rram"), 0.0), **run)
    direct = simulate_chips(model, x, fault=Fault("drift", 0.0, drift=RRAM), **run)
    pcm = simulate_chips(model, x, fault=fault_from_spec(drift_sweep("smoke"), 0.0), **run)
    clean = model(x)[None, None]
    np.testing.assert_array_equal(np.asarray(rram), np.asarray(direct))
    # RRAM drifts ten times less: its chips stay closer to the fault-free outputs.
    assert 0.0 < float(np.abs(rram - clean).mean()) < float(np.abs(pcm - clean).mean())


@pytest.mark.parametrize(
    "spec, match",
    [
        ("{'preset': 'flash'}", "sweeps.drift: drift preset='flash' is unknown"),
        ("{'nu_mean': -1}", "sweeps.drift: nu_mean=-1.0 is out of range"),
        ("{'compensat': True}", "did you mean 'compensate'"),
    ],
)
def test_bad_parameters_in_a_config_are_a_config_error(spec, match):
    with pytest.raises(ConfigError, match=match):  # load_config validates the overridden config
        config_lib.load_config("digits_drift", "smoke", _override(spec))


def test_documented_variant_commands_give_their_models():
    """The compensated / RRAM command lines of docs/faults.md load, validate and give their models."""
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "faults.md").read_text()
    lines = [ln for ln in doc.splitlines() if "--config.sweeps.drift.drift=" in ln]
    expected = [dataclasses.replace(PCM, compensate=True), RRAM, dataclasses.replace(RRAM, compensate=True)]
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        argv = shlex.split(line)
        overrides = [a for a in argv if a.startswith("--config.")]
        c = config_lib.load_config(argv[argv.index("--config") + 1], "smoke", overrides)
        config_lib.validate(c)
        assert fault_from_spec(c.sweeps.drift, 1.0).drift == want
