"""Google Speech Commands v0.02 (35 words) at 8 kHz, read without TensorFlow.

Two sources:

* `source="folder"` (the paper's 35-word setup): the official archive
  extracted into a local folder, one sub-folder per word plus
  `validation_list.txt` / `testing_list.txt`. WAVs are read with
  `scipy.io.wavfile`, resampled 16 kHz -> 8 kHz with
  `scipy.signal.resample_poly`, and zero-padded / cropped to 1 s.
* `source="tfds"`: the TFDS `speech_commands` builder. Its only config has
  **12 classes** (10 keywords + `_silence_` + `_unknown_`); the original word of
  an `_unknown_` clip is not stored, so the 35-word labels cannot be recovered.
  Its `Audio` feature also needs TensorFlow to decode (the `tf` extra).

`source="auto"` prefers the folder and falls back to TFDS with a warning.
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings

import numpy as np

from invnorm_jax.data.common import Split, default_data_root, subsample_per_class
from invnorm_jax.data.tfds_sources import TF_EXTRA_HINT, open_data_sources, read_records
from invnorm_jax.errors import ArgumentError, DatasetNotFoundError

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
FOLDER_NAME = "speech_commands_v0.02"
#: Sample rate of the model input (the M5 network in the paper runs at 8 kHz).
SAMPLE_RATE = 8000
#: The 35 words of v0.02, sorted: label i is WORDS[i] on the full dataset.
WORDS = tuple(
    sorted(
        "backward bed bird cat dog down eight five follow forward four go happy house learn "
        "left marvin nine no off on one right seven sheila six stop three tree two up visual "
        "wow yes zero".split()
    )
)


def default_speech_root() -> pathlib.Path:
    """`<data root>/speech_commands_v0.02` (data root: `$INVNORM_DATA_DIR` or `~/invnorm_data`).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"INVNORM_DATA_DIR": "/data/sets"}):
    ...     print(default_speech_root())
    /data/sets/speech_commands_v0.02
    """
    return default_data_root() / FOLDER_NAME


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads a WAV as mono float32 in [-1, 1].

    Returns:
      `(samples [T], sample_rate)`: the argument order of `fix_length`, so
      `fix_length(*read_wav(path))` gives a model-ready clip.

    >>> import pathlib, tempfile
    >>> from invnorm_jax.testing import write_sine_wav
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_sine_wav(pathlib.Path(tmp) / "a.wav", 440.0, rate=8000, seconds=0.5, amplitude=0.5)
    ...     samples, rate = read_wav(pathlib.Path(tmp) / "a.wav")
    >>> samples.shape, rate, round(float(samples.max()), 2)
    ((4000,), 8000, 0.5)
    """
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    if data.ndim > 1:
        data = data.mean(axis=1)
    if np.issubdtype(data.dtype, np.integer):
        # Full-scale of the stored integer type (int16 -> 32768).
        data = data / float(-np.iinfo(data.dtype).min)
    return np.asarray(data, dtype=np.float32), int(rate)


def fix_length(audio: np.ndarray, rate: int, *, target_rate: int = SAMPLE_RATE, seconds: float = 1.0) -> np.ndarray:
    """Resamples to `target_rate` and zero-pads (at the end) or crops to `seconds`.

    `resample_poly` applies an anti-aliasing low-pass filter, so content above
    the new Nyquist frequency is removed rather than folded back.

    Args:
      audio: 1-D float samples.
      rate: sample rate of `audio`.
      target_rate: output sample rate.
      seconds: output duration.

    Returns:
      float32 `[round(target_rate * seconds)]`.

    >>> fix_length(np.ones(16000), 16000, target_rate=8000).shape  # resampled: half the samples
    (8000,)
    >>> fix_length(np.ones(3), 4, target_rate=4, seconds=1.5).tolist()  # zero-padded at the end
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """
    from scipy.signal import resample_poly

    if rate != target_rate:
        g = math.gcd(rate, target_rate)
        audio = resample_poly(audio, target_rate // g, rate // g)
    n = int(round(target_rate * seconds))
    audio = np.asarray(audio, dtype=np.float32)[:n]
    return np.pad(audio, (0, n - len(audio)))


def _missing_folder_error(root: pathlib.Path, detail: str, *, found: bool = False) -> DatasetNotFoundError:
    what = f"Speech Commands v0.02 at {root} is incomplete" if found else f"Speech Commands v0.02 not found at {root}"
    return DatasetNotFoundError(
        f"{what} ({detail}). Expected {root}/<word>/*.wav for each word, plus {root}/validation_list.txt and "
        f"{root}/testing_list.txt. Download {SPEECH_COMMANDS_URL} yourself (about 2.3 GB) and extract it there "
        f"(mkdir -p {root} && tar -xzf speech_commands_v0.02.tar.gz -C {root}), or pass root=... (command line: "
        f"--config.dataset.kwargs.root=...) or set INVNORM_DATA_DIR. (source='tfds' gives a 12-class variant "
        f"instead; it needs TensorFlow: {TF_EXTRA_HINT}.)"
    )


def index_speech_folder(root: pathlib.Path) -> dict[str, list[tuple[str, int]]]:
    """Lists the clips of each split as `(relative path, label)` pairs.

    Word folders are those not starting with "_" (so `_background_noise_` is
    excluded), sorted to give label indices. A clip is in the validation or test
    split when its `word/file.wav` path is listed in `validation_list.txt` or
    `testing_list.txt`; every other clip is training data.

    Returns:
      `{"words": [...], "train": [...], "validation": [...], "test": [...]}`
      (the "words" entry is the sorted word list).

    Raises:
      DatasetNotFoundError: folder or list files missing.

    >>> import tempfile
    >>> from invnorm_jax.testing import write_speech_commands_folder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_speech_commands_folder(tmp, words=("yes", "no"), clips_per_word=3, rate=8000)
    ...     index = index_speech_folder(pathlib.Path(tmp))
    >>> index["words"], [len(index[s]) for s in ("train", "validation", "test")]
    (['no', 'yes'], [2, 2, 2])
    """
    if not root.is_dir():
        raise _missing_folder_error(root, "no such folder")
    lists = {}
    for split, fname in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        if not (root / fname).is_file():
            raise _missing_folder_error(root, f"{fname} is missing", found=True)
        lists[split] = set((root / fname).read_text().split())
        # A clip listed but absent: the archive was extracted in part (or a word deleted).
        missing = sorted(rel for rel in lists[split] if not (root / rel).is_file())
        if missing:
            raise _missing_folder_error(
                root,
                f"{len(missing)} clips listed in {fname} are missing, e.g. {missing[0]}; extract the archive "
                "again, or delete the lines of the words you removed",
                found=True,
            )
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not words:
        raise _missing_folder_error(root, "no word folders", found=True)
    index: dict = {"words": words, "train": [], "validation": [], "test": []}
    for label, word in enumerate(words):
        for wav in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = next((s for s in ("validation", "test") if rel in lists[s]), "train")
            index[split].append((rel, label))
    return index


def _load_clips(
    root: pathlib.Path, entries: list, sample_rate: int, max_per_class: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([label for _, label in entries], dtype=np.int32)
    keep = subsample_per_class(labels, max_per_class, seed)
    clips = [fix_length(*read_wav(root / entries[i][0]), target_rate=sample_rate) for i in keep]
    x = np.stack(clips)[..., None] if clips else np.zeros((0, sample_rate, 1), np.float32)
    return x.astype(np.float32), labels[keep]


def _load_from_folder(root, sample_rate, max_per_class, seed) -> Split:
    index = index_speech_folder(root)
    arrays = {
        split: _load_clips(root, index[split], sample_rate, max_per_class, seed)
        for split in ("train", "validation", "test")
    }
    return _split(arrays, tuple(index["words"]), "folder")


def _split(arrays: dict, names: tuple[str, ...], source: str) -> Split:
    """A Split from ``{"train"|"validation"|"test": (x, y)}``."""
    return Split(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_val=arrays["validation"][0],
        y_val=arrays["validation"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        num_classes=len(names),
        class_names=names,
        extras={"source": source},
    )


def speech_records_to_arrays(
    records: list[dict], sample_rate: int = SAMPLE_RATE, source_rate: int = 16000
) -> tuple[np.ndarray, np.ndarray]:
    """TFDS speech records (`audio` int16 at 16 kHz, `label`) -> `[N, T, 1]`, `[N]`."""
    clips = [
        fix_length(np.asarray(r["audio"], np.float32) / 32768.0, source_rate, target_rate=sample_rate) for r in records
    ]
    x = np.stack(clips)[..., None].astype(np.float32)
    return x, np.array([int(r["label"]) for r in records], dtype=np.int32)


def _load_from_tfds(data_dir, sample_rate, max_per_class, seed) -> Split:
    sources = open_data_sources("speech_commands", ["train", "validation", "test"], data_dir, needs_tensorflow=True)
    out = {}
    for split, source in sources.items():
        records = read_records(source)
        keep = subsample_per_class(np.array([int(r["label"]) for r in records]), max_per_class, seed)
        out[split] = speech_records_to_arrays([records[i] for i in keep], sample_rate)
    return _split(out, tuple(sources["train"].dataset_info.features["label"].names), "tfds")


def load_speech_commands(
    root: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    sample_rate: int = SAMPLE_RATE,
    max_per_class: int | None = None,
    seed: int = 0,
) -> Split:
    """Loads Speech Commands as 1-s clips at `sample_rate`.

    Args:
      root: extracted v0.02 archive; None uses `default_speech_root()`.
      source: "folder" (35 words), "tfds" (12 classes, needs TensorFlow) or
        "auto" (folder when present, else TFDS with a warning).
      data_dir: TFDS data folder for `source="tfds"`.
      sample_rate: output sample rate (clips are `sample_rate` samples long).
      max_per_class: keep at most this many clips per class and split (smoke runs).
      seed: seed of that subsampling.

    Returns:
      A `Split` with `x_*` float32 `[N, sample_rate, 1]` in [-1, 1], `y_*`
      int32 `[N]`, the validation split in `x_val`/`y_val`, and the sorted
      words in `class_names`.

    Raises:
      DatasetNotFoundError: no usable source; the message says what to download.
      ValueError: unknown `source`.

    >>> import tempfile
    >>> from invnorm_jax.testing import write_speech_commands_folder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_speech_commands_folder(tmp, words=("yes", "no"), clips_per_word=3, rate=8000)
    ...     split = load_speech_commands(tmp, source="folder", sample_rate=4000)
    >>> split.x_train.shape, split.x_val.shape, split.class_names
    ((2, 4000, 1), (2, 4000, 1), ('no', 'yes'))
    """
    root = pathlib.Path(root).expanduser() if root is not None else default_speech_root()
    if source == "folder":
        return _load_from_folder(root, sample_rate, max_per_class, seed)
    if source == "tfds":
        return _load_from_tfds(data_dir, sample_rate, max_per_class, seed)
    if source != "auto":
        raise ArgumentError(f"source={source!r} is not allowed; expected 'auto', 'folder' or 'tfds'.")
    if root.is_dir():
        return _load_from_folder(root, sample_rate, max_per_class, seed)
    try:
        split = _load_from_tfds(data_dir, sample_rate, max_per_class, seed)
    except (ImportError, DatasetNotFoundError) as err:
        raise _missing_folder_error(root, "no such folder, and TFDS failed too") from err
    warnings.warn("Speech Commands loaded from TFDS: 12 classes, not the paper's 35 words.", stacklevel=2)
    return split
