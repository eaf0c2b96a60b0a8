"""What a chip simulation is asked for, checked before anything is compiled, and the model it runs.

:func:`~invnorm_jax.faults.simulate.simulate_chips`' argument checks (each bad argument named
with what to pass instead), the static faults one compiled step serves (``compile_for``), and
the numbered copy of a library model whose fault sites are checked against every one of them.
"""

from __future__ import annotations

import dataclasses
import inspect

import jax
import numpy as np
from flax import nnx

from invnorm_jax._checks import check_key, check_positive_int, describe
from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.faults.context import Fault, has_preactivation_sites
from invnorm_jax.faults.inject import check_level_override
from invnorm_jax.nn.keys import number_fault_sites


def _takes_faults(model) -> bool:
    """Whether ``model`` follows the library's call convention (a ``faults=`` keyword)."""
    try:
        params = inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False
    return "faults" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


_FUNCTIONAL_HINT = (
    "Faults reach stock nnx / linen layers through their parameters: graphdef, params = nnx.split(model); "
    "simulate_chips(lambda p, x, key: nnx.merge(graphdef, p)(x), x, params=params, fault=fault, bits=..., "
    "select=...) (docs/any_model.md)."
)


def check_simulate_args(x, fault, num_chips, num_samples, chunk_size, level, batch_size, key):
    if not isinstance(fault, Fault):
        raise ArgumentTypeError(
            f"fault={describe(fault)} must be an invnorm_jax.faults.Fault, e.g. Fault('bit_flip', 0.1)."
        )
    check_level_override(fault, level)  # the override skips Fault's own checks: run them on a concrete level
    for name, value in (("num_chips", num_chips), ("num_samples", num_samples)):
        check_positive_int(value, name)
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ArgumentError(f"chunk_size={chunk_size!r} must be an integer >= 1 or None (the per-site default).")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ArgumentError(f"batch_size={batch_size!r} must be an integer >= 1 or None (the whole batch at once).")
    check_key(key, single=True)
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ArgumentError(
            f"x.shape={tuple(x.shape)}: expected a batch of at least one input, [batch, ...] "
            "(a single input is x[None])."
        )


def fault_without_level(fault: Fault) -> Fault:
    """``fault`` without its level (a compiled step's static part; the level is traced)."""
    return dataclasses.replace(fault, level=0.0)


def compiled_program(fault: Fault, compile_for) -> tuple[Fault, ...]:
    """The static faults one compiled step serves: those of ``compile_for``, in order, and ``fault``."""
    if isinstance(compile_for, Fault) or not isinstance(compile_for, (list, tuple)):
        raise ArgumentTypeError(
            f"compile_for={describe(compile_for)} must be a list or tuple of invnorm_jax.faults.Fault "
            "(e.g. the faults of every sweep), or () for none."
        )
    for f in compile_for:
        if not isinstance(f, Fault):
            raise ArgumentTypeError(
                f"compile_for holds {describe(f)}: expected invnorm_jax.faults.Fault "
                "instances, e.g. (Fault('bit_flip', 0), Fault('additive', 0, site='preactivation'))."
            )
    program = tuple(dict.fromkeys(fault_without_level(f) for f in compile_for))
    return program if fault_without_level(fault) in program else (*program, fault_without_level(fault))


def prepare_module(model: nnx.Module, program: tuple[Fault, ...]):
    """``(graphdef, state)`` of a numbered copy of ``model``; the caller's model is untouched.

    Every fault of ``program`` must find its site in the model."""
    name = type(model).__name__
    if not _takes_faults(model):
        raise ArgumentTypeError(
            f"{name} is a plain NNX module: its __call__ takes no faults= (the library's convention is "
            f"model(x, *, key, deterministic, faults)). {_FUNCTIONAL_HINT}"
        )
    copy = nnx.merge(*nnx.split(model))
    number_fault_sites(copy)  # and the stochastic layers' key ids
    for fault in program:
        _check_sites(copy, name, fault)
    return nnx.split(copy)


def _check_sites(copy: nnx.Module, name: str, fault: Fault) -> None:
    """Raise unless the numbered ``copy`` (of a model called ``name``) has a site for ``fault``."""
    if fault.site == "preactivation" and not has_preactivation_sites(copy):
        raise ArgumentError(
            f"site='preactivation' needs binary activations (sign()), and {name} has none; use site='weights'."
        )
    if fault.site == "weights":
        sites = [n for _, n in nnx.iter_graph(copy) if isinstance(n, nnx.Module) and hasattr(n, "fault_id")]
        reached = [n for n in sites if getattr(n, "bits", None) is not None or fault.include_full_precision]
        # A model without parameters has nothing to fault (a stub that returns constants).
        has_weights = bool(jax.tree.leaves(nnx.state(copy, nnx.Param)))
        if not reached and has_weights:
            raise ArgumentError(
                f"no fault site: {name} has {len(sites)} layers with deployed weights (looked for the library's "
                "BinaryConv/BinaryDense/QuantConv/QuantDense, and quantized ones unless include_full_precision=True), "
                f"so every chip would be fault-free. {_FUNCTIONAL_HINT}"
            )
