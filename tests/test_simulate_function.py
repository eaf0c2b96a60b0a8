"""The function path of ``simulate_chips`` as the library's own: keys per example, pytree outputs,
``reduce_fn``, a mesh the caller chooses, and compiled steps that let the caller's function go.

Behaviour, not lines: a stochastic ``apply_fn`` with ``per_example_keys=True`` gives the same
outputs for any ``batch_size`` (and its draws are ``fold_in(sample_key, i)``); a pytree output
equals each leaf simulated alone, across slices and calls; ``reduce_fn`` equals reducing the
full output; a user mesh on 4 forced host devices equals one device and keeps the output split
over the chips; a dropped ``apply_fn`` and what it captured are garbage-collected.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.faults import Fault, chunking, sample_keys, simulate_chips
from invnorm_jax.metrics import per_chip_summary
from invnorm_jax.nn import QuantDense

KEY = jax.random.key(3)
TOL = {"rtol": 1e-5, "atol": 1e-5}
X = jnp.asarray(np.random.default_rng(0).normal(size=(7, 4)), jnp.float32)
PARAMS = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)}
LABELS = jnp.arange(7) % 3
FAULT = Fault("additive", 0.2)
COMMON = {"params": PARAMS, "fault": FAULT, "num_chips": 3, "num_samples": 2, "key": KEY}


def noisy(params, x, keys):
    """A stochastic model drawing from one key per example: noise of example i from keys[i]."""
    noise = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)
    return x @ params["w"] + noise


def two_heads(params, x, key):
    return {"logits": jnp.tanh(x @ params["w"]), "aux": (x.sum(-1), x @ params["w"] * 2)}


_MESH_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec
    from invnorm_jax.faults import Fault, simulate_chips
    assert jax.device_count() == 4, jax.devices()

    def noisy(params, x, keys):
        return {"y": jnp.tanh(x @ params["w"]) + jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)}

    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    common = dict(params={"w": np.ones((4, 3), np.float32)}, fault=Fault("additive", 0.3), num_samples=2,
                  key=jax.random.key(5), per_example_keys=True, batch_size=3)
    line = Mesh(np.asarray(jax.devices()), ("c",))
    grid = Mesh(np.asarray(jax.devices()).reshape(2, 2), ("data", "chips"))
    worst = 0.0
    for chips in (8, 6):  # 8: split evenly over 4 devices, kept split; 6: 2 padding chips dropped
        one = simulate_chips(noisy, x, num_chips=chips, num_devices=1, **common)["y"]
        four = simulate_chips(noisy, x, num_chips=chips, num_devices=4, **common)["y"]
        mine = simulate_chips(noisy, x, num_chips=chips, mesh=line, chip_axis="c", **common)["y"]
        half = simulate_chips(noisy, x, num_chips=chips, mesh=grid, **common)["y"]
        assert one.shape == mine.shape == half.shape == (chips, 2, 5, 3), mine.shape
        assert not np.allclose(mine[0], mine[1]), "chips should differ"
        worst = max(worst, *(float(np.max(np.abs(np.asarray(o) - np.asarray(one)))) for o in (four, mine, half)))
        if chips == 8:
            assert mine.sharding.spec == PartitionSpec("c"), mine.sharding
            assert len({s.device for s in mine.addressable_shards}) == 4
            assert all(s.data.shape[0] == 2 for s in mine.addressable_shards), "gathered, not split"
    # reduce_fn under a mesh: per-example correctness, equal to reducing the one-device outputs
    labels = np.arange(5) % 3
    hit = simulate_chips(noisy, x, num_chips=8, mesh=line, chip_axis="c", labels=labels,
                         reduce_fn=lambda o, y: o["y"].mean(0).argmax(-1) == y, **common)
    full = simulate_chips(noisy, x, num_chips=8, num_devices=1, **common)["y"]
    assert hit.shape == (8, 5) and hit.sharding.spec == PartitionSpec("c"), (hit.shape, hit.sharding)
    assert (np.asarray(hit) == (np.asarray(full).mean(1).argmax(-1) == labels)).all()
    print(f"MAXDIFF {worst!r}")
    """
)


@pytest.fixture(scope="module", autouse=True)
def mesh_run():
    """Start the 4-device subprocess with the module's first test, so that it runs alongside."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", _MESH_SCRIPT],
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


class _CountCompiles:
    """Counts compilations of chip steps while active (JAX's monitoring event)."""

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


# --------------------------------------------------------------------------- keys per example


def test_per_example_keys_make_outputs_independent_of_slicing():
    outs = {
        b: np.asarray(simulate_chips(noisy, X, batch_size=b, per_example_keys=True, **COMMON)) for b in (1, 3, None)
    }
    np.testing.assert_allclose(outs[1], outs[None], **TOL)
    np.testing.assert_allclose(outs[3], outs[None], **TOL)
    # Example i of sample t draws from fold_in(sample_key_t, i), its index in the whole x: at level 0
    # every chip is the fault-free model plus exactly that noise.
    healthy = np.asarray(simulate_chips(noisy, X, batch_size=3, per_example_keys=True, level=0.0, **COMMON))
    samples = sample_keys(KEY, 2)
    for t in range(2):
        keys = jax.vmap(lambda i, t=t: jax.random.fold_in(samples[t], i))(jnp.arange(7))
        np.testing.assert_allclose(healthy[:, t], np.broadcast_to(noisy(PARAMS, X, keys), (3, 7, 3)), **TOL)


def test_without_per_example_keys_a_slice_shares_one_key():
    """The default (one key per slice, the call an apply_fn written for one key expects): the draws
    follow the slice, so batch_size changes them; that is what per_example_keys=True fixes."""

    def one_key(params, x, key):
        assert key.shape == (), "apply_fn should get one key"
        return x @ params["w"] + jax.random.normal(key, (x.shape[0], 3))

    whole = np.asarray(simulate_chips(one_key, X, **COMMON))
    sliced = np.asarray(simulate_chips(one_key, X, batch_size=3, **COMMON))
    np.testing.assert_allclose(sliced[:, :, :3], whole[:, :, :3], **TOL)  # the first slice starts at 0 too
    assert not np.allclose(sliced[:, :, 3:], whole[:, :, 3:])


# --------------------------------------------------------------------------- pytree outputs


def test_pytree_outputs_equal_each_leaf_alone(monkeypatch):
    """Across slices (batch_size=3 of 7) and calls (2 chips a call on the CPU: 3 calls for 5 chips)."""
    monkeypatch.setattr(chunking, "CHIPS_PER_CALL", 2)
    run = dict(COMMON, num_chips=5, batch_size=3)
    tree = simulate_chips(two_heads, X, **run)
    assert jax.tree.structure(tree) == jax.tree.structure(two_heads(PARAMS, X, KEY))
    leaves = jax.tree.leaves(tree)
    for i, leaf in enumerate(leaves):
        alone = simulate_chips(lambda p, x, k, i=i: jax.tree.leaves(two_heads(p, x, k))[i], X, **run)
        assert leaf.shape == (5, 2, *alone.shape[2:]) and alone.shape[2] == 7
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(alone), **TOL)
    assert not np.allclose(tree["logits"][0], tree["logits"][1]), "chips should differ"


class _TwoOutputs(nnx.Module):
    """The library's call convention, returning a dict: the module path takes pytrees too."""

    def __init__(self):
        self.fc = QuantDense(4, 3, bits=8, act_bits=None, rngs=nnx.Rngs(0))

    def __call__(self, x, *, key=None, train=False, deterministic=None, faults=None):
        y = self.fc(x, faults=faults)
        return {"y": y, "norm": jnp.linalg.norm(y, axis=-1)}


def test_module_path_pytree_outputs_and_reduce_fn():
    model, fault = _TwoOutputs(), Fault("bit_flip", 0.1)
    run = {"fault": fault, "num_chips": 3, "num_samples": 1, "key": KEY, "batch_size": 3}
    tree = simulate_chips(model, X, **run)
    assert tree["y"].shape == (3, 1, 7, 3) and tree["norm"].shape == (3, 1, 7)
    np.testing.assert_allclose(np.asarray(tree["norm"]), np.linalg.norm(np.asarray(tree["y"]), axis=-1), **TOL)
    hit = simulate_chips(model, X, labels=LABELS, reduce_fn=lambda o, y: o["y"].mean(0).argmax(-1) == y, **run)
    np.testing.assert_array_equal(np.asarray(hit), np.asarray(tree["y"]).mean(1).argmax(-1) == np.asarray(LABELS))


# --------------------------------------------------------------------------- reduce_fn


def test_reduce_fn_equals_reducing_the_full_output():
    run = dict(COMMON, num_chips=4, per_example_keys=True)
    full = np.asarray(simulate_chips(noisy, X, **run))
    want_hits = full.mean(1).argmax(-1) == np.asarray(LABELS)
    for batch_size in (None, 3):
        hits = simulate_chips(
            noisy, X, batch_size=batch_size, labels=LABELS, reduce_fn=lambda out, y: out.mean(0).argmax(-1) == y, **run
        )
        assert hits.shape == (4, 7)
        np.testing.assert_array_equal(np.asarray(hits), want_hits)
    # a pytree result, without labels: the MC mean and the spread over samples of each example
    stats = simulate_chips(
        noisy, X, batch_size=3, reduce_fn=lambda out, _: {"mean": out.mean(0), "std": out.std(0)}, **run
    )
    np.testing.assert_allclose(np.asarray(stats["mean"]), full.mean(1), **TOL)
    np.testing.assert_allclose(np.asarray(stats["std"]), full.std(1), **TOL)
    accuracy = per_chip_summary(full, LABELS, lambda p, y: jnp.mean(jnp.argmax(p, -1) == y))["per_chip"]
    np.testing.assert_allclose(np.asarray(hits).mean(axis=1), np.asarray(accuracy), **TOL)


# --------------------------------------------------------------------------- caches that let go


def _closures():
    """An apply_fn and a reduce_fn capturing a large array, which only they reference."""
    big = jnp.ones((512, 512))  # what a closure might capture: a dataset, a model's weights

    def apply_fn(params, x, key):
        return x @ params["w"] + big[:1, :3]

    def reduce_fn(out, labels):
        return out.mean(0) + big[0, 0]

    return apply_fn, reduce_fn, weakref.ref(big)


def test_a_dropped_apply_fn_and_what_it_captured_are_freed():
    apply_fn, reduce_fn, big = _closures()
    simulate_chips(apply_fn, X, **COMMON)
    simulate_chips(apply_fn, X, reduce_fn=reduce_fn, **COMMON)
    refs = [big, weakref.ref(apply_fn), weakref.ref(reduce_fn)]
    gc.collect()
    assert big() is not None  # the control: alive while the caller holds its functions
    del apply_fn, reduce_fn
    gc.collect()
    assert [r() is None for r in refs] == [True, True, True], "the step cache kept the caller's function alive"


def test_a_stable_function_compiles_once_a_bound_method_too():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        def apply(self, params, x, key):
            return x @ params["w"] * self.scale

    def defined_once(params, x, key):
        return jnp.sin(x @ params["w"])

    model = Model(2.0)
    first = simulate_chips(model.apply, X, **COMMON)  # a new bound method object at each access
    with _CountCompiles() as compiles:
        again = simulate_chips(model.apply, X, **COMMON)
        plain = simulate_chips(defined_once, X, **COMMON)
        plain_again = simulate_chips(defined_once, X, level=0.1, **COMMON)
    assert compiles.count == 1, f"{compiles.count} compilations: only defined_once's first call should compile"
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    assert plain.shape == plain_again.shape and not np.allclose(plain, plain_again)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "the step cache kept the bound method's object alive"


# --------------------------------------------------------------------------- a mesh you choose


def test_user_mesh_on_four_devices_equals_one_device(mesh_run):
    stdout, stderr = mesh_run.communicate(timeout=300)
    assert mesh_run.returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.startswith("MAXDIFF ")]
    assert lines, stdout
    assert float(lines[-1].split()[1]) <= 1e-5, lines[-1]


def test_a_one_device_mesh_equals_the_default():
    from jax.sharding import Mesh

    mesh = Mesh(np.asarray(jax.devices()[:1]), ("chips",))
    np.testing.assert_allclose(
        np.asarray(simulate_chips(noisy, X, mesh=mesh, per_example_keys=True, **COMMON)),
        np.asarray(simulate_chips(noisy, X, per_example_keys=True, **COMMON)),
        **TOL,
    )


# --------------------------------------------------------------------------- bad input


def test_bad_new_arguments_raise():
    from jax.sharding import Mesh

    mesh = Mesh(np.asarray(jax.devices()[:1]), ("chips",))
    with pytest.raises(ArgumentError, match=r"num_devices=1 and mesh= both given"):
        simulate_chips(noisy, X, mesh=mesh, num_devices=1, **COMMON)
    with pytest.raises(ArgumentError, match=r"chip_axis='c' is not an axis of the mesh, whose axes are \('chips',\)"):
        simulate_chips(noisy, X, mesh=mesh, chip_axis="c", **COMMON)
    with pytest.raises(ArgumentTypeError, match=r"mesh=.* must be a jax.sharding.Mesh"):
        simulate_chips(noisy, X, mesh=jax.devices(), **COMMON)
    with pytest.raises(ArgumentError, match=r"labels= is passed to reduce_fn\(outputs, labels\) only"):
        simulate_chips(noisy, X, labels=LABELS, **COMMON)
    with pytest.raises(ArgumentError, match=r"labels has shape \(5,\): every leaf must have the examples .*\[7, "):
        simulate_chips(noisy, X, labels=LABELS[:5], reduce_fn=lambda o, y: o, **COMMON)
    with pytest.raises(ArgumentTypeError, match=r"reduce_fn=3 must be a function"):
        simulate_chips(noisy, X, reduce_fn=3, **COMMON)
    with pytest.raises(
        ArgumentError,
        match=r"apply_fn's output\['loss'\] has shape \(\): every leaf must have the "
        r"examples on its first axis, \[7, \.\.\.\]",
    ):
        simulate_chips(lambda p, x, k: {"logits": x @ p["w"], "loss": jnp.sum(x)}, X, **COMMON)
    with pytest.raises(ArgumentError, match=r"reduce_fn's result has shape \(\): .* correct.mean\(axis=1\)"):
        simulate_chips(
            two_heads, X, labels=LABELS, reduce_fn=lambda o, y: jnp.mean(o["logits"].mean(0).argmax(-1) == y), **COMMON
        )


def test_per_chip_summary_on_the_wrong_rank_names_the_expected_axes():
    with pytest.raises(ArgumentError, match=r"outputs.shape=\(3, 7\): expected \[chips, samples, batch, \.\.\.\]"):
        per_chip_summary(jnp.zeros((3, 7)), LABELS, lambda p, y: p.mean())
    with pytest.raises(ArgumentError, match=r"outputs has 5 examples .* labels has 7"):
        per_chip_summary(jnp.zeros((3, 2, 5, 3)), LABELS, lambda p, y: p.mean())


# --------------------------------------------------------------------------- the documented example

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def test_the_doc_shows_the_example_file():
    with open(os.path.join(DOCS, "examples", "function_path.py")) as f:
        example = f.read()
    with open(os.path.join(DOCS, "any_model.md")) as f:
        assert "```python\n" + example + "```" in f.read(), (
            "docs/any_model.md differs from docs/examples/function_path.py"
        )


@pytest.mark.slow
def test_documented_function_path_example_runs(capsys):
    import runpy

    runpy.run_path(os.path.join(DOCS, "examples", "function_path.py"))
    out = capsys.readouterr().out
    assert "outputs: {'confidence': (20, 8, 10), 'logits': (20, 8, 10, 4)}" in out, out
    assert "batch_size=3 changes nothing: True" in out and "same on the mesh: True" in out, out
    assert "hits (20, 10)" in out, out
