"""Pre-activation variation means the same signal-to-noise ratio for every method.

At the default site (``preactivation_site="normalized"``) an additive fault of level sigma is
added to the standardized activation ``x_hat`` of every method: for the baselines inside the
norm site, between BatchNorm's standardization and its affine; for ``proposed`` on the inverted
norm's output. So std(faulty - clean) / std(clean) at every site is sigma, whatever the method.
At ``"norm_output"`` the baselines' site value has passed BatchNorm's affine (and, with
``dropout_site="norm"``, MC dropout's 1/(1-p) rescale): there the same sigma is another ratio.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.faults import Fault, FaultContext
from invnorm_jax.models import build_model
from invnorm_jax.nn import ConventionalNorm

METHODS = ("nn", "spindrop", "spatial_spindrop", "proposed")
BASELINES = ("nn", "spindrop", "spatial_spindrop")
DIGITS = dict(in_channels=1, num_classes=10, widths=(16, 32), blocks=(1, 1))
SIGMA = 0.3
BATCH = 256


@dataclasses.dataclass(frozen=True, eq=False)
class RecordingContext(FaultContext):
    """A chip's fault context that records each pre-activation site's input and output."""

    records: list = dataclasses.field(default_factory=list)

    def preactivation(self, fault_id, x, *, key=None):
        y = super().preactivation(fault_id, x, key=key)
        self.records.append((fault_id, np.asarray(x, np.float64), np.asarray(y, np.float64)))
        return y


def _images() -> jax.Array:
    return jax.random.normal(jax.random.key(7), (BATCH, 8, 8, 1))


def _trained_looking(model) -> None:
    """BatchNorm's gamma and beta away from 1 and 0, as after training."""
    for i, (_, node) in enumerate(n for n in nnx.iter_graph(model) if isinstance(n[1], ConventionalNorm)):
        c = node.num_features
        node.norm.scale[...] = jax.random.uniform(jax.random.key(100 + i), (c,), minval=0.5, maxval=2.0)
        node.norm.bias[...] = 0.5 * jax.random.normal(jax.random.key(200 + i), (c,))


def _calibrated(method: str, x: jax.Array, **kwargs):
    """The digits ResNet whose BatchNorm running statistics are those of ``x``.

    One train-mode pass with momentum 0 sets every running mean and variance to the batch
    statistics (dropout active, as in training), with the fault the measurement uses, so the
    running statistics match what each norm then sees.
    """
    model = build_model("resnet", method, rngs=nnx.Rngs(0), **DIGITS, **kwargs)
    _trained_looking(model)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm):
            node.momentum = 0.0
    model(
        x,
        key=jax.random.key(1),
        train=True,
        faults=FaultContext(Fault("additive", SIGMA, site="preactivation"), jax.random.key(3)),
    )
    return model


CHIPS = (3, 4, 5, 6)


def _ratios(model, x: jax.Array) -> list[tuple[float, int]]:
    """``(std(faulty - clean) / std(clean), neurons)`` at every pre-activation site, averaged
    over the chips :data:`CHIPS` (one eval pass each)."""
    per_chip = []
    for chip_key in CHIPS:
        chip = RecordingContext(Fault("additive", SIGMA, site="preactivation"), jax.random.key(chip_key))
        model(x, key=jax.random.key(2), faults=chip)
        assert len(chip.records) == 4  # two binary convs per block, two blocks
        per_chip.append([(out - clean).std() / clean.std() for _, clean, out in chip.records])
    return [(ratio, clean[0].size) for ratio, (_, clean, _) in zip(np.mean(per_chip, axis=0), chip.records)]


def _tolerance(neurons: int) -> float:
    # The noise is one N(0, 1) draw per neuron and chip (shared by the batch): the sample std of
    # K draws has a relative standard error of 1 / sqrt(2 K); 4.5 of them over the chips, plus 3 %
    # for running statistics measured on one stochastic, faulty pass and applied to others
    # (measured: within 2 %).
    return 4.5 / np.sqrt(2 * neurons * len(CHIPS)) + 0.03


@pytest.mark.parametrize("dropout_site", ["crossbar", "norm"])
@pytest.mark.parametrize("method", METHODS)
def test_default_site_gives_every_method_the_same_snr(method, dropout_site):
    x = _images()
    model = _calibrated(method, x, dropout_site=dropout_site)
    for ratio, neurons in _ratios(model, x):
        assert abs(ratio / SIGMA - 1) < _tolerance(neurons), (ratio, neurons)


@pytest.mark.parametrize("method", BASELINES)
def test_at_the_norm_output_the_baselines_ratio_is_not_sigma(method):
    # After BatchNorm's (trained) affine and MC dropout's rescale, the site value's scale is no
    # longer 1: the same sigma is a smaller noise for the baselines.
    x = _images()
    model = _calibrated(method, x, preactivation_site="norm_output", dropout_site="norm")
    for ratio, neurons in _ratios(model, x):
        assert abs(ratio / SIGMA - 1) > 2 * _tolerance(neurons), (ratio, neurons)


def test_at_the_norm_output_proposed_keeps_its_ratio():
    # The inverted norm's output already is x_hat: both placements are the same site.
    x = _images()
    model = _calibrated("proposed", x, preactivation_site="norm_output")
    for ratio, neurons in _ratios(model, x):
        assert abs(ratio / SIGMA - 1) < _tolerance(neurons), (ratio, neurons)


@pytest.mark.parametrize("method", METHODS)
def test_zero_level_fault_is_no_fault(method):
    x = _images()[:32]
    model = _calibrated(method, x)
    key = jax.random.key(5)
    clean = model(x, key=key)
    chip = FaultContext(Fault("additive", 0.0, site="preactivation"), jax.random.key(3))
    np.testing.assert_allclose(np.asarray(model(x, key=key, faults=chip)), np.asarray(clean), rtol=1e-5, atol=1e-5)


def test_the_site_inside_the_norm_site_gets_its_own_fault_id():
    model = build_model("resnet", "spindrop", rngs=nnx.Rngs(0), **DIGITS)
    chip = RecordingContext(Fault("additive", SIGMA, site="preactivation"), jax.random.key(3))
    model(_images()[:2], key=jax.random.key(0), faults=chip)
    ids = [fid for fid, _, _ in chip.records]
    assert len(set(ids)) == 4 and all(0 <= i < model.num_fault_sites for i in ids)
    assert model.blocks[0].preact1 is None and model.blocks[0].site1.preactivation is not None


def test_standardize_then_affine_is_flax_batchnorm():
    norm = ConventionalNorm(5, kind="batch", rngs=nnx.Rngs(0))
    norm.norm.scale[...] = jnp.arange(1.0, 6.0)
    norm.norm.bias[...] = jnp.linspace(-1, 1, 5)
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 4, 5))
    twin = nnx.clone(norm)
    got = norm.affine(norm.standardize(x, train=True))
    want = twin(x, train=True)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # The running statistics move exactly as nnx.BatchNorm moves them.
    np.testing.assert_array_equal(np.asarray(norm.norm.mean[...]), np.asarray(twin.norm.mean[...]))
    np.testing.assert_array_equal(np.asarray(norm.norm.var[...]), np.asarray(twin.norm.var[...]))
    xf = np.asarray(x, np.float64).reshape(-1, 5)
    x_hat = np.asarray(norm.standardize(x, train=True), np.float64).reshape(-1, 5)
    np.testing.assert_allclose(x_hat, (xf - xf.mean(0)) / np.sqrt(xf.var(0) + 1e-5), atol=1e-4)


class ShiftingContext(RecordingContext):
    """Adds 0.5 at every pre-activation site: shows where the site sits in the computation."""

    def preactivation(self, fault_id, x, *, key=None):
        self.records.append(fault_id)
        return x + 0.5


def test_default_site_in_a_block_is_before_the_batchnorm_affine():
    from invnorm_jax.models.common import hardtanh
    from invnorm_jax.models.resnet import BasicBlock

    block = BasicBlock("nn", 4, 4, 1, rate=0.3, rngs=nnx.Rngs(0))
    for site in (block.site1, block.site2):
        site.norm.norm.scale[...] = jnp.full((4,), 2.0)
        site.norm.norm.bias[...] = jnp.full((4,), -0.25)
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 4))
    chip = ShiftingContext(Fault("additive", SIGMA, site="preactivation"), jax.random.key(0))
    got = block(x, faults=chip)
    c1 = lambda h: block.site1(block.conv1(h))  # noqa: E731  (no faults: plain convs and sites)
    c2 = lambda h: block.site2(block.conv2(h))  # noqa: E731
    # The 0.5 on x_hat comes out of the affine as gamma * 0.5 = 1.0, before the add and hardtanh.
    out = hardtanh(c1(x) + 1.0 + x)
    want = hardtanh(c2(out) + 1.0 + out)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    assert len(chip.records) == 2  # one site per binary conv (a lone block is not numbered)
