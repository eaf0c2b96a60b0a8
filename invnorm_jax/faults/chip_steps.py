"""The jitted chip step of :func:`~invnorm_jax.faults.simulate_chips`: one per static setting.

A library module's step merges the model and passes each chip's :class:`FaultContext` (or
:class:`FaultChoice`) to its layers; a function's step injects the chip's faults into the
parameter pytree. Both map one chip over its MC samples (``vmap``) and the chips with
:func:`~invnorm_jax.faults.chip_map.map_chips`, and may reduce each chip's outputs inside the call.
"""

from __future__ import annotations

import functools

import jax
from flax import nnx

from invnorm_jax.faults.chip_map import map_chips
from invnorm_jax.faults.context import FaultChoice, FaultContext
from invnorm_jax.faults.inject import inject_paths
from invnorm_jax.faults.outputs import check_examples
from invnorm_jax.faults.step_cache import StepCache
from invnorm_jax.functional.keys import example_keys

# Compiled steps per static setting, holding the caller's apply_fn / reduce_fn weakly (step_cache).
STEPS = StepCache(maxsize=64)
_OUTPUT_HINT = (
    " apply_fn(params, x, key) returns per-example outputs (any pytree of them); reduce over the examples "
    "after simulate_chips returns, or per chip and example with reduce_fn=."
)
_REDUCE_HINT = (
    " reduce_fn(outputs, labels) maps one chip's [samples, batch, ...] outputs to per-example values, e.g. "
    "correct = outputs.mean(0).argmax(-1) == labels; simulate_chips joins them over slices of x, and "
    "returns [chips, batch, ...]: average over the examples then, e.g. correct.mean(axis=1)."
)


def _reduced(out, reduce_fn, labels, n):
    """One chip's ``[samples, n, ...]`` outputs, or their reduction to per-example values."""
    if reduce_fn is None:
        return out
    return check_examples(reduce_fn(out, labels), n, "reduce_fn's result", _REDUCE_HINT)


def module_step(reduce_fn, graphdef, treedef, program, chunk_size, deterministic, mesh, chip_axis, options=()):
    """The jitted step of a library module: made once per static setting (:data:`STEPS`), so that
    a call in the chip loop passes only arrays (no graphdef hashing per chip). ``program``: the
    static faults it serves (level 0), ``choice`` picking one at run time; ``options``: XLA
    compiler options as items (:func:`~invnorm_jax.faults.compiling.chip_compiler_options`)."""

    def chip_step(leaves, x, labels, chips, samples, start, level, active, choice):
        state = jax.tree.unflatten(treedef, leaves)
        chips = jax.random.wrap_key_data(chips, impl=jax.random.key_impl(samples))

        def one_chip(chip_key):
            faults = (
                FaultContext(program[0], chip_key, level)
                if len(program) == 1
                else FaultChoice(program, chip_key, choice, level)
            )

            def one_sample(sample_key):
                model = nnx.merge(graphdef, state)
                keys = example_keys(sample_key, x.shape[0], offset=start)  # by index in the whole x
                out = model(x, key=keys, deterministic=deterministic, faults=faults)
                return check_examples(out, x.shape[0], "the model's output")

            return _reduced(jax.vmap(one_sample)(samples), reduce_fn, labels, x.shape[0])

        return map_chips(one_chip, chips, chunk_size, mesh, chip_axis, active)

    return jax.jit(chip_step, compiler_options=dict(options) or None)


def function_step(apply_fn, reduce_fn, names, bits, program, per_example_keys, chunk_size, mesh, chip_axis, options=()):
    """The jitted step of a function ``apply_fn(params, x, key)`` (as :func:`module_step`)."""

    def chip_step(params, x, labels, chips, samples, start, level, active, choice):
        chips = jax.random.wrap_key_data(chips, impl=jax.random.key_impl(samples))
        n = x.shape[0]

        def one_chip(chip_key):
            inject = [
                functools.partial(inject_paths, fault=f, chip_key=chip_key, names=names, bits=bits, level=level)
                for f in program
            ]
            faulty = inject[0](params) if len(inject) == 1 else jax.lax.switch(choice, inject, params)

            def one_sample(sample_key):
                # Per example, by its index in the whole x (slicing-independent); else one key per slice.
                key = (
                    example_keys(sample_key, n, offset=start)
                    if per_example_keys
                    else jax.random.fold_in(sample_key, start)
                )
                return check_examples(apply_fn(faulty, x, key), n, "apply_fn's output", _OUTPUT_HINT)

            return _reduced(jax.vmap(one_sample)(samples), reduce_fn, labels, n)

        return map_chips(one_chip, chips, chunk_size, mesh, chip_axis, active)

    return jax.jit(chip_step, compiler_options=dict(options) or None)


__all__: list[str] = []  # the simulator's own: simulate_chips is the API
