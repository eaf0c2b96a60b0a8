"""Faulty chips for three model styles: Flax linen, stock NNX (split/merge), a plain function."""

import flax.linen as linen
import jax
import jax.numpy as jnp
from flax import nnx

import invnorm_jax as inj
from invnorm_jax.faults import Fault, inject

key = jax.random.key(0)
x = jax.random.normal(jax.random.key(1), (8, 16))
fault = Fault("bit_flip", 0.05)


def summary(name, out):  # out: [chips, samples, batch, classes]
    per_chip = jnp.mean(jnp.abs(out - out[:1]), axis=(1, 2, 3))
    print(f"{name:9s} outputs {tuple(out.shape)}  mean |chip - chip 0|: "
          + " ".join(f"{v:.3f}" for v in per_chip[1:4]))


# 1. Flax linen: model.apply, dropout as the MC sampler.
class MLP(linen.Module):
    @linen.compact
    def __call__(self, x, *, deterministic):
        h = linen.Dropout(0.2)(linen.relu(linen.Dense(32)(x)), deterministic=deterministic)
        return linen.Dense(4)(h)


mlp = MLP()
variables = mlp.init(key, x, deterministic=True)
apply_linen = lambda p, x, k: mlp.apply(p, x, deterministic=False, rngs={"dropout": k})  # noqa: E731
out = inj.simulate_chips(apply_linen, x, params=variables, fault=fault, bits=8,
                         num_chips=100, num_samples=10, key=key)
summary("linen", out)


# 2. Stock NNX layers: nnx.split once, nnx.merge inside the simulation.
class Net(nnx.Module):
    def __init__(self, rngs):
        self.fc1, self.fc2 = nnx.Linear(16, 32, rngs=rngs), nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.fc1(x)))


graphdef, params = nnx.split(Net(nnx.Rngs(0)))
apply_nnx = lambda p, x, k: nnx.merge(graphdef, p)(x)  # noqa: E731
out = inj.simulate_chips(apply_nnx, x, params=params, fault=fault, bits=1, select="kernel",
                         num_chips=100, num_samples=1, key=key)
summary("nnx", out)


# 3. A plain function of a dict of weights.
def f(p, x, k):
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


weights = {"w1": jax.random.normal(key, (16, 32)) / 4, "w2": jax.random.normal(key, (32, 4)) / 6}
out = inj.simulate_chips(f, x, params=weights, fault=Fault("additive", 0.1),
                         num_chips=100, num_samples=1, key=key)
summary("function", out)

# One chip by hand: inject returns a faulty copy of any pytree.
faulty = inject(weights, Fault("bit_flip", 0.05), jax.random.key(7), bits=8)
changed = float(jnp.mean(faulty["w1"] != weights["w1"]))
print(f"inject: {changed:.1%} of w1 changed (expected 1 - 0.95**8 = {1 - 0.95**8:.1%})")

# Never silently fault-free:
try:
    inj.simulate_chips(f, x, params=weights, select="conv", fault=fault, bits=8, num_samples=1, key=key)
except ValueError as err:
    print("ValueError:", str(err)[:110], "...")
