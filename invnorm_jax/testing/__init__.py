"""Test and smoke-run fixtures: generated stand-ins for the datasets that must be downloaded.

The library never imports this package; the pipeline loads it when a config asks for
``dataset.kwargs.synthetic=True`` (the paper configs' ``smoke`` variants), and the tests use it.
"""

from invnorm_jax.testing.synthetic_data import (
    SYNTHETIC_DATASETS,
    get_synthetic,
    synthetic_cifar10,
    synthetic_drive,
    synthetic_speech_commands,
    write_drive_folder,
    write_sine_wav,
    write_speech_commands_folder,
)

__all__ = [
    "SYNTHETIC_DATASETS",
    "get_synthetic",
    "synthetic_cifar10",
    "synthetic_drive",
    "synthetic_speech_commands",
    "write_drive_folder",
    "write_sine_wav",
    "write_speech_commands_folder",
]
