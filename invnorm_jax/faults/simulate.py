"""Monte-Carlo simulation of many faulty chips, each evaluated with T MC samples.

.. code-block:: text

    outputs[chip, sample, batch, ...] =
      jit( map_chips( vmap_samples( forward(faulty_weights(chip_key), x, sample_key) ) ) )

One jitted call loops over its chips (``jax.lax.fori_loop`` up to a traced count of active
chips), ``chunk_size`` chips (vmapped) at a time, every MC sample of a chip at once; inside the caller's jit or on an accelerator one call
holds every chip, and on a CPU calls of :data:`CHIPS_PER_CALL` chips run one after the other
(asynchronously), so that runs of any chip count share one compilation. The faulty weights are made inside the step
from the chip's key (never as Python-side copies of the model); the MC samples share a chip's
weights, so their ``vmap`` folds into the batch of every conv and matmul. Chips differ in
their weights, so vmapping many of them materializes ``chips x samples x batch`` activations
and turns convolutions into grouped ones: on a CPU one chip per step is fastest
(:data:`DEFAULT_CHUNK`); on a GPU or TPU as many as fit a memory budget (:func:`chunk_for_budget`).
With more than one device (``num_devices``, or the caller's ``mesh``), each call's chips are split
across devices along the chip axis with ``jax.shard_map``, and the outputs stay split
(:mod:`~invnorm_jax.faults.chip_map`).

On a CPU the compiled call depends on the model, the fault's kind and site, ``num_samples``,
the chunk and the shape of one slice of ``x``, and on nothing else: not on the level (traced),
the number of chips (calls of :func:`chips_per_call` chips whose count of active chips is
traced: a call of 1 chip runs only that one) or the number of inputs (slices of ``batch_size``,
the last one padded). A fault-free run of one chip, every level of a sweep and an OOD study
on the same slice shape share one compilation.

Two kinds of model: an NNX module with the library's call convention (its layers consult a
:class:`FaultContext`), or any pure ``apply_fn(params, x, key)`` with a parameter pytree, whose
faulty copy :func:`~invnorm_jax.faults.inject` makes inside the mapped function. Either may
return a pytree of per-example outputs, and a ``reduce_fn`` may reduce each chip's outputs to
per-example values inside the step (:mod:`~invnorm_jax.faults.outputs`), so that every chip's
``samples x batch x ...`` outputs never exist at once. The compiled steps are cached per
function, held weakly (:mod:`~invnorm_jax.faults.step_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from invnorm_jax._checks import describe
from invnorm_jax.errors import ArgumentTypeError
from invnorm_jax.faults.chip_map import chip_mesh, chip_sharding
from invnorm_jax.faults.chip_steps import STEPS, function_step, module_step
from invnorm_jax.faults.chunking import (  # noqa: F401  (DEFAULT_CHUNK, CHIPS_PER_CALL: re-exported)
    CHIPS_PER_CALL,
    DEFAULT_CHUNK,
    accelerator_chunk,
    chips_per_call,
    chunk_for_budget,
)
from invnorm_jax.faults.compiling import chip_compiler_options
from invnorm_jax.faults.context import Fault
from invnorm_jax.faults.inject import check_faults_for_params, select_paths
from invnorm_jax.faults.outputs import check_reduce_args, join_slices, slice_examples, trim
from invnorm_jax.faults.simulate_args import (
    _FUNCTIONAL_HINT,
    check_simulate_args,
    compiled_program,
    fault_without_level,
    prepare_module,
)


def chip_keys(key: jax.Array, num_chips: int) -> jax.Array:
    """Keys of chips ``0..num_chips-1``: chip ``i`` is ``fold_in(chip_root, i)``.

    >>> key = jax.random.key(0)
    >>> same = jax.random.key_data(chip_keys(key, 10)[7]) == jax.random.key_data(chip_keys(key, 100)[7])
    >>> bool(same.all())  # chip 7 is the same chip whether 10 or 100 are simulated
    True
    """
    chip_root, _ = jax.random.split(key)
    return jax.vmap(lambda i: jax.random.fold_in(chip_root, i))(jnp.arange(num_chips))


def sample_keys(key: jax.Array, num_samples: int) -> jax.Array:
    """MC sample keys, shared by every chip: sample ``t`` is ``fold_in(sample_root, t)``.

    Example ``i`` of the input (its index in the whole ``x``) then draws from
    ``fold_in(sample_key, i)``, whatever slice it is evaluated in.

    >>> sample_keys(jax.random.key(0), 4).shape
    (4,)
    """
    _, sample_root = jax.random.split(key)
    return jax.vmap(lambda t: jax.random.fold_in(sample_root, t))(jnp.arange(num_samples))


def simulate_chips(
    model,
    x,
    *,
    fault: Fault,
    num_samples: int,
    key: jax.Array,
    num_chips: int = 100,
    params=None,
    select=None,
    bits: int | None = None,
    chunk_size: int | None = None,
    level=None,
    batch_size: int | None = None,
    deterministic: bool | None = None,
    num_devices: int | None = None,
    compile_for=(),
    per_example_keys: bool = False,
    reduce_fn=None,
    labels=None,
    mesh=None,
    chip_axis: str = "chips",
):
    """Outputs of ``model`` on ``num_chips`` faulty chips, ``num_samples`` MC samples each.

    Chip ``i`` is one realization of ``fault`` drawn from ``fold_in(chip_root, i)``: the same
    chip whether 10 or 100 are simulated, and fixed for every input and MC sample evaluated on
    it. MC sample ``t`` uses the same key on every chip, so that chips differ only by their
    faults and a zero-level fault reproduces the fault-free outputs exactly. A library model
    gets one key per example, ``fold_in(sample_key_t, i)`` with ``i`` the example's index in
    ``x``: its outputs do not depend on ``batch_size`` (a function too, with ``per_example_keys``).

    Args:
      model: either an NNX module with the library's call convention
        ``model(x, *, key, deterministic, faults)`` (the models of :mod:`invnorm_jax.models`,
        or yours built from :mod:`invnorm_jax.nn` layers; weight and pre-activation sites), or
        a pure function ``apply_fn(params, x, key) -> outputs`` with ``params=`` (any JAX model:
        linen ``model.apply``, ``nnx.merge`` of a split model; weight faults via
        :func:`~invnorm_jax.faults.inject`). Its outputs are a pytree of per-example arrays
        (``[batch, ...]`` each). Compiled once per function: pass one defined once, not a new
        lambda per call (the cache holds it weakly: dropping it frees what it captures).
      x: inputs ``[batch, ...]``.
      fault: what to inject, e.g. ``Fault("bit_flip", 0.1)``,
        ``Fault("additive", 0.5, site="preactivation")`` or your own ``Fault(my_fn, level)``
        (:mod:`~invnorm_jax.faults.kinds`); a pytree, so its level may be traced.
      num_samples: MC samples T per chip and input.
      key: typed key; split into the chip root and the MC-sample root.
      num_chips: simulated chips.
      params: the parameter pytree of ``apply_fn`` (functional path only).
      select: which leaves of ``params`` to fault (:func:`~invnorm_jax.faults.select_paths`).
      bits: 1 or k: the stored representation for bit-level and custom faults (functional path
        only; refused when no fault of the step uses it).
      chunk_size: chips vmapped per step of the chip loop; default by backend: on a CPU by
        site (:data:`DEFAULT_CHUNK`), on a GPU/TPU as many as fit half the free device memory
        (:func:`chunk_for_budget`; ``INVNORM_CHIP_MEMORY`` sets the share). Peak memory follows
        it, not ``num_chips``.
      level: overrides ``fault.level`` (a traced value is fine: one compilation per sweep).
      batch_size: evaluate ``x`` in slices of this many inputs (the last one padded to the
        same shape, so that every slice runs the same compiled step).
      deterministic: switch the samplers off (then use T=1); None: each layer's own setting
        (``model.eval()``).
      num_devices: local devices to spread the chips over; default all (the chip count is
        padded up to a multiple of it; the padding chips are dropped). Not with ``mesh``.
      compile_for: other faults (kinds, sites; their levels do not matter) that the same
        compiled step should serve: the step is compiled once for ``fault`` and all of them,
        picking the one to inject at run time (:class:`~invnorm_jax.faults.FaultChoice`), so
        that later calls with any of them reuse it. Outputs are those of a call without it.
        :func:`invnorm_jax.pipeline.evaluation.evaluate_method` passes a config's sweeps and OOD fault.
      per_example_keys: functional path: ``apply_fn`` gets a ``[batch]`` array of keys,
        ``fold_in(sample_key_t, i)`` for example ``i`` of ``x``, as the library's models do, so
        its outputs do not depend on ``batch_size``. Default False, one key per slice,
        ``fold_in(sample_key_t, start)`` (``start``: the slice's first example): the call an
        ``apply_fn`` written for one key expects (e.g. linen's ``rngs={"dropout": key}``), and
        the draws of earlier versions.
      reduce_fn: ``reduce_fn(outputs, labels) -> per-example values``, applied to each chip's
        ``[samples, batch, ...]`` outputs inside the compiled step, so that every chip's
        outputs never exist at once: e.g. ``lambda out, y: out.mean(0).argmax(-1) == y``. Its
        result (a pytree of ``[batch, ...]`` arrays) is joined over the slices of ``x`` like
        the outputs; reduce over the examples afterwards (``.mean(axis=1)``: per-chip accuracy).
      labels: a pytree of ``[batch, ...]`` arrays sliced with ``x`` and passed to ``reduce_fn``
        (None: ``reduce_fn`` gets None).
      mesh: a ``jax.sharding.Mesh`` to split the chips over, along its axis ``chip_axis`` (the
        chip count is padded to a multiple of its size); any devices, on any number of hosts.
        Its other axes, if any, hold copies. Not with ``num_devices``.
      chip_axis: the mesh axis of the chips.

    Returns:
      ``[num_chips, num_samples, batch, ...]`` outputs (logits for classifiers), a pytree of
      them if the model returns one; with ``reduce_fn``, its ``[num_chips, batch, ...]``
      values. Split over the devices along the chips when ``num_chips`` is a multiple of their
      number (JAX arrays have equal shards), not gathered.

    Raises:
      ValueError: no fault site (zero selected leaves, or a module without library fault
        layers), or a bad argument; TypeError: a plain NNX module without ``faults=``.

    >>> apply_fn = lambda p, x, key: x @ p["w"]
    >>> out = simulate_chips(apply_fn, jnp.ones((2, 3)), params={"w": jnp.ones((3, 4))},
    ...                      fault=Fault("additive", 0.1), num_chips=5, num_samples=1, key=jax.random.key(0))
    >>> out.shape
    (5, 1, 2, 4)
    """
    outputs = [
        out
        for _, out in iter_simulate_chips(
            model,
            x,
            fault=fault,
            num_chips=num_chips,
            num_samples=num_samples,
            key=key,
            params=params,
            select=select,
            bits=bits,
            chunk_size=chunk_size,
            level=level,
            batch_size=batch_size,
            deterministic=deterministic,
            num_devices=num_devices,
            compile_for=compile_for,
            per_example_keys=per_example_keys,
            reduce_fn=reduce_fn,
            labels=labels,
            mesh=mesh,
            chip_axis=chip_axis,
        )
    ]
    return join_slices(outputs, example_axis=1 if reduce_fn is not None else 2)


def iter_simulate_chips(
    model,
    x,
    *,
    fault: Fault,
    num_samples: int,
    key: jax.Array,
    num_chips: int = 100,
    params=None,
    select=None,
    bits: int | None = None,
    chunk_size: int | None = None,
    level=None,
    batch_size: int | None = None,
    deterministic: bool | None = None,
    num_devices: int | None = None,
    compile_for=(),
    per_example_keys: bool = False,
    reduce_fn=None,
    labels=None,
    mesh=None,
    chip_axis: str = "chips",
) -> Iterator[tuple[int, object]]:
    """:func:`simulate_chips` one slice of ``x`` at a time: yields ``(start, outputs)``.

    ``outputs`` is ``[num_chips, num_samples, slice, ...]`` for ``x[start:start + batch_size]``
    (``[num_chips, slice, ...]`` with ``reduce_fn``), the same values :func:`simulate_chips`
    puts there. Reduce each slice as it comes (e.g. to per-chip counts) when every chip's
    outputs for the whole test set would not fit in memory.

    Args:
      model, x, fault, ...: as for :func:`simulate_chips`; ``batch_size`` sets the slices
        (default: all of ``x`` at once).

    Yields:
      ``(start, outputs)`` per slice, in order.

    >>> apply_fn = lambda p, x, key: x @ p["w"]
    >>> for start, out in iter_simulate_chips(apply_fn, jnp.ones((4, 3)), params={"w": jnp.ones((3, 2))},
    ...                                       fault=Fault("additive", 0.1), num_chips=4, num_samples=1,
    ...                                       key=jax.random.key(0), batch_size=2):
    ...     print(start, out.shape)
    0 (4, 1, 2, 2)
    2 (4, 1, 2, 2)
    """
    check_simulate_args(x, fault, num_chips, num_samples, chunk_size, level, batch_size, key)
    check_reduce_args(reduce_fn, labels, np.shape(x)[0])
    mesh, chip_axis, devices = chip_mesh(num_devices, mesh, chip_axis)
    program = compiled_program(fault, compile_for)
    if isinstance(model, nnx.Module):
        if params is not None or select is not None or bits is not None:
            raise ArgumentTypeError(
                "params=/select=/bits= are for a function apply_fn(params, x, key); an NNX module with the library's "
                f"call convention carries its own fault sites. {_FUNCTIONAL_HINT}"
            )
        graphdef, state = prepare_module(model, program)  # every fault the step serves has its site
        leaves, treedef = jax.tree.flatten(state)
        arrays = leaves
        step, fns, statics = module_step, (reduce_fn,), (graphdef, treedef, program)
        per_chunk = (deterministic,)
    elif callable(model):
        if params is None:
            raise ArgumentTypeError(
                f"simulate_chips({getattr(model, '__name__', model)!r}, ...) needs params=: "
                "a function is called as apply_fn(params, x, key)."
            )
        bits = check_faults_for_params(program, bits)  # every fault the step serves, against the representation
        arrays = params
        step, fns = function_step, (model, reduce_fn)
        statics, per_chunk = (select_paths(params, select), bits, program, bool(per_example_keys)), ()
    else:
        raise ArgumentTypeError(
            f"model={describe(model)} must be an NNX module or a function apply_fn(params, x, key)."
        )

    def make_step(chunk, options):  # chip_step for this chunk; cached while model / reduce_fn live
        return STEPS.get(step, fns, (*statics, chunk, *per_chunk, mesh, chip_axis, options))

    level = jnp.asarray(fault.level if level is None else level, jnp.float32)
    choice = np.int32(program.index(fault_without_level(fault)))
    per_device = -(-num_chips // devices)
    samples = sample_keys(key, num_samples)
    x = jnp.asarray(x)
    labels = None if labels is None else jax.tree.map(jnp.asarray, labels)
    size = x.shape[0] if batch_size is None else min(int(batch_size), x.shape[0])
    # Inside the caller's jit (anything traced, the key included): one loop over all the chips.
    traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((arrays, x, labels, level, key)))
    options = () if traced else chip_compiler_options()  # inside a caller's jit: the caller's compile
    first_labels = slice_examples(labels, 0, size)
    if chunk_size is not None:
        chunk = int(chunk_size)
    elif jax.default_backend() == "cpu":
        chunk = DEFAULT_CHUNK[fault.site]
    elif traced:  # no compiled step to measure: a modest vmap
        chunk = 8
    else:
        one_chip = np.asarray(jax.random.key_data(chip_keys(key, devices)))
        chunk = accelerator_chunk(
            make_step(1, options),
            (arrays, x[:size], first_labels, one_chip, samples, np.uint32(0), level, np.int32(devices), choice),
            per_device,
        )
    # One call for every chip inside the caller's jit and on accelerators; on a CPU calls of
    # chips_per_call() chips (the same compiled call for any number of chips, so the chunk is
    # not cut down to a small run's chips: a run of fewer chips computes one step's worth).
    whole = traced or jax.default_backend() != "cpu"
    chunk = min(chunk, per_device if whole else CHIPS_PER_CALL)
    per_step = devices * chunk
    per_call = per_step * -(-num_chips // per_step) if whole else chips_per_call(chunk, devices)
    calls = -(-num_chips // per_call)
    # Chips beyond num_chips fill the last call's shape; they are not computed (the call's
    # active count) and their zero rows are dropped below. The key data is sliced on the host:
    # a slice of a device array would be one more dispatched op per call.
    chips = jax.random.key_data(chip_keys(key, calls * per_call))
    chips = chips if traced else np.asarray(chips)
    run = make_step(chunk, options)
    example_axis = 1 if reduce_fn is not None else 2
    sharding = None if traced else chip_sharding(mesh, chip_axis, num_chips)  # kept split over the chips
    for start in range(0, x.shape[0], size):
        xs, ls = slice_examples(x, start, size), slice_examples(labels, start, size)  # the last one padded
        # Inside a caller's jit every chip of the one call runs (None: a static loop).
        outs = [
            run(
                arrays,
                xs,
                ls,
                chips[i * per_call : (i + 1) * per_call],
                samples,
                np.uint32(start),
                level,
                None if traced else np.int32(min(per_call, num_chips - i * per_call)),
                choice,
            )
            for i in range(calls)
        ]
        yield start, trim(outs, num_chips, min(size, x.shape[0] - start), example_axis, sharding)
