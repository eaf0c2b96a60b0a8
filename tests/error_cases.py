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

from invnorm_jax import metrics, nn
from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.faults import Fault, FaultContext, inject, simulate_chips
from invnorm_jax.faults import models as fm
from invnorm_jax.functional import affine_dropout, banded_conv, fake_quant, inverted_norm
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
    return simulate_chips(model, x, **{**dict(fault=Fault("bit_flip", 0.1), num_samples=1, key=KEY, num_chips=2), **kw})


def tiny_dense():
    return nn.QuantDense(4, 2, rngs=nnx.Rngs(0))


def _apply(p, x, key):
    return x @ p["w1"] @ p["w2"] + p["b"]


PARAMS = {"w1": jnp.ones((4, 3)), "w2": jnp.ones((3, 2)), "b": jnp.zeros(2)}
INT8 = {"w": jnp.ones((3, 2), jnp.int8)}
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
    Case(
        "fn-rate",
        "affine_dropout(key, scale, bias, rate=1.5)",
        lambda ctx: affine_dropout(KEY, jnp.ones(4), jnp.zeros(4), rate=1.5),
        ArgumentError,
        r"rate=1.5 is outside \[0, 1\]: expected a probability",
    ),
    Case(
        "fn-mode",
        "affine_dropout(key, scale, bias, rate=0.3, mode='row')",
        lambda ctx: affine_dropout(KEY, jnp.ones(4), jnp.zeros(4), rate=0.3, mode="row"),
        ArgumentError,
        r"mode='row' is not allowed; expected one of \('vector', 'element'\)",
    ),
    Case(
        "fn-groups",
        "inverted_norm(x[2, 6], scale[6], bias[6], num_groups=4)",
        lambda ctx: inverted_norm(_x(2, 6), jnp.ones(6), jnp.zeros(6), num_groups=4),
        ArgumentError,
        r"num_groups=4 does not divide the 6 channels; allowed values: \[1, 2, 3, 6\]",
    ),
    Case(
        "fn-features",
        "inverted_norm(x[2, 6], scale[5], bias[5])",
        lambda ctx: inverted_norm(_x(2, 6), jnp.ones(5), jnp.zeros(5)),
        ArgumentError,
        r"scale/bias have 5 features but x has 6 channels",
    ),
    Case(
        "fn-rank",
        "inverted_norm(x[6], scale[6], bias[6])",
        lambda ctx: inverted_norm(_x(6), jnp.ones(6), jnp.zeros(6)),
        ArgumentError,
        r"x.shape=\(6,\): expected at least 2 axes",
    ),
    Case(
        "fn-banded-3d",
        "banded_conv(x[1, 4, 4, 4, 2], kernel[3, 3, 3, 2, 2])",
        lambda ctx: banded_conv(jnp.ones((1, 4, 4, 4, 2)), jnp.ones((3, 3, 3, 2, 2))),
        ArgumentError,
        r"banded_conv: .* expected a 1-D or 2-D channels-last conv",
    ),
    Case(
        "fn-bits",
        "fake_quant(w, bits=1)",
        lambda ctx: fake_quant(jnp.ones(3), bits=1),
        ArgumentError,
        r"bits=1 is outside 2..16",
    ),
    Case(
        "fn-flip-bits",
        "bit_flip(key, codes, rate=0.1, bits=17)",
        lambda ctx: fm.bit_flip(KEY, jnp.zeros(4, jnp.int32), rate=0.1, bits=17),
        ArgumentError,
        r"bits=17 is out of range: expected an integer in \[1, 16\]",
    ),
    Case(
        "fn-sigma",
        "additive_variation(key, w, sigma=-1.0)",
        lambda ctx: fm.additive_variation(KEY, jnp.ones(4), sigma=-1.0),
        ArgumentError,
        r"sigma=-1.0 is out of range: expected sigma >= 0",
    ),
    Case(
        "fn-mi-rank",
        "mutual_information(probs[batch, classes])",
        lambda ctx: metrics.mutual_information(jnp.full((3, 2), 0.5)),
        ArgumentError,
        r"probs_samples has shape \(3, 2\): expected \[samples, batch, classes\]",
    ),
    # layers (invnorm_jax.nn) and models
    Case(
        "nn-no-key",
        "MCDropout(0.3)(x)",
        lambda ctx: nn.MCDropout(0.3)(_x(2, 4)),
        ArgumentError,
        r"MCDropout is stochastic: call it with key=jax.random.key",
    ),
    Case(
        "nn-int-key",
        "InvertedNorm(...)(x, key=0)",
        lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(2, 4), key=0),
        ArgumentTypeError,
        r"key=0 is not a JAX random key: pass key=jax.random.key\(seed\)",
    ),
    Case(
        "nn-rngs-as-key",
        "InvertedNorm(...)(x, key=nnx.Rngs(0))",
        lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(2, 4), key=nnx.Rngs(0)),
        ArgumentTypeError,
        r"key=nnx.Rngs\(...\) is not a JAX random key: a layer takes a stream as rngs=",
    ),
    Case(
        "nn-key-count",
        "InvertedNorm(...)(x[3, 4], key=jax.random.split(key, 2))",
        lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(3, 4), key=jax.random.split(KEY, 2)),
        ArgumentError,
        r"key holds 2 per-example keys but the batch has 3 examples",
    ),
    Case(
        "nn-key-shape",
        "InvertedNorm(...)(x, key=jax.random.split(key, (2, 2)))",
        lambda ctx: nn.InvertedNorm(4, rngs=nnx.Rngs(0))(_x(2, 4), key=jax.random.split(KEY, (2, 2))),
        ArgumentError,
        r"key holds keys of shape \(2, 2\): expected one key or one key per example",
    ),
    Case(
        "nn-method",
        "norm_site('bayes', 4, rngs=rngs)",
        lambda ctx: nn.norm_site("bayes", 4, rngs=nnx.Rngs(0)),
        ArgumentError,
        r"method='bayes' is not allowed; expected one of \('nn', 'spindrop'",
    ),
    Case(
        "nn-norm",
        "norm_site('nn', 4, norm='instance', rngs=rngs)",
        lambda ctx: nn.norm_site("nn", 4, norm="instance", rngs=nnx.Rngs(0)),
        ArgumentError,
        r"norm='instance' is not allowed; expected one of \('batch', 'layer', 'group'\)",
    ),
    Case(
        "nn-size",
        "InvertedNorm(0, rngs=rngs)",
        lambda ctx: nn.InvertedNorm(0, rngs=nnx.Rngs(0)),
        ArgumentError,
        r"num_features=0 must be an integer >= 1",
    ),
    Case(
        "nn-bits",
        "QuantDense(4, 2, bits=1, rngs=rngs)",
        lambda ctx: nn.QuantDense(4, 2, bits=1, rngs=nnx.Rngs(0)),
        ArgumentError,
        r"bits=1 is outside 2..16",
    ),
    Case(
        "nn-kernel",
        "QuantConv(1, 2, (3, 3, 3, 3), rngs=rngs)",
        lambda ctx: nn.QuantConv(1, 2, (3, 3, 3, 3), rngs=nnx.Rngs(0)),
        ArgumentError,
        r"kernel_size=\(3, 3, 3, 3\): expected 1 to 3 spatial dims",
    ),
    Case(
        "nn-rank",
        "BinaryConv(3, 8, (3, 3), rngs=rngs)(x[5, 5, 3])",
        lambda ctx: nn.BinaryConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(5, 5, 3)),
        ArgumentError,
        r"BinaryConv: input of shape \(5, 5, 3\) does not fit a 2-D kernel: expected \[batch, 2 spatial dims",
    ),
    Case(
        "nn-channels",
        "BinaryConv(3, 8, (3, 3), rngs=rngs)(x[2, 5, 5, 2])",
        lambda ctx: nn.BinaryConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(2, 5, 5, 2)),
        ArgumentError,
        r"BinaryConv: x.shape=\(2, 5, 5, 2\) has 2 channels on its last axis, but the layer was built for "
        r"in_features=3",
    ),
    Case(
        "nn-channels-first",
        "QuantConv(3, 8, (3, 3), rngs=rngs)(x[2, 3, 5, 5])",
        lambda ctx: nn.QuantConv(3, 8, (3, 3), rngs=nnx.Rngs(0))(_x(2, 3, 5, 5)),
        ArgumentError,
        r"channels first\? the library is channels last: jnp.moveaxis\(x, 1, -1\)",
    ),
    Case(
        "nn-features",
        "QuantDense(4, 2, rngs=rngs)(x[3, 5])",
        lambda ctx: tiny_dense()(_x(3, 5)),
        ArgumentError,
        r"QuantDense: x.shape=\(3, 5\) has 5 channels on its last axis, but the layer was built for in_features=4",
    ),
    Case(
        "nn-dtype",
        "QuantDense(4, 2, rngs=rngs)(x[3, 4] of int32)",
        lambda ctx: tiny_dense()(_x(3, 4, dtype=jnp.int32)),
        ArgumentTypeError,
        r"QuantDense: x has dtype int32: expected a floating-point input, e.g. x.astype\(jnp.float32\)",
    ),
    Case(
        "nn-lstm-rank",
        "QuantLSTMCell(1, 4, rngs=rngs).scan(xs[2, 7])",
        lambda ctx: nn.QuantLSTMCell(1, 4, rngs=nnx.Rngs(0)).scan(_x(2, 7)),
        ArgumentError,
        r"xs.shape=\(2, 7\): expected \[batch, time, features\]; .* xs\[..., None\]",
    ),
    Case(
        "nn-fault-not-context",
        "layer(x, faults=Fault('bit_flip', 0.1))",
        lambda ctx: tiny_dense()(_x(3, 4), faults=Fault("bit_flip", 0.1)),
        ArgumentTypeError,
        r"describes what to inject, not a chip. .*FaultContext\(fault, chip_key\)",
    ),
    Case(
        "nn-bad-context",
        "layer(x, faults=FaultContext('bit_flip', key))",
        lambda ctx: tiny_dense()(_x(3, 4), faults=FaultContext("bit_flip", KEY)),
        ArgumentTypeError,
        r"the fault must be an invnorm_jax.faults.Fault",
    ),
    Case(
        "model-channels",
        "build_model('resnet', 'nn', in_channels=1, widths=(4,), blocks=(1,), rngs=rngs)(x[2, 8, 8, 3])",
        lambda ctx: build_model("resnet", "nn", in_channels=1, widths=(4,), blocks=(1,), rngs=nnx.Rngs(0))(
            _x(2, 8, 8, 3)
        ),
        ArgumentError,
        r"QuantConv: x.shape=\(2, 8, 8, 3\) has 3 channels .* in_features=1",
    ),
    # Fault, FaultContext and simulate_chips
    Case(
        "fault-kind",
        "Fault('bitflip', 0.1)",
        lambda ctx: Fault("bitflip", 0.1),
        ArgumentError,
        r"Fault kind='bitflip' is unknown \(did you mean 'bit_flip'\?\); expected one of \('bit_flip'",
    ),
    Case(
        "fault-probability",
        "Fault('bit_flip', 1.5)",
        lambda ctx: Fault("bit_flip", 1.5),
        ArgumentError,
        r"Fault level=1.5 is a probability for kind='bit_flip': expected 0 <= level <= 1",
    ),
    Case(
        "fault-negative",
        "Fault('additive', -0.1)",
        lambda ctx: Fault("additive", -0.1),
        ArgumentError,
        r"Fault level=-0.1 must be >= 0",
    ),
    Case(
        "fault-site",
        "Fault('bit_flip', 0.1, site='input')",
        lambda ctx: Fault("bit_flip", 0.1, site="input"),
        ArgumentError,
        r"Fault site='input' is unknown; expected one of \('weights', 'preactivation'\)",
    ),
    Case(
        "fault-kind-site",
        "Fault('bit_flip', 0.1, site='preactivation')",
        lambda ctx: Fault("bit_flip", 0.1, site="preactivation"),
        ArgumentError,
        r"Fault kind='bit_flip' is not defined at site='preactivation'",
    ),
    Case(
        "fault-per-inference",
        "Fault('additive', 0.1, per_inference=True)",
        lambda ctx: Fault("additive", 0.1, per_inference=True),
        ArgumentError,
        r"per_inference=True applies to site='preactivation' only",
    ),
    # Fault and inject: a custom kind, a level that is not a number, bits that mean nothing, integer weights
    Case(
        "fault-level-text",
        "Fault('additive', 'high')",
        lambda ctx: Fault("additive", "high"),
        ArgumentTypeError,
        r"Fault level='high' is text: pass a number, e.g. Fault\('additive', 0.2\)",
    ),
    Case(
        "fault-level-numeric-text",
        "Fault('additive', '0.2')",
        lambda ctx: Fault("additive", "0.2"),
        ArgumentTypeError,
        r"Fault level='0.2' is text: pass a number",
    ),
    Case(
        "fault-level-type",
        "Fault('additive', None)",
        lambda ctx: Fault("additive", None),
        ArgumentTypeError,
        r"Fault level=None is not a real number: pass e.g. 0.1",
    ),
    Case(
        "fault-kind-type",
        "Fault(3, 0.1)",
        lambda ctx: Fault(3, 0.1),
        ArgumentTypeError,
        r"Fault kind=3 is neither a kind name nor a function: .*your own fault model, a function kind\(key, array, "
        r"level\) -> array",
    ),
    Case(
        "fault-custom-signature",
        "Fault(lambda key, w: -w, 0.1)",
        lambda ctx: Fault(lambda key, w: -w, 0.1),
        ArgumentTypeError,
        r"Fault kind=<lambda> takes \(key, w\): a fault model is called as kind\(key, array, "
        r"level\)",
    ),
    Case(
        "fault-custom-shape",
        "inject(params, Fault(lambda key, w, level: w.sum(0), 0.1), key)",
        lambda ctx: inject(PARAMS, Fault(lambda key, w, level: w.sum(0), 0.1), KEY),
        ArgumentError,
        r"fault model <lambda> returned shape \(3,\) for an input of shape \(4, 3\)",
    ),
    Case(
        "fault-inject-type",
        "inject(params, 'bit_flip', key, bits=1)",
        lambda ctx: inject(PARAMS, "bit_flip", KEY, bits=1),
        ArgumentTypeError,
        r"fault='bit_flip' must be an invnorm_jax.faults.Fault",
    ),
    Case(
        "fault-inject-site",
        "inject(params, Fault('additive', 0.1, site='preactivation'), key)",
        lambda ctx: inject(PARAMS, Fault("additive", 0.1, site="preactivation"), KEY),
        ArgumentError,
        r"site='preactivation' needs the library's binary layers .* use site='weights'",
    ),
    Case(
        "fault-inject-level",
        "inject(params, Fault('bit_flip', 0.1), key, bits=1, level=1.5)",
        lambda ctx: inject(PARAMS, Fault("bit_flip", 0.1), KEY, bits=1, level=1.5),
        ArgumentError,
        r"level=1.5 is out of range \(it overrides fault.level\)",
    ),
    Case(
        "fault-bits-range",
        "inject(params, Fault('bit_flip', 0.1), key, bits=17)",
        lambda ctx: inject(PARAMS, Fault("bit_flip", 0.1), KEY, bits=17),
        ArgumentError,
        r"bits=17 is out of range: expected an integer in \[1, 16\]",
    ),
    Case(
        "fault-bits-variation",
        "inject(params, Fault('additive', 0.1), key, bits=8)",
        lambda ctx: inject(PARAMS, Fault("additive", 0.1), KEY, bits=8),
        ArgumentError,
        r"bits=8 has no effect on Fault kind='additive': .* Drop bits=",
    ),
    Case(
        "fault-sim-bits-variation",
        "simulate_chips(apply_fn, x, params=p, fault=Fault('additive', 0.1), bits=8, ...)",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=Fault("additive", 0.1), bits=8),
        ArgumentError,
        r"bits=8 has no effect on Fault kind='additive'",
    ),
    Case(
        "fault-int8-variation",
        "inject({'w': w[3, 2] of int8}, Fault('additive', 0.1), key, select='w')",
        lambda ctx: inject(INT8, Fault("additive", 0.1), KEY, select="w"),
        ArgumentTypeError,
        r"gives floats for the int8 leaf 'w', which would round the noise away: cast the weights to float first",
    ),
    Case(
        "fault-int8-bits",
        "inject({'w': w[3, 2] of int8}, Fault('bit_flip', 0.1), key, select='w', bits=16)",
        lambda ctx: inject(INT8, Fault("bit_flip", 0.1), KEY, select="w", bits=16),
        ArgumentError,
        r"bits=16 is wider than the int8 leaf 'w', which holds 8-bit codes: pass bits=8",
    ),
    Case(
        "fault-select-regex",
        "inject(params, Fault('additive', 0.1), key, select='kernel[')",
        lambda ctx: inject(PARAMS, Fault("additive", 0.1), KEY, select="kernel["),
        ArgumentError,
        r"select='kernel\[': 'kernel\[' is not a regular expression .*re.escape",
    ),
    Case(
        "fault-select-predicate",
        "inject(params, Fault('additive', 0.1), key, select=lambda path: 'w' in path)",
        lambda ctx: inject(PARAMS, Fault("additive", 0.1), KEY, select=lambda path: "w" in path),
        ArgumentTypeError,
        r"select=<lambda> takes \(path\): a predicate is called as select\(path, leaf\) -> bool",
    ),
    Case(
        "fault-select-type",
        "inject(params, Fault('additive', 0.1), key, select=3)",
        lambda ctx: inject(PARAMS, Fault("additive", 0.1), KEY, select=3),
        ArgumentTypeError,
        r"select=3 is not a selection: pass None \(kernels\), a regular expression",
    ),
    Case(
        "sim-fault",
        "simulate_chips(model, x, fault='bit_flip', ...)",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), fault="bit_flip"),
        ArgumentTypeError,
        r"fault='bit_flip' must be an invnorm_jax.faults.Fault",
    ),
    Case(
        "sim-chips",
        "simulate_chips(..., num_chips=0)",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), num_chips=0),
        ArgumentError,
        r"num_chips=0 must be an integer >= 1",
    ),
    Case(
        "sim-key",
        "simulate_chips(..., key=0)",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), key=0),
        ArgumentTypeError,
        r"key=0 is not a JAX random key",
    ),
    Case(
        "sim-key-batch",
        "simulate_chips(..., key=jax.random.split(key, 2))",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), key=jax.random.split(KEY, 2)),
        ArgumentError,
        r"key holds keys of shape \(2,\): expected one key, e.g. jax.random.key\(0\)",
    ),
    Case(
        "sim-empty",
        "simulate_chips(model, x[0, 4], ...)",
        lambda ctx: _sim(tiny_dense(), _x(0, 4)),
        ArgumentError,
        r"x.shape=\(0, 4\): expected a batch of at least one input",
    ),
    Case(
        "sim-level",
        "simulate_chips(..., fault=Fault('bit_flip', 0.1), level=2.0)",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), level=2.0),
        ArgumentError,
        r"level=2.0 is out of range",
    ),
    Case(
        "sim-preactivation",
        "simulate_chips(QuantDense(4, 2, ...), x, fault=Fault('additive', 0.5, site='preactivation'))",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), fault=Fault("additive", 0.5, site="preactivation")),
        ArgumentError,
        r"site='preactivation' needs binary activations \(sign\(\)\), and QuantDense has none; use site='weights'",
    ),
    Case(
        "sim-select",
        "simulate_chips(apply_fn, x, params=p, select='conv', bits=1, ...)",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, select="conv", bits=1),
        ArgumentError,
        r"no fault site: select='conv' picked none of the 3 leaves",
    ),
    Case(
        "sim-default-select",
        "inject({'b': bias}, Fault('additive', 0.1), key)",
        lambda ctx: inject({"b": jnp.zeros(2)}, Fault("additive", 0.1), KEY),
        ArgumentError,
        r"no fault site: select=None picked none of the 1 leaves",
    ),
    Case(
        "sim-full-precision",
        "simulate_chips(FullPrecisionOnly(), x, ...)",
        lambda ctx: _sim(FullPrecisionOnly(), _x(3, 4)),
        ArgumentError,
        r"no fault site: FullPrecisionOnly has 1 layers with deployed weights",
    ),
    Case(
        "sim-stock-nnx",
        "simulate_chips(StockNNX(), x, ...)",
        lambda ctx: _sim(StockNNX(), _x(3, 4)),
        ArgumentTypeError,
        r"StockNNX is a plain NNX module: its __call__ takes no faults=",
    ),
    Case(
        "sim-no-bits",
        "simulate_chips(apply_fn, x, params=p, fault=Fault('bit_flip', 0.1))",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS),
        ArgumentError,
        r"Fault kind='bit_flip' acts on stored bits: pass bits=1",
    ),
    Case(
        "sim-no-params",
        "simulate_chips(apply_fn, x, ...) without params=",
        lambda ctx: _sim(_apply, _x(3, 4)),
        ArgumentTypeError,
        r"simulate_chips\('_apply', ...\) needs params=",
    ),
    Case(
        "sim-module-params",
        "simulate_chips(nnx_model, x, params=p, ...)",
        lambda ctx: _sim(tiny_dense(), _x(3, 4), params=PARAMS),
        ArgumentTypeError,
        r"params=/select=/bits= are for a function apply_fn\(params, x, key\)",
    ),
    Case(
        "sim-output-no-batch",
        "simulate_chips(lambda p, x, key: {'logits': x @ p['w'], 'loss': loss}, x, params=p, ...)",
        lambda ctx: _sim(_with_loss, _x(3, 4), params=PARAMS, fault=ADDITIVE),
        ArgumentError,
        r"apply_fn's output\['loss'\] has shape \(\): every leaf must have the examples on its first axis, \[3, ",
    ),
    Case(
        "sim-reduce-per-chip",
        "simulate_chips(..., labels=y, reduce_fn=lambda out, y: accuracy(out.mean(0), y))",
        lambda ctx: _sim(
            _apply,
            _x(3, 4),
            params=PARAMS,
            fault=ADDITIVE,
            labels=jnp.zeros(3, jnp.int32),
            reduce_fn=lambda out, y: accuracy(out.mean(0), y),
        ),
        ArgumentError,
        r"reduce_fn's result has shape \(\): .* per-example values",
    ),
    Case(
        "sim-labels-no-reduce",
        "simulate_chips(apply_fn, x, params=p, labels=y, ...)",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, labels=jnp.zeros(3)),
        ArgumentError,
        r"labels= is passed to reduce_fn\(outputs, labels\) only, and reduce_fn is None",
    ),
    Case(
        "sim-labels-length",
        "simulate_chips(apply_fn, x[3, 4], ..., labels=y[5], reduce_fn=f)",
        lambda ctx: _sim(
            _apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, labels=jnp.zeros(5), reduce_fn=lambda out, y: out
        ),
        ArgumentError,
        r"labels has shape \(5,\): every leaf must have the examples on its first axis, \[3, \.\.\.\]\. Labels ",
    ),
    Case(
        "sim-mesh-and-devices",
        "simulate_chips(..., mesh=mesh, num_devices=4)",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=_mesh(), num_devices=4),
        ArgumentError,
        r"num_devices=4 and mesh= both given: pass one",
    ),
    Case(
        "sim-mesh-axis",
        "simulate_chips(..., mesh=Mesh(devices, ('chips',)), chip_axis='batch')",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=_mesh(), chip_axis="batch"),
        ArgumentError,
        r"chip_axis='batch' is not an axis of the mesh, whose axes are \('chips',\)",
    ),
    Case(
        "sim-mesh-type",
        "simulate_chips(..., mesh=jax.devices())",
        lambda ctx: _sim(_apply, _x(3, 4), params=PARAMS, fault=ADDITIVE, mesh=jax.devices()),
        ArgumentTypeError,
        r"mesh=.* must be a jax.sharding.Mesh",
    ),
    Case(
        "sim-summary-rank",
        "per_chip_summary(out[chips, batch], labels, accuracy)",
        lambda ctx: per_chip_summary(_x(2, 3), jnp.zeros(3, jnp.int32), accuracy),
        ArgumentError,
        r"outputs.shape=\(2, 3\): expected \[chips, samples, batch, \.\.\.\] as simulate_chips returns",
    ),
    Case(
        "sim-summary-labels",
        "per_chip_summary(out[2, 1, 3, 4], labels[5], accuracy)",
        lambda ctx: per_chip_summary(_x(2, 1, 3, 4), jnp.zeros(5, jnp.int32), accuracy),
        ArgumentError,
        r"outputs has 3 examples \(axis 2 of \(2, 1, 3, 4\)\) but labels has 5",
    ),
]
