"""Builders of tiny fake dataset folders for tests/test_data.py (no network)."""

from __future__ import annotations

import pathlib

import numpy as np


def write_sine_wav(path: pathlib.Path, freq: float, *, rate: int = 16000, seconds: float = 1.0) -> None:
    """Writes an int16 mono sine wave of `freq` Hz."""
    from scipy.io import wavfile

    t = np.arange(int(rate * seconds)) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, samples)


#: word -> frequency (Hz) of every clip of that word in the fake folder.
SPEECH_FREQS = {"bed": 440.0, "cat": 1000.0, "yes": 2500.0}


def make_speech_folder(root: pathlib.Path) -> dict[str, list[str]]:
    """A Speech Commands-like folder: 4 clips per word, 1 validation + 1 test each.

    Also adds a `_background_noise_` folder that the loader must ignore, and one
    short (0.5 s) clip per word (`short.wav`, training) to exercise padding.

    Returns:
      `{"validation": [...], "test": [...]}` relative paths written to the lists.
    """
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for word, freq in SPEECH_FREQS.items():
        for k in range(4):
            write_sine_wav(root / word / f"clip{k}.wav", freq)
        write_sine_wav(root / word / "short.wav", freq, seconds=0.5)
        lists["validation"].append(f"{word}/clip1.wav")
        lists["test"].append(f"{word}/clip2.wav")
    write_sine_wav(root / "_background_noise_" / "noise.wav", 50.0, seconds=2.0)
    (root / "validation_list.txt").write_text("\n".join(lists["validation"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    return lists


def make_drive_folder(root: pathlib.Path, *, height: int = 37, width: int = 45) -> dict:
    """A DRIVE-layout folder of 2 training and 2 test images (TIF + GIF, via PIL).

    Vessels are bright horizontal lines in the label; the FOV is a centred
    disc; the green channel carries a ramp so normalization is non-trivial.

    Returns:
      `{"fov": bool [H, W], "label": bool [H, W]}` shared by all images.
    """
    from PIL import Image

    yy, xx = np.mgrid[:height, :width]
    fov = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 2.2) ** 2
    label = (yy % 6 == 0) & fov
    splits = {"training": ["21", "22"], "test": ["01", "02"]}
    for split, ids in splits.items():
        for sub in ("images", "1st_manual", "mask"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for n, ident in enumerate(ids):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[..., 1] = (xx * 4 + n * 10 + 100 * label) % 256
            rgb[..., 0] = 200  # a constant red channel: "gray" must differ from "green"
            Image.fromarray(rgb).save(root / split / "images" / f"{ident}_{split}.tif")
            Image.fromarray((label * 255).astype(np.uint8)).save(
                root / split / "1st_manual" / f"{ident}_manual1.gif")
            Image.fromarray((fov * 255).astype(np.uint8)).save(
                root / split / "mask" / f"{ident}_{split}_mask.gif")
    return {"fov": fov, "label": label}
