"""The chip axis of a simulation: which devices hold which chips, and the loop over a device's chips.

Chips are embarrassingly parallel: one jitted call splits its chips into equal blocks along a
mesh axis (``jax.shard_map``), and each device loops over its block a chunk of vmapped chips at
a time. The mesh is the caller's (:func:`chip_mesh`: ``mesh=`` with its ``chip_axis``, any
number of hosts) or the first ``num_devices`` local devices. Outputs are any pytree whose
leaves lead with the chip axis; they stay split over the chip axis, never gathered onto one
device (:func:`chip_sharding`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from invnorm_jax._checks import describe
from invnorm_jax.errors import ArgumentError, ArgumentTypeError

__all__ = ["chip_mesh", "chip_sharding", "map_chips"]


def chip_mesh(num_devices=None, mesh=None, chip_axis: str = "chips") -> tuple[Mesh | None, str, int]:
    """``(mesh, chip_axis, devices)``: the mesh chips are split over and the number of blocks.

    ``mesh`` is used as it is (its other axes, if any, hold copies of the same chips); without
    it, ``num_devices`` local devices (default all) along an axis ``chip_axis``; one device
    gives no mesh (a plain loop, no ``shard_map``).

    >>> chip_mesh(1)
    (None, 'chips', 1)
    >>> m = Mesh(np.asarray(jax.devices()[:1]), ("c",))
    >>> chip_mesh(mesh=m, chip_axis="c")[1:]
    ('c', 1)
    """
    if not isinstance(chip_axis, str):
        raise ArgumentTypeError(f"chip_axis={describe(chip_axis)} must be the name of a mesh axis, e.g. 'chips'.")
    if mesh is not None:
        if num_devices is not None:
            raise ArgumentError(
                f"num_devices={num_devices!r} and mesh= both given: pass one (the mesh's "
                f"{chip_axis!r} axis sets the devices)."
            )
        if not isinstance(mesh, Mesh):
            raise ArgumentTypeError(
                f"mesh={describe(mesh)} must be a jax.sharding.Mesh, e.g. Mesh(jax.devices(), ('chips',))."
            )
        if chip_axis not in mesh.axis_names:
            raise ArgumentError(
                f"chip_axis={chip_axis!r} is not an axis of the mesh, whose axes are "
                f"{tuple(mesh.axis_names)}: pass chip_axis= one of them."
            )
        return mesh, chip_axis, int(mesh.shape[chip_axis])
    local = jax.local_device_count()
    devices = local if num_devices is None else num_devices
    if not isinstance(devices, (int, np.integer)) or not 1 <= devices <= local:
        raise ArgumentError(
            f"num_devices={num_devices!r} must be in 1..{local} (the local devices); "
            "for devices of other hosts pass mesh=."
        )
    if devices == 1:
        return None, chip_axis, 1
    return Mesh(np.asarray(jax.devices()[:devices]), (chip_axis,)), chip_axis, int(devices)


def chip_sharding(mesh: Mesh | None, chip_axis: str, num_chips: int):
    """Outputs' sharding: split over ``chip_axis``, or ``None`` (JAX's choice) when there is no
    mesh or ``num_chips`` does not split evenly (JAX arrays have equal shards).

    >>> chip_sharding(None, "chips", 8) is None
    True
    """
    if mesh is None or num_chips % mesh.shape[chip_axis]:
        return None
    return NamedSharding(mesh, PartitionSpec(chip_axis))


def map_chips(one_chip, chips, chunk_size: int, mesh: Mesh | None, chip_axis: str, active):
    """``one_chip`` over the first ``active`` of one call's ``chips`` (a traced count: one compiled
    call serves any number of chips up to its size): a loop on each device over chunks of
    ``chunk_size`` vmapped chips, writing into one output buffer per leaf (the chips of a call
    reuse one set of buffers). The rows of inactive chips stay zero. ``active=None``: every
    chip, in a loop of static length (a scan, so that a caller's ``jax.grad`` can go through it).

    >>> rows = jnp.arange(8.0).reshape(4, 2)   # a chip's key data, one row per chip
    >>> map_chips(lambda r: {"sum": r.sum()}, rows, 1, None, "chips", active=3)["sum"].tolist()
    [1.0, 5.0, 9.0, 0.0]
    """

    def local_chips(keys, count, varying=()):
        steps_max = keys.shape[0] // chunk_size
        blocks = keys.reshape(steps_max, chunk_size, *keys.shape[1:])
        run = (lambda k: jax.tree.map(lambda o: o[None], one_chip(k[0]))) if chunk_size == 1 else jax.vmap(one_chip)
        shapes = jax.eval_shape(run, blocks[0])
        out = jax.tree.map(lambda s: jnp.zeros((steps_max, *s.shape), s.dtype), shapes)
        if varying:  # inside shard_map: the buffer differs per device, as the loop's outputs do
            out = jax.tree.map(lambda o: jax.lax.pcast(o, varying, to="varying"), out)

        def body(i, out):
            return jax.tree.map(lambda o, new: jax.lax.dynamic_update_index_in_dim(o, new, i, 0), out, run(blocks[i]))

        steps = steps_max if count is None else jnp.minimum((count + chunk_size - 1) // chunk_size, steps_max)
        out = jax.lax.fori_loop(0, steps, body, out)
        return jax.tree.map(lambda o: o.reshape(keys.shape[0], *o.shape[2:]), out)

    active = None if active is None else jnp.asarray(active, jnp.int32)
    if mesh is None:
        return local_chips(chips, active)
    per_device = chips.shape[0] // mesh.shape[chip_axis]
    spec = PartitionSpec(chip_axis)

    def device_chips(keys, count):  # this device's block of chips: the active ones among them
        first = jax.lax.axis_index(chip_axis) * per_device
        return local_chips(keys, jnp.clip(count - first, 0, per_device), varying=(chip_axis,))

    if active is None:
        return jax.shard_map(
            lambda keys: local_chips(keys, None, varying=(chip_axis,)), mesh=mesh, in_specs=spec, out_specs=spec
        )(chips)
    return jax.shard_map(device_chips, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec)(chips, active)
