"""A synthetic DRIVE: a folder in the official layout of small fundus-like images with dark curved
"vessels", read by the real `load_drive` (:mod:`invnorm_jax.testing.synthetic_data` lists every
stand-in)."""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np

from invnorm_jax.data.common import Split
from invnorm_jax.data.drive import load_drive
from invnorm_jax.errors import ArgumentError

#: Official DRIVE image ids: 21..40 training, 01..20 test.
DRIVE_TRAIN_IDS = tuple(str(i) for i in range(21, 41))
DRIVE_TEST_IDS = tuple(f"{i:02d}" for i in range(1, 21))


def mark_synthetic(split: Split) -> Split:
    """``split`` with ``extras["synthetic"] = True``: what every stand-in returns."""
    return dataclasses.replace(split, extras={**(split.extras or {}), "synthetic": True})


def _draw_curve(mask: np.ndarray, rng: np.random.Generator, start: np.ndarray, radius: float) -> None:
    """Marks a random quadratic Bezier curve of half-width ``radius`` from ``start``."""
    h, w = mask.shape
    ctrl = start + rng.uniform(-0.6, 0.6, 2) * (h, w)
    end = start + rng.uniform(-1.0, 1.0, 2) * (h, w)
    length = np.linalg.norm(ctrl - start) + np.linalg.norm(end - ctrl)
    t = np.linspace(0.0, 1.0, max(int(2 * length), 2))[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = dy**2 + dx**2 <= radius**2 + 0.25
    rows = np.round(points[:, 0])[:, None] + dy[disk][None, :]
    cols = np.round(points[:, 1])[:, None] + dx[disk][None, :]
    keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    mask[rows[keep].astype(int), cols[keep].astype(int)] = True


def _vessel_mask(height: int, width: int, rng: np.random.Generator, fov: np.ndarray) -> np.ndarray:
    """A few thick and thin curves radiating from an "optic disc", inside the FOV."""
    mask = np.zeros((height, width), bool)
    disc = np.array([height * rng.uniform(0.35, 0.65), width * rng.uniform(0.2, 0.8)])
    scale = min(height, width) / 64
    for _ in range(6):
        _draw_curve(mask, rng, disc, radius=max(0.5, scale * rng.uniform(0.6, 1.6)))
    return mask & fov


def write_drive_folder(
    root: str | pathlib.Path,
    *,
    height: int = 64,
    width: int = 64,
    train_ids: Sequence[str] = DRIVE_TRAIN_IDS[:2],
    test_ids: Sequence[str] = DRIVE_TEST_IDS[:2],
    seed: int = 0,
) -> dict:
    """Writes a folder in the official DRIVE layout (TIF images, GIF annotations and masks).

    Every image has the same circular FOV (the real ones nearly do); each has its own vessel
    tree. The green channel carries the vessels (dark, as in real fundus images) on an uneven
    illumination plus noise; the red channel is bright and flat, so ``channel="gray"`` differs
    from ``"green"``.

    Args:
      root: folder to write (created).
      height: image height.
      width: image width.
      train_ids: image ids of the training split.
      test_ids: image ids of the test split.
      seed: seed of everything random.

    Returns:
      ``{"fov": bool [H, W], "labels": {image id: bool [H, W]}}`` as written.

    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = write_drive_folder(tmp, height=32, width=40, train_ids=("21",), test_ids=("01",))
    ...     files = sorted(str(p.relative_to(tmp)) for p in pathlib.Path(tmp).rglob("*.*"))
    >>> for name in files:
    ...     print(name)
    test/1st_manual/01_manual1.gif
    test/images/01_test.tif
    test/mask/01_test_mask.gif
    training/1st_manual/21_manual1.gif
    training/images/21_training.tif
    training/mask/21_training_mask.gif
    >>> written["fov"].shape, sorted(written["labels"])
    ((32, 40), ['01', '21'])
    """
    from PIL import Image

    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    fov = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 2.2) ** 2
    labels = {}
    for split, ids in (("training", train_ids), ("test", test_ids)):
        for sub in ("images", "1st_manual", "mask"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for ident in ids:
            vessels = _vessel_mask(height, width, rng, fov)
            green = 110 + 40 * xx / width - 55 * vessels + rng.normal(0, 6, (height, width))
            rgb = np.zeros((height, width, 3), np.float64)
            rgb[..., 0] = 200
            rgb[..., 1] = np.where(fov, green, 0)
            rgb[..., 2] = np.where(fov, 40, 0)
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(
                root / split / "images" / f"{ident}_{split}.tif"
            )
            Image.fromarray((vessels * 255).astype(np.uint8)).save(root / split / "1st_manual" / f"{ident}_manual1.gif")
            Image.fromarray((fov * 255).astype(np.uint8)).save(root / split / "mask" / f"{ident}_{split}_mask.gif")
            labels[ident] = vessels
    return {"fov": fov, "labels": labels}


def synthetic_drive(
    *, height: int = 64, width: int = 64, num_train: int = 2, num_test: int = 2, seed: int = 0, **loader_kwargs
) -> Split:
    """`load_drive` on a generated DRIVE folder (written to a temporary directory).

    ``loader_kwargs`` go to `load_drive` (``patch_size`` must fit the images, e.g. 32 for
    the default 64x64; ``num_patches``, ``pad_multiple``...).

    Args:
      height: image height.
      width: image width.
      num_train: training images, 1..20.
      num_test: test images, 1..20.
      seed: seed of the images and of the patch sampling.
      **loader_kwargs: arguments of `load_drive`.

    Returns:
      The `Split` of `load_drive`, with ``extras["synthetic"] = True``.

    Raises:
      ValueError: ``num_train`` or ``num_test`` outside 1..20.

    >>> split = synthetic_drive(patch_size=32, num_patches=4)
    >>> split.x_train.shape, split.x_test.shape, split.num_classes
    ((4, 32, 32, 1), (2, 64, 64, 1), 2)
    """
    if not (1 <= num_train <= 20 and 1 <= num_test <= 20):
        raise ArgumentError(f"num_train={num_train} and num_test={num_test} must be in 1..20 (DRIVE's ids).")
    with tempfile.TemporaryDirectory(prefix="invnorm_drive_") as tmp:
        write_drive_folder(
            tmp,
            height=height,
            width=width,
            train_ids=DRIVE_TRAIN_IDS[:num_train],
            test_ids=DRIVE_TEST_IDS[:num_test],
            seed=seed,
        )
        split = load_drive(tmp, seed=seed, **loader_kwargs)
    return mark_synthetic(split)
