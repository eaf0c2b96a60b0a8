"""A function as the library's own models: a key per example, pytree outputs, a per-chip reduction, a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import invnorm_jax as inj
from invnorm_jax.faults import Fault

key = jax.random.key(0)
x = jax.random.normal(jax.random.key(1), (10, 16))
labels = jnp.arange(10) % 4
weights = {"w1": jax.random.normal(key, (16, 32)) / 4, "w2": jax.random.normal(key, (32, 4)) / 6}


def apply_fn(p, x, keys):  # keys: [batch], one per example (per_example_keys=True)
    def one(xi, k):  # MC dropout on one example's hidden units
        h = jnp.tanh(xi @ p["w1"])
        return (h * jax.random.bernoulli(k, 0.8, h.shape) / 0.8) @ p["w2"]

    logits = jax.vmap(one)(x, keys)
    return {"logits": logits, "confidence": jax.nn.softmax(logits).max(-1)}  # any pytree of [batch, ...]


common = {"params": weights, "fault": Fault("additive", 0.2), "num_chips": 20, "num_samples": 8, "key": key,
          "per_example_keys": True}
whole = inj.simulate_chips(apply_fn, x, **common)
sliced = inj.simulate_chips(apply_fn, x, batch_size=3, **common)
print("outputs:", {name: tuple(v.shape) for name, v in whole.items()})
print("batch_size=3 changes nothing:", bool(jnp.allclose(whole["logits"], sliced["logits"], atol=1e-5)))


def correct(out, y):  # one chip's outputs [samples, batch, ...] -> per-example values [batch]
    return out["logits"].mean(0).argmax(-1) == y


# Inside the compiled step: the 20 x 8 x 10 x 4 logits never exist at once, only 20 x 10 booleans.
hits = inj.simulate_chips(apply_fn, x, batch_size=3, labels=labels, reduce_fn=correct, **common)
accuracy = hits.mean(axis=1)  # per chip
print(f"hits {tuple(hits.shape)}, accuracy over chips {accuracy.mean():.2f} +- {accuracy.std():.2f}")

# Your own mesh: the chips are split along its "chips" axis (here every local device).
mesh = Mesh(np.asarray(jax.devices()), ("chips",))
on_mesh = inj.simulate_chips(apply_fn, x, mesh=mesh, chip_axis="chips", **common)
print("same on the mesh:", bool(jnp.allclose(on_mesh["logits"], whole["logits"], atol=1e-5)))
