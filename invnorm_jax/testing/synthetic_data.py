"""Synthetic stand-ins for the datasets that must be downloaded, for smoke runs and tests.

``get_synthetic(name, **kwargs)`` returns a `Split` with the real dataset's
shapes, dtypes, label space and preprocessing, built without network:

* ``cifar10``: random images and labels from TFDS's own mock
  (``tfds.testing.mock_data(policy=USE_CODE)``) passed through `load_cifar10`, so the TFDS
  reading path and the normalization are the real ones.
* ``speech_commands``: a folder in the official v0.02 layout (``<word>/<hash>_nohash_<k>.wav``
  at 16 kHz, ``_background_noise_/``, ``validation_list.txt``, ``testing_list.txt``) written
  to a temporary directory and read by `load_speech_commands` (resampling, padding, split
  lists). Each word is a tone burst of its own pitch, so a model can learn something.
* ``drive`` (:mod:`~invnorm_jax.testing.synthetic_drive`): a folder in the official DRIVE layout (``images/*.tif``, ``1st_manual/*.gif``,
  ``mask/*.gif``) of small fundus-like images with dark curved "vessels", read by
  `load_drive` (FOV normalization, patches, padding).

The numbers a model reaches on these are meaningless: they only show that every stage runs.
The embedded datasets (digits, MNIST-1D, CO2) are offline already and have no synthetic form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from invnorm_jax.data.cifar10 import load_cifar10
from invnorm_jax.data.common import Split
from invnorm_jax.data.speech_commands import WORDS, load_speech_commands
from invnorm_jax.errors import ArgumentError
from invnorm_jax.testing.synthetic_drive import (  # noqa: F401  (re-exported)
    DRIVE_TEST_IDS,
    DRIVE_TRAIN_IDS,
    mark_synthetic,
    synthetic_drive,
    write_drive_folder,
)

# --------------------------------------------------------------------------- Speech Commands


def write_sine_wav(
    path: pathlib.Path, freq: float, *, rate: int = 16000, seconds: float = 1.0, amplitude: float = 0.5
) -> None:
    """Writes an int16 mono sine wave of `freq` Hz.

    >>> from invnorm_jax.data.speech_commands import read_wav
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_sine_wav(pathlib.Path(tmp) / "a.wav", 100.0, rate=1000, seconds=0.2)
    ...     samples, rate = read_wav(pathlib.Path(tmp) / "a.wav")
    >>> samples.shape, rate, np.round(samples[:4].astype(np.float64), 2).tolist()  # 0.5 sin(2 pi 100 t)
    ((200,), 1000, [0.0, 0.29, 0.48, 0.48])
    """
    t = np.arange(int(rate * seconds)) / rate
    _write_int16(path, amplitude * np.sin(2 * np.pi * freq * t), rate)


def _write_int16(path: pathlib.Path, samples: np.ndarray, rate: int) -> None:
    from scipy.io import wavfile

    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16))


def word_frequencies(words: Sequence[str]) -> dict[str, float]:
    """A distinct pitch per word: 150 Hz, 250 Hz, ... (below the 4 kHz Nyquist of 8 kHz audio)."""
    return {word: 150.0 + 100.0 * i for i, word in enumerate(words)}


def _tone_clip(
    freq: float, rng: np.random.Generator, *, rate: int, noise: float, jitter: float, burst: bool
) -> np.ndarray:
    t = np.arange(rate) / rate
    f = freq * (1.0 + jitter * rng.uniform(-1, 1))
    clip = 0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    if burst:
        # A Hann-shaped burst of 0.4-0.7 s somewhere in the second, like a spoken word.
        length = int(rate * rng.uniform(0.4, 0.7))
        start = int(rng.integers(0, rate - length))
        envelope = np.zeros(rate)
        envelope[start : start + length] = np.hanning(length)
        clip = clip * envelope
    return clip + noise * rng.standard_normal(rate)


def write_speech_commands_folder(
    root: str | pathlib.Path,
    *,
    words: Sequence[str] | Mapping[str, float] = WORDS,
    clips_per_word: int = 4,
    num_validation: int = 1,
    num_test: int = 1,
    rate: int = 16000,
    noise: float = 0.05,
    jitter: float = 0.02,
    burst: bool = True,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Writes a folder in the Speech Commands v0.02 layout.

    ``root/<word>/<speaker>_nohash_<k>.wav`` (1 s, int16, ``rate`` Hz) for every word, a
    ``_background_noise_`` folder the loader must skip, and the split lists: the first
    ``num_validation`` clips of each word go to ``validation_list.txt``, the next
    ``num_test`` to ``testing_list.txt``, the rest are training clips.

    Args:
      root: folder to write (created).
      words: word names, or ``{word: frequency_hz}``; default the 35 words of v0.02, each a
        pitch of `word_frequencies`.
      clips_per_word: clips per word, all splits together.
      num_validation: validation clips per word.
      num_test: test clips per word.
      rate: sample rate of the files (the real archive's is 16 kHz).
      noise: std of the white noise added to every clip.
      jitter: relative random detuning of each clip's pitch.
      burst: shape each tone as a 0.4-0.7 s burst at a random time (else the whole second).
      seed: seed of everything random.

    Returns:
      ``{"validation": [...], "test": [...]}``: the relative paths written to the lists.

    Raises:
      ValueError: fewer clips per word than validation and test clips together.

    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     lists = write_speech_commands_folder(tmp, words=("yes", "no"), clips_per_word=3, rate=8000)
    ...     folders = sorted(p.name for p in pathlib.Path(tmp).iterdir())
    >>> folders
    ['_background_noise_', 'no', 'testing_list.txt', 'validation_list.txt', 'yes']
    >>> [len(lists["validation"]), len(lists["test"])], lists["test"][0].startswith("yes/")
    ([2, 2], True)
    """
    root = pathlib.Path(root)
    freqs = dict(words) if isinstance(words, Mapping) else word_frequencies(words)
    if clips_per_word < num_validation + num_test:
        raise ArgumentError(
            f"clips_per_word={clips_per_word} < num_validation + num_test = {num_validation + num_test}."
        )
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for word, freq in freqs.items():
        for k in range(clips_per_word):
            name = f"{int(rng.integers(0, 2**32)):08x}_nohash_{k}.wav"
            clip = _tone_clip(freq, rng, rate=rate, noise=noise, jitter=jitter, burst=burst)
            _write_int16(root / word / name, clip, rate)
            if k < num_validation:
                lists["validation"].append(f"{word}/{name}")
            elif k < num_validation + num_test:
                lists["test"].append(f"{word}/{name}")
    _write_int16(root / "_background_noise_" / "white_noise.wav", 0.3 * rng.standard_normal(2 * rate), rate)
    (root / "validation_list.txt").write_text("".join(p + "\n" for p in lists["validation"]))
    (root / "testing_list.txt").write_text("".join(p + "\n" for p in lists["test"]))
    return lists


def synthetic_speech_commands(
    *,
    words: Sequence[str] = WORDS,
    clips_per_word: int = 4,
    num_validation: int = 1,
    num_test: int = 1,
    seed: int = 0,
    **loader_kwargs,
) -> Split:
    """`load_speech_commands` on a generated folder (written to a temporary directory).

    Labels are the indices of the sorted ``words``: with the default, the real 35-word label
    space. ``loader_kwargs`` go to `load_speech_commands` (e.g. ``sample_rate``).

    Args:
      words: the words (one pitch each).
      clips_per_word: clips per word, all splits together.
      num_validation: validation clips per word.
      num_test: test clips per word.
      seed: seed of the clips and of the loader.
      **loader_kwargs: arguments of `load_speech_commands`.

    Returns:
      The `Split` of `load_speech_commands`, with ``extras["synthetic"] = True``.

    >>> split = synthetic_speech_commands(words=("yes", "no"), clips_per_word=3, sample_rate=4000)
    >>> split.x_train.shape, split.class_names, split.extras["synthetic"]
    ((2, 4000, 1), ('no', 'yes'), True)
    """
    with tempfile.TemporaryDirectory(prefix="invnorm_speech_") as tmp:
        write_speech_commands_folder(
            tmp, words=words, clips_per_word=clips_per_word, num_validation=num_validation, num_test=num_test, seed=seed
        )
        split = load_speech_commands(tmp, source="folder", seed=seed, **loader_kwargs)
    return mark_synthetic(split)


# --------------------------------------------------------------------------- CIFAR-10


@contextlib.contextmanager
def _quiet_absl():
    # TFDS's mock warns once per split that the (non-existent) data folder has no metadata.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def synthetic_cifar10(*, num_train: int = 256, num_test: int = 64, **loader_kwargs) -> Split:
    """`load_cifar10` under ``tfds.testing.mock_data``: random uint8 images, random labels.

    TFDS's mock ignores split slicing, so both splits are generated with
    ``max(num_train, num_test)`` records and cut here. Needs TensorFlow
    (``pip install "invnorm-jax[tf]"``), so its example is not run by the test suite.

    >>> split = synthetic_cifar10(num_train=8, num_test=4)  # doctest: +SKIP
    >>> split.x_train.shape, split.x_test.shape, split.num_classes  # doctest: +SKIP
    ((8, 32, 32, 3), (4, 32, 32, 3), 10)
    """
    import tensorflow_datasets as tfds

    n = max(num_train, num_test)
    with _quiet_absl(), tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
        split = load_cifar10(**loader_kwargs)
    split = dataclasses.replace(
        split,
        x_train=split.x_train[:num_train],
        y_train=split.y_train[:num_train],
        x_test=split.x_test[:num_test],
        y_test=split.y_test[:num_test],
    )
    return mark_synthetic(split)


# --------------------------------------------------------------------------- registry


#: Datasets with a synthetic stand-in, by registry name.
SYNTHETIC_DATASETS: dict[str, Callable[..., Split]] = {
    "cifar10": synthetic_cifar10,
    "speech_commands": synthetic_speech_commands,
    "drive": synthetic_drive,
}


def get_synthetic(name: str, **kwargs) -> Split:
    """The synthetic stand-in of dataset ``name`` (see the module docstring).

    Raises:
      ValueError: ``name`` has no synthetic form (the embedded datasets are offline already).

    >>> get_synthetic("drive", patch_size=16, num_patches=2, height=32, width=32).x_train.shape
    (2, 16, 16, 1)
    >>> try:
    ...     get_synthetic("digits")
    ... except ValueError as err:
    ...     print(err)
    dataset 'digits' has no synthetic stand-in; synthetic=True works for cifar10, drive, speech_commands ...
    """
    try:
        loader = SYNTHETIC_DATASETS[name]
    except KeyError:
        raise ArgumentError(
            f"dataset {name!r} has no synthetic stand-in; synthetic=True works for "
            f"{', '.join(sorted(SYNTHETIC_DATASETS))} (digits, mnist1d and co2 are offline already)."
        ) from None
    return loader(**kwargs)
