"""The bad inputs of docs/errors.md, one :class:`Case` per row of its tables (same id, same order).

A case provokes one error: ``run(ctx)`` either raises it (a library call), or returns the
``invnorm-jax`` arguments that must fail (``cli=True``). ``ctx.tmp`` is a fresh folder; paths
under it read ``/data`` in the doc. Every model and array is tiny and nothing is trained.
This file: functions, layers, faults and the simulator; ``error_cases_io.py``: configs,
datasets, checkpoints, results and the command line.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from invnorm_jax import nn
from invnorm_jax._checks import ArgumentError, ArgumentTypeError
from invnorm_jax.faults import Fault, FaultContext, inject, simulate_chips
from invnorm_jax.faults import models as fm
from invnorm_jax.functional import affine_dropout, fake_quant, inverted_norm
from invnorm_jax.metrics import accuracy, per_chip_summary
from invnorm_jax.models import build_model

KEY = jax.random.key(0)


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: the call as the doc shows it, what provokes it, the exact error type, a regex of the message."""

    id: str
    call: str
    run: Callable
    error: type
    match: str
    cli: bool = False
    preflight: bool = True  # a CLI case refused before any data is loaded or model built


@dataclasses.dataclass
class Ctx:
    tmp: pathlib.Path
    monkeypatch: object


# ------------------------------------------------------------------------------------------- helpers


def _x(*shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


def _sim(model, x, **kw):
    return simulate_chips(model, x, **{**dict(fault=Fault("bit_flip", 0.1), num_samples=1, key=KEY,
                                                num_chips=2), **kw})


def tiny_dense():
    return nn.QuantDense(4, 2, rngs=nnx.Rngs(0))


def _apply(p, x, key):
    return x @ p["w1"] @ p["w2"] + p["b"]


PARAMS = {"w1": jnp.ones((4, 3)), "w2": jnp.ones((3, 2)), "b": jnp.zeros(2)}
ADDITIVE = Fault("additive", 0.1)


def _with_loss(p, x, key):  # a per-batch scalar among the per-example outputs
    logits = _apply(p, x, key)
    return {"logits": logits, "loss": jnp.mean(logits)}


def _mesh():
    return Mesh(np.asarray(jax.devices()[:1]), ("chips",))


class FullPrecisionOnly(nnx.Module):
    """The library's call convention, but its only layer keeps full-precision weights."""

    def __init__(self):
        self.fc = nn.QuantDense(4, 2, bits=None, act_bits=None, rngs=nnx.Rngs(0))

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        return self.fc(x, faults=faults)


class StockNNX(nnx.Module):
    """Stock nnx layers: no faults= in its call."""

    def __init__(self):
        self.fc = nnx.Linear(4, 2, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.fc(x)


# ------------------------------------------------------------------------------------------- the table

CASES = [
    # functions (invnorm_jax.functional, invnorm_jax.faults.models)
    Case("fn-rate", "affine_dropout(key, scale, bias, rate=1.5)",
         lambda ctx: affine_dropout(KEY, jnp.ones(4), jnp.zeros(4), rate=1.5), ArgumentError,
         r"rate=1.5 is outside \[0, 1\]: expected a probability"),
    Case("fn-mode", "affine_dropout(key, scale, bias, rate=0.3, mode='row')",
         lambda ctx: affine_dropout(KEY, jnp.ones(4), jnp.zeros(4), rate=0.3, mode="row"), ArgumentError,
         r"mode='row' is not allowed; expected one of \('vector', 'element'\)"),
    Case("fn-groups", "inverted_norm(x[2, 6], scale[6], bias[6], num_groups=4)",
         lambda ctx: inverted_norm(_x(2, 6), jnp.ones(6), jnp.zeros(6), num_groups=4), ValueError,
         r"num_groups=4 does not divide the 6 channels; allowed values: \[1, 2, 3, 6\]"),
    Case("fn-features", "inverted_norm(x[2, 6], scale[5], bias[5])",
         lambda ctx: inverted_norm(_x(2, 6), jnp.ones(5), jnp.zeros(5)), ValueError,
         r"scale/bias have 5 features but x has 6 channels"),
    Case("fn-rank", "inverted_norm(x[6], scale[6], bias[6])",
         lambda ctx: inverted_norm(_x(6), jnp.ones(6), jnp.zeros(6)), ValueError,
         r"x.shape=\(6,\): expected at least 2 axes"),
    Case("fn-bits", "fake_quant(w, bits=1)", lambda ctx: fake_quant(jnp.ones(3), bits=1), ArgumentError,
         r"bits=1 is outside 2..16"),
    Case("fn-flip-bits", "bit_flip(key, codes, rate=0.1, bits=17)",
         lambda ctx: fm.bit_flip(KEY, jnp.zeros(4, jnp.int32), rate=0.1, bits=17), ValueError,
         r"bits=17 is out of range: expected an integer in \[1, 16\]"),
    Case("fn-sigma", "additive_variation(key, w, sigma=-1.0)",
         lambda ctx: fm.additive_variation(KEY, jnp.ones(4), sigma=-1.0), ValueError,
         r"sigma=-1.0 is out of range: expected sigma >= 0"),
    # layers (invnorm_jax.nn) and models
    Case("nn-no-key", "InvertedNorm(4, rngs=nnx.Rngs(0))(x)",
         lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(2, 4)), ArgumentError,
         r"InvertedNorm is stochastic: call it with key=jax.random.key"),
    Case("nn-int-key", "InvertedNorm(...)(x, key=0)",
         lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(2, 4), key=0), ArgumentTypeError,
         r"key=0 is not a JAX random key: pass key=jax.random.key\(seed\)"),
    Case("nn-method", "norm_site('bayes', 4, rngs=rngs)",
         lambda ctx: nn.norm_site("bayes", 4, rngs=nnx.Rngs(0)), ArgumentError,
         r"method='bayes' is not allowed; expected one of \('nn', 'spindrop'"),
    Case("nn-norm", "norm_site('nn', 4, norm='instance', rngs=rngs)",
         lambda ctx: nn.norm_site("nn", 4, norm="instance", rngs=nnx.Rngs(0)), ArgumentError,
         r"norm='instance' is not allowed; expected one of \('batch', 'layer', 'group'\)"),
    Case("nn-size", "InvertedNorm(0, rngs=rngs)", lambda ctx: nn.InvertedNorm(0, rngs=nnx.Rngs(0)),
         ArgumentError, r"num_features=0 must be an integer >= 1"),
    Case("nn-bits", "QuantDense(4, 2, bits=1, rngs=rngs)",
         lambda ctx: nn.QuantDense(4, 2, bits=1, rngs=nnx.Rngs(0)), ArgumentError, r"bits=1 is outside 2..16"),
    Case("nn-kernel", "QuantConv(1, 2, (3, 3, 3, 3), rngs=rngs)",
         lambda ctx: nn.QuantConv(1, 2, (3, 3, 3, 3), rngs=nnx.Rngs(0)), ArgumentError,
         r"kernel_size=\(3, 3, 3, 3\): expected 1 to 3 spatial dims"),
    Case("nn-rank", "BinaryConv(3, 8, (3, 3), rngs=rngs)(x[5, 5, 3])",
         lambda ctx: nn.BinaryConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(5, 5, 3)), ArgumentError,
         r"BinaryConv: input of shape \(5, 5, 3\) does not fit a 2-D kernel: expected \[batch, 2 spatial dims"),
    Case("nn-channels", "BinaryConv(3, 8, (3, 3), rngs=rngs)(x[2, 5, 5, 2])",
         lambda ctx: nn.BinaryConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(2, 5, 5, 2)), ArgumentError,
         r"BinaryConv: x.shape=\(2, 5, 5, 2\) has 2 channels on its last axis, but the layer was built for "
         r"in_features=3"),
    Case("nn-channels-first", "QuantConv(3, 8, (3, 3), rngs=rngs)(x[2, 3, 5, 5])",
         lambda ctx: nn.QuantConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(2, 3, 5, 5)), ArgumentError,
         r"channels first\? the library is channels last: jnp.moveaxis\(x, 1, -1\)"),
    Case("nn-features", "QuantDense(4, 2, rngs=rngs)(x[3, 5])", lambda ctx: tiny_dense()(_x(3, 5)), ArgumentError,
         r"QuantDense: x.shape=\(3, 5\) has 5 channels on its last axis, but the layer was built for in_features=4"),
    Case("nn-dtype", "QuantDense(4, 2, rngs=rngs)(x[3, 4] of int32)",
         lambda ctx: tiny_dense()(_x(3, 4, dtype=jnp.int32)), ArgumentTypeError,
         r"QuantDense: x has dtype int32: expected a floating-point input, e.g. x.astype\(jnp.float32\)"),
    Case("nn-lstm-rank", "QuantLSTMCell(1, 4, rngs=rngs).scan(xs[2, 7])",
         lambda ctx: nn.QuantLSTMCell(1, 4, rngs=nnx.Rngs(0)).scan(_x(2, 7)), ArgumentError,
         r"xs.shape=\(2, 7\): expected \[batch, time, features\]; .* xs\[..., None\]"),
    Case("nn-fault-not-context", "layer(x, faults=Fault('bit_flip', 0.1))",
         lambda ctx: tiny_dense()(_x(3, 4), faults=Fault("bit_flip", 0.1)), ArgumentTypeError,
         r"describes what to inject, not a chip. .*FaultContext\(fault, chip_key\)"),
    Case("nn-bad-context", "layer(x, faults=FaultContext('bit_flip', key))",
         lambda ctx: tiny_dense()(_x(3, 4), faults=FaultContext("bit_flip", KEY)), ArgumentTypeError,
         r"the fault must be an invnorm_jax.faults.Fault"),
    Case("model-channels", "build_model('resnet', 'nn', in_channels=1, widths=(4,), blocks=(1,), rngs=rngs)"
         "(x[2, 8, 8, 3])",
         lambda ctx: build_model("resnet", "nn", in_channels=1, widths=(4,), blocks=(1,), rngs=nnx.Rngs(0))(
             _x(2, 8, 8, 3)), ArgumentError, r"QuantConv: x.shape=\(2, 8, 8, 3\) has 3 channels .* in_features=1"),
    # Fault, FaultContext and simulate_chips
    Case("fault-kind", "Fault('bitflip', 0.1)", lambda ctx: Fault("bitflip", 0.1), ValueError,
         r"Fault kind='bitflip' is unknown; expected one of \('bit_flip'"),
    Case("fault-probability", "Fault('bit_flip', 1.5)", lambda ctx: Fault("bit_flip", 1.5), ValueError,
         r"Fault level=1.5 is a probability for kind='bit_flip': expected 0 <= level <= 1"),
    Case("fault-negative", "Fault('additive', -0.1)", lambda ctx: Fault("additive", -0.1), ValueError,
         r"Fault level=-0.1 must be >= 0"),
    Case("fault-site", "Fault('bit_flip', 0.1, site='input')", lambda ctx: Fault("bit_flip", 0.1, site="input"),
         ValueError, r"Fault site='input' is unknown; expected one of \('weights', 'preactivation'\)"),
    Case("fault-kind-site", "Fault('bit_flip', 0.1, site='preactivation')",
         lambda ctx: Fault("bit_flip", 0.1, site="preactivation"), ValueError,
         r"Fault kind='bit_flip' is not defined at site='preactivation'"),
    Case("fault-per-inference", "Fault('additive', 0.1, per_inference=True)",
         lambda ctx: Fault("additive", 0.1, per_inference=True), ValueError,
         r"per_inference=True applies to site='preactivation' only"),
    Case("sim-fault", "simulate_chips(model, x, fault='bit_flip', ...)",
         lambda ctx: _sim(tiny_dense(), _x(3, 4), fault="bit_flip"), ArgumentTypeError,
         r"fault='bit_flip' must be an invnorm_jax.faults.Fault"),
    Case("sim-chips", "simulate_chips(..., num_chips=0)", lambda ctx: _sim(tiny_dense(), _x(3, 4), num_chips=0),
         ArgumentError, r"num_chips=0 must be an integer >= 1"),
    Case("sim-key", "simulate_chips(..., key=0)", lambda ctx: _sim(tiny_dense(), _x(3, 4), key=0), ArgumentTypeError,
         r"key=0 is not a JAX random key"),
    Case("sim-empty", "simulate_chips(model, x[0, 4], ...)", lambda ctx: _sim(tiny_dense(), _x(0, 4)), ArgumentError,
         r"x.shape=\(0, 4\): expected a batch of at least one input"),
    Case("sim-level", "simulate_chips(..., fault=Fault('bit_flip', 0.1), level=2.0)",
         lambda ctx: _sim(tiny_dense(), _x(3, 4), level=2.0), ArgumentError, r"level=2.0 is out of range"),
    Case("sim-preactivation", "simulate_chips(QuantDense(4, 2, ...), x, fault=Fault('additive', 0.5, "
         "site='preactivation'))",
         lambda ctx: _sim(tiny_dense(), _x(3, 4), fault=Fault("additive", 0.5, site="preactivation")), ArgumentError,
         r"site='preactivation' needs binary activations \(sign\(\)\), and QuantDense has none; use site='weights'"),
    Case("sim-select", "simulate_chips(apply_fn, x, params=p, select='conv', bits=1, ...)",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, select="conv", bits=1), ValueError,
         r"no fault site: select='conv' picked none of the 3 leaves"),
    Case("sim-default-select", "inject({'b': bias}, Fault('additive', 0.1), key)",
         lambda ctx: inject({"b": jnp.zeros(2)}, Fault("additive", 0.1), KEY), ValueError,
         r"no fault site: select=None picked none of the 1 leaves"),
    Case("sim-full-precision", "simulate_chips(FullPrecisionOnly(), x, ...)",
         lambda ctx: _sim(FullPrecisionOnly(), _x(3, 4)), ArgumentError,
         r"no fault site: FullPrecisionOnly has 1 layers with deployed weights"),
    Case("sim-stock-nnx", "simulate_chips(StockNNX(), x, ...)", lambda ctx: _sim(StockNNX(), _x(3, 4)),
         ArgumentTypeError, r"StockNNX is a plain NNX module: its __call__ takes no faults="),
    Case("sim-no-bits", "simulate_chips(apply_fn, x, params=p, fault=Fault('bit_flip', 0.1))",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS), ValueError,
         r"Fault kind='bit_flip' acts on stored bits: pass bits=1"),
    Case("sim-no-params", "simulate_chips(apply_fn, x, ...) without params=", lambda ctx: _sim(_apply, _x(3, 4)),
         ArgumentTypeError, r"simulate_chips\('_apply', ...\) needs params="),
    Case("sim-module-params", "simulate_chips(nnx_model, x, params=p, ...)",
         lambda ctx: _sim(tiny_dense(), _x(3, 4), params=PARAMS), ArgumentTypeError,
         r"params=/select=/bits= are for a function apply_fn\(params, x, key\)"),
    Case("sim-output-no-batch", "simulate_chips(lambda p, x, key: {'logits': x @ p['w'], 'loss': loss}, x, params=p, "
         "...)", lambda ctx: _sim(_with_loss, _x(3, 4), params=PARAMS, fault=ADDITIVE), ArgumentError,
         r"apply_fn's output\['loss'\] has shape \(\): every leaf must have the examples on its first axis, \[3, "),
    Case("sim-reduce-per-chip", "simulate_chips(..., labels=y, reduce_fn=lambda out, y: accuracy(out.mean(0), y))",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, labels=jnp.zeros(3, jnp.int32),
                          reduce_fn=lambda out, y: accuracy(out.mean(0), y)), ArgumentError,
         r"reduce_fn's result has shape \(\): .* per-example values"),
    Case("sim-labels-no-reduce", "simulate_chips(apply_fn, x, params=p, labels=y, ...)",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, labels=jnp.zeros(3)), ArgumentError,
         r"labels= is passed to reduce_fn\(outputs, labels\) only, and reduce_fn is None"),
    Case("sim-labels-length", "simulate_chips(apply_fn, x[3, 4], ..., labels=y[5], reduce_fn=f)",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, labels=jnp.zeros(5),
                          reduce_fn=lambda out, y: out), ArgumentError,
         r"labels has shape \(5,\): every leaf must have the examples on its first axis, \[3, \.\.\.\]\. Labels "),
    Case("sim-mesh-and-devices", "simulate_chips(..., mesh=mesh, num_devices=4)",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=_mesh(), num_devices=4),
         ArgumentError, r"num_devices=4 and mesh= both given: pass one"),
    Case("sim-mesh-axis", "simulate_chips(..., mesh=Mesh(devices, ('chips',)), chip_axis='batch')",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=_mesh(), chip_axis="batch"),
         ArgumentError, r"chip_axis='batch' is not an axis of the mesh, whose axes are \('chips',\)"),
    Case("sim-mesh-type", "simulate_chips(..., mesh=jax.devices())",
         lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=jax.devices()), ArgumentTypeError,
         r"mesh=.* must be a jax.sharding.Mesh"),
    Case("sim-summary-rank", "per_chip_summary(out[chips, batch], labels, accuracy)",
         lambda ctx: per_chip_summary(_x(2, 3), jnp.zeros(3, jnp.int32), accuracy), ArgumentError,
         r"outputs.shape=\(2, 3\): expected \[chips, samples, batch, \.\.\.\] as simulate_chips returns"),
    Case("sim-summary-labels", "per_chip_summary(out[2, 1, 3, 4], labels[5], accuracy)",
         lambda ctx: per_chip_summary(_x(2, 1, 3, 4), jnp.zeros(5, jnp.int32), accuracy), ArgumentError,
         r"outputs has 3 examples \(axis 2 of \(2, 1, 3, 4\)\) but labels has 5"),
]
