"""Tiny fake dataset folders for tests/test_data.py (no network).

Thin wrappers over the generators of `invnorm_jax.testing`, with the settings the
tests' expectations rely on (pure tones of known pitch, one shared annotation).
"""

from __future__ import annotations

import pathlib

from invnorm_jax.testing import write_drive_folder, write_sine_wav, write_speech_commands_folder

__all__ = ["SPEECH_FREQS", "make_drive_folder", "make_speech_folder", "write_sine_wav"]

#: word -> frequency (Hz) of every clip of that word in the fake folder.
SPEECH_FREQS = {"bed": 440.0, "cat": 1000.0, "yes": 2500.0}


def make_speech_folder(root: pathlib.Path) -> dict[str, list[str]]:
    """A Speech Commands-like folder: 4 clips per word, 1 validation + 1 test each.

    Clips are pure, steady tones (no noise, detuning or burst), so each clip's dominant
    frequency is its word's. The generator also adds a `_background_noise_` folder that the
    loader must ignore; here one short (0.5 s) clip per word (`short.wav`, training) is added
    to exercise padding.

    Returns:
      `{"validation": [...], "test": [...]}` relative paths written to the lists.
    """
    lists = write_speech_commands_folder(root, words=SPEECH_FREQS, clips_per_word=4, num_validation=1,
                                         num_test=1, noise=0.0, jitter=0.0, burst=False)
    for word, freq in SPEECH_FREQS.items():
        write_sine_wav(root / word / "short.wav", freq, seconds=0.5)
    return lists


def make_drive_folder(root: pathlib.Path, *, height: int = 37, width: int = 45) -> dict:
    """A DRIVE-layout folder of 2 training and 2 test images (TIF + GIF, via PIL).

    Returns:
      `{"fov": bool [H, W], "label": bool [H, W]}`: the FOV shared by all images and the
      annotation of the first test image (`01`).
    """
    truth = write_drive_folder(root, height=height, width=width, train_ids=("21", "22"), test_ids=("01", "02"))
    return {"fov": truth["fov"], "label": truth["labels"]["01"]}
