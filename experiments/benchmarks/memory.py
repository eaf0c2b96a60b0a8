"""Peak memory of one ``simulate_chips`` run (digits CNN, pre-activation faults) in a fresh
subprocess per point (``chips.py``'s measurement: the peak is reset after compiling and read as
VmHWM): against ``chunk_size`` at a fixed chip count, and against ``num_chips`` at a fixed
chunk, where it should be flat (only the output grows with the chips).
"""

from __future__ import annotations

from experiments.benchmarks.chips import peak_memory

SITE = "preactivation"
#: (samples, images, chunks at the larger chip count, chip counts at chunk 1)
SIZES = {False: (10, 360, (1, 5, 20), (20, 100)), True: (2, 64, (1, 5), (5, 10))}


def rows(quick: bool) -> list[dict]:
    """One row per chunk size, one per chip count, and the chip-count growth."""
    samples, images, chunks, chip_counts = SIZES[quick]
    runs = {}
    for chunk in chunks:
        runs[(chunk, chip_counts[-1])] = peak_memory(SITE, chunk, chip_counts[-1], samples, images)
    for chips in chip_counts[:-1]:
        runs[(1, chips)] = peak_memory(SITE, 1, chips, samples, images)

    def used(point):
        return runs[point]["peak_mib"] - runs[point]["before_mib"]

    out = [
        {
            "name": f"peak memory: chunk_size {chunk}",
            "figures": {
                "run MiB": used((chunk, chip_counts[-1])),
                "compile MiB": runs[(chunk, chip_counts[-1])]["compile_peak_mib"],
            },
            "note": f"{chip_counts[-1]} chips x {samples} samples x {images} images, {SITE} faults",
        }
        for chunk in chunks
    ]
    out += [
        {
            "name": f"peak memory: num_chips {chips} (chunk 1)",
            "figures": {"run MiB": used((1, chips)), "compile MiB": runs[(1, chips)]["compile_peak_mib"]},
            "note": f"{samples} samples x {images} images",
        }
        for chips in chip_counts
    ]
    out_mib = (chip_counts[-1] - chip_counts[0]) * samples * images * 10 * 4 / 2**20
    out.append(
        {
            "name": "peak memory: num_chips ratio at chunk 1",
            "figures": {
                f"{chip_counts[-1]} / {chip_counts[0]} chips": used((1, chip_counts[-1])) / used((1, chip_counts[0]))
            },
            "note": f"flat is 1.0 (the larger output alone adds {out_mib:.1f} MiB)",
        }
    )
    return out
