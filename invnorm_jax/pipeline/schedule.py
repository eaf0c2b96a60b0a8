"""The order in which :func:`invnorm_jax.pipeline.experiment.run_tasks` hands its jobs to the workers.

In detail: docs/pipeline.md (`invnorm_jax.pipeline.schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

import jax
import numpy as np
from flax import nnx

from invnorm_jax.nn.lowp import set_binary_compute

__all__ = ["dense_flops", "forward_flops", "job_flops", "longest_first"]


def _subjaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _subjaxprs(v)


def dense_flops(jaxpr) -> float:
    """2 x multiply-adds of every conv and matmul in ``jaxpr`` (padding taps included).

    A loop body counts once per trip for ``scan`` (its ``length``), once for ``while`` (trip
    count unknown).

    >>> import jax.numpy as jnp
    >>> dense_flops(jax.make_jaxpr(jnp.matmul)(jnp.ones((2, 3)), jnp.ones((3, 4))).jaxpr)
    48.0
    """
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
            taps = math.prod(rhs[d] for d in spec[2:])
            total += 2.0 * math.prod(out) * taps * rhs[spec[1]]
        elif eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        trips = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                total += trips * dense_flops(sub)
    return total


def forward_flops(model: nnx.Module, x) -> float:
    """Dense FLOPs of ``model``'s forward pass on one input ``x[:1]`` (traced, not compiled).

    ``model`` may be abstract (``nnx.eval_shape(lambda: Model(...))``): only shapes matter.

    >>> from invnorm_jax.nn import QuantDense
    >>> dense = nnx.eval_shape(lambda: QuantDense(3, 4, rngs=nnx.Rngs(0)))
    >>> forward_flops(dense, np.zeros((10, 3), np.float32))  # 2 x 3 x 4
    24.0
    """
    graphdef, state = nnx.split(model)

    def forward(state, x1, key):
        # Counted as the layers' convs: a binary layer's banded form (nn.lowp) does more
        # multiply-adds for the same result, which is how it is computed, not how much work it is.
        copy = nnx.merge(graphdef, state)
        set_binary_compute(copy, "float32")
        return copy(x1, key=key)

    x1 = jax.ShapeDtypeStruct((1, *np.shape(x)[1:]), np.asarray(x[:1]).dtype)
    return dense_flops(jax.make_jaxpr(forward)(state, x1, jax.random.key(0)).jaxpr)


def job_flops(config, method: str, *, per_example: float, num_test: int) -> float:
    """Estimated FLOPs of one job: training, every sweep's faulty levels, the OOD study.

    Args:
      config: the task's resolved config.
      method: the job's method (its MC samples: :func:`invnorm_jax.pipeline.evaluation.num_samples_of`).
      per_example: :func:`forward_flops` of the task's model.
      num_test: test inputs per chip (after ``eval.max_test``).

    >>> from invnorm_jax.pipeline.config import load_config
    >>> c = load_config("co2", overrides=["eval.num_chips=10"])
    >>> # 3 x steps x batch + (17 faulty levels x 10 chips + 1) x 5 samples x 457 windows
    >>> job_flops(c, "proposed", per_example=1.0, num_test=457) == 3 * 1500 * 64 + 171 * 5 * 457
    True
    """
    from invnorm_jax.pipeline.evaluation import num_samples_of
    from invnorm_jax.pipeline.ood_eval import shift_stages

    samples = num_samples_of(config, method)
    training = 3 * int(config.train.steps) * int(config.train.batch_size)
    faulty_levels = sum(sum(1 for v in s.levels if float(v) != 0.0) for s in config.sweeps.values())
    sweeps = (faulty_levels * int(config.eval.num_chips) + 1) * samples * num_test
    ood = 0
    if config.ood.shifts:
        stages = sum(len(levels) for levels in shift_stages(config.ood).values())
        ood = stages * (1 + (int(config.ood.num_chips) if config.ood.get("fault") else 0)) * samples * num_test
    return float(per_example) * (training + sweeps + ood)


def longest_first(jobs: Sequence[Hashable], length: Callable[[Hashable], float]) -> list:
    """``jobs`` sorted by ``length``, longest first; equal lengths keep their order.

    >>> longest_first(["a", "b", "c"], {"a": 1.0, "b": 3.0, "c": 1.0}.get)
    ['b', 'a', 'c']
    """
    return sorted(jobs, key=lambda job: -length(job))
