"""Training loop: loss goes down, an interrupted run resumes exactly, bad checkpoints are named."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.errors import CheckpointError
from invnorm_jax.models import build_model
from invnorm_jax.train import Checkpointer, TrainConfig, batch_indices, train


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int32)
    # Class-dependent blobs so that a few steps can learn something.
    x = rng.normal(0, 1, (n, 8, 8, 1)).astype(np.float32) + y[:, None, None, None] / 3.0
    return x, y


def _model(method="proposed"):
    return build_model("resnet", method, in_channels=1, num_classes=10, widths=(8, 16), blocks=(1, 1), rngs=nnx.Rngs(0))


def _params(model):
    return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_interrupted_training_resumes_exactly(tmp_path):
    x, y = _data()
    config = TrainConfig(steps=12, batch_size=16, learning_rate=1e-2, checkpoint_every=4, seed=3)
    straight = _model()
    train(straight, x, y, config, progress=False)

    resumed = _model()
    first = train(resumed, x, y, config, workdir=tmp_path, progress=False, stop_after=6)
    assert first["start_step"] == 0 and len(first["losses"]) == 6
    assert Checkpointer(tmp_path).latest_step() == 6
    fresh = _model()  # a new process would start from a fresh model and find the checkpoint
    second = train(fresh, x, y, config, workdir=tmp_path, progress=False)
    assert second["start_step"] == 6 and len(second["losses"]) == 6
    for a, b in zip(_params(straight), _params(fresh)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # Evaluation loads the model alone from a checkpoint that also holds the optimizer.
    loaded = _model()
    assert Checkpointer(tmp_path).restore(loaded) == 12
    for a, b in zip(_params(straight), _params(loaded)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # A finished run is only loaded: no step is repeated.
    again = train(_model(), x, y, config, workdir=tmp_path, progress=False)
    assert again["losses"] == [] and again["start_step"] == 12


def test_training_lowers_the_loss():
    x, y = _data(128)
    result = train(_model("nn"), x, y, TrainConfig(steps=40, batch_size=32, learning_rate=1e-2), progress=False)
    losses = result["losses"]
    assert np.mean(losses[-8:]) < np.mean(losses[:8])


def test_batch_indices_cover_each_epoch_once():
    seen = np.concatenate([batch_indices(50, 10, seed=1, step=s) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(50))
    assert not np.array_equal(batch_indices(50, 10, 1, 0), batch_indices(50, 10, 1, 5))  # new epoch, new order
    np.testing.assert_array_equal(batch_indices(50, 10, 1, 7), batch_indices(50, 10, 1, 7))


def test_corrupt_checkpoint_raises_a_clear_error(tmp_path):
    x, y = _data(32)
    train(_model(), x, y, TrainConfig(steps=2, batch_size=16, checkpoint_every=1), workdir=tmp_path, progress=False)
    step_dir = tmp_path / "checkpoints" / "2"
    for f in step_dir.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read.*delete"):
        Checkpointer(tmp_path).restore(_model())


def test_restore_without_checkpoint_says_train_first(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint.*train first"):
        Checkpointer(tmp_path).restore(_model())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss="hinge"), r"loss='hinge'"),
        (dict(optimizer="lion"), r"optimizer='lion'"),
        (dict(steps=0), r"steps=0"),
        (dict(learning_rate=-1.0), r"learning_rate"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_batch_larger_than_data_is_refused():
    x, y = _data(8)
    with pytest.raises(ValueError, match="batch_size=16 exceeds the 8"):
        train(_model(), x, y, TrainConfig(steps=1, batch_size=16), progress=False)


@pytest.mark.slow  # about 13 s: four short trainings
def test_adam_with_weight_decay_is_refused_and_the_others_honour_it():
    with pytest.raises(ValueError, match=r"ignored by optimizer='adam'.*adamw"):
        TrainConfig(optimizer="adam", weight_decay=1e-4)
    x, y = _data(32)
    for optimizer in ("adamw", "sgd"):
        plain, decayed = _model("nn"), _model("nn")
        base = dict(steps=3, batch_size=16, learning_rate=1e-2, optimizer=optimizer)
        train(plain, x, y, TrainConfig(**base), progress=False)
        train(decayed, x, y, TrainConfig(**base, weight_decay=0.5), progress=False)
        # Decay pulls the weights towards zero: the decayed model's weights are smaller.
        norm = lambda m: sum(float(np.sum(np.square(np.asarray(p)))) for p in _params(m))  # noqa: E731
        assert norm(decayed) < norm(plain), optimizer


def test_warmup_starts_above_zero_and_reaches_the_peak():
    from invnorm_jax.train import make_schedule

    lr = make_schedule(TrainConfig(steps=100, learning_rate=1.0, warmup_steps=4))
    values = [float(lr(s)) for s in range(6)]
    np.testing.assert_allclose(values[:5], [0.2, 0.4, 0.6, 0.8, 1.0], rtol=1e-6)
    assert values[5] < 1.0  # cosine decay after the warm-up
    no_warmup = make_schedule(TrainConfig(steps=10, learning_rate=0.5))
    assert float(no_warmup(0)) == pytest.approx(0.5)
    assert float(no_warmup(10)) == pytest.approx(0.0, abs=1e-7)
    constant = make_schedule(TrainConfig(steps=10, learning_rate=0.5, schedule="constant", warmup_steps=1))
    assert [float(constant(s)) for s in (0, 1, 9)] == pytest.approx([0.25, 0.5, 0.5])


def test_metrics_log_every_n_steps_without_changing_the_result(tmp_path):
    x, y = _data(64)
    every_step = train(_model(), x, y, TrainConfig(steps=7, batch_size=16, log_every=1), progress=False)
    batched = train(_model(), x, y, TrainConfig(steps=7, batch_size=16, log_every=3), workdir=tmp_path, progress=False)
    assert batched["losses"] == every_step["losses"] and len(batched["losses"]) == 7
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 7]
    assert rows[0]["loss"] == pytest.approx(np.mean(batched["losses"][:3]))
    assert rows[-1]["loss"] == pytest.approx(batched["losses"][6])
