"""How many chips the chip simulator (:mod:`invnorm_jax.faults.simulate`) runs at once.

Two sizes: the **chunk**, chips vmapped together (on a CPU by fault site, measured; on a GPU or
TPU as many as fit a share of the free device memory), and the **call**, chips of one jitted
call, looped over chunk by chunk (on a CPU a fixed number, of which a traced count is computed,
so that runs of any chip count share one compilation).
"""

from __future__ import annotations

import os

import jax

__all__ = ["CHIPS_PER_CALL", "DEFAULT_CHUNK", "chips_per_call", "chunk_for_budget"]

#: Chips vmapped per step of the chip loop on a CPU, by fault site. Measured on the 2-core CPU
#: (docs/benchmarks.md, digits ResNet, 25 chips x 10 samples x 360 images, chunks 1/5/10/25):
#: one chip per step was fastest at both sites. Weight faults give every chip its own
#: weights, so vmapped chips turn every conv into a grouped one (4x slower at chunk 5);
#: pre-activation faults keep the weights shared, yet a bigger batch still lost (1.5x slower
#: at chunk 5), and peak memory grows by about 80 MiB per chip of the chunk.
DEFAULT_CHUNK = {"weights": 1, "preactivation": 1}
#: Chips per jitted call on a CPU: a call loops over its chips (one set of
#: buffers for all of them; a call per chip paid 1.3-1.45x in fresh buffers, docs/benchmarks.md),
#: and every call of this size reuses one compilation, whatever the number of chips.
CHIPS_PER_CALL = 20
#: On a GPU or TPU one small chip does not fill the device: as many chips per step as fit
#: this share of the device's free memory (``INVNORM_CHIP_MEMORY``, a fraction, overrides it),
#: at most :data:`MAX_ACCELERATOR_CHUNK`.
ACCELERATOR_MEMORY_SHARE = 0.5
MAX_ACCELERATOR_CHUNK = 128


def chunk_for_budget(
    per_chip_bytes: int, budget_bytes: int, chips_per_device: int, max_chunk: int = MAX_ACCELERATOR_CHUNK
) -> int:
    """Chips per step on an accelerator: as many as ``budget_bytes`` holds, balanced over the steps.

    >>> chunk_for_budget(10 << 20, 1 << 30, 100)   # 102 chips fit: one step of 100
    100
    >>> chunk_for_budget(40 << 20, 1 << 30, 100)   # 25 fit: 4 steps of 25
    25
    >>> chunk_for_budget(16 << 20, 1 << 30, 100)   # 64 fit: 2 steps of 50 (not 64 + 36 padded to 64)
    50
    """
    fit = max(1, min(max_chunk, chips_per_device, int(budget_bytes // max(int(per_chip_bytes), 1))))
    steps = -(-chips_per_device // fit)
    return -(-chips_per_device // steps)


def chips_per_call(chunk_size: int = 1, num_devices: int = 1) -> int:
    """Chips of one jitted call of :func:`simulate_chips` on a CPU: :data:`CHIPS_PER_CALL` in whole
    steps of ``num_devices x chunk_size`` chips, whatever the number of chips simulated.

    The call computes only the steps that hold its active chips (a traced count), so a run of
    any number of chips reuses the compilation of any other run with the same model, fault kind,
    chunk and input shape: a one-chip fault-free run, a sweep of 100 chips, an OOD study of 3.

    >>> chips_per_call(), chips_per_call(chunk_size=10), chips_per_call(chunk_size=32), chips_per_call(3, 2)
    (20, 20, 32, 18)
    """
    per_step = num_devices * chunk_size
    return per_step * max(1, CHIPS_PER_CALL // per_step)


def accelerator_chunk(step, args: tuple, chips_per_device: int) -> int:
    """:func:`chunk_for_budget` from the compiled one-chip ``step``'s memory (lowered on ``args``) and
    the device's free memory."""
    share = float(os.environ.get("INVNORM_CHIP_MEMORY", ACCELERATOR_MEMORY_SHARE))
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return min(chips_per_device, 8)  # the backend does not say: a modest vmap
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    mem = step.lower(*args).compile().memory_analysis()
    per_chip = mem.temp_size_in_bytes + mem.output_size_in_bytes if mem is not None else 64 << 20
    return chunk_for_budget(per_chip, share * free, chips_per_device)
