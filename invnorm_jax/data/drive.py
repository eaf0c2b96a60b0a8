"""DRIVE retinal vessel segmentation from the folder the user downloaded.

Official layout (https://drive.grand-challenge.org/, registration needed)::

    DRIVE/training/images/21_training.tif      DRIVE/test/images/01_test.tif
    DRIVE/training/1st_manual/21_manual1.gif   DRIVE/test/1st_manual/01_manual1.gif
    DRIVE/training/mask/21_training_mask.gif   DRIVE/test/mask/01_test_mask.gif

Preprocessing: one channel (green, where vessels contrast best, or
grayscale), standardized per image over its field of view (FOV), zero outside
the FOV. Training uses seeded random patches; evaluation uses whole images
padded to a multiple of 16 (four 2x poolings of the U-Net) with the FOV mask,
which is False on the padding so it never counts.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from invnorm_jax.data.common import Split, default_data_root
from invnorm_jax.errors import ArgumentError, DatasetNotFoundError

DRIVE_URL = "https://drive.grand-challenge.org/"
#: (sub-folder, file suffix) of the image, manual annotation and FOV mask.
_LAYOUT = {
    "training": (("images", "_training.tif"), ("1st_manual", "_manual1.gif"), ("mask", "_training_mask.gif")),
    "test": (("images", "_test.tif"), ("1st_manual", "_manual1.gif"), ("mask", "_test_mask.gif")),
}


def default_drive_root() -> pathlib.Path:
    """`<data root>/DRIVE` (data root: `$INVNORM_DATA_DIR` or `~/invnorm_data`).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"INVNORM_DATA_DIR": "/data/sets"}):
    ...     print(default_drive_root())
    /data/sets/DRIVE
    """
    return default_data_root() / "DRIVE"


def _layout_error(root: pathlib.Path, detail: str, *, found: bool = False) -> DatasetNotFoundError:
    what = f"DRIVE at {root} is incomplete" if found else f"DRIVE not found at {root}"
    return DatasetNotFoundError(
        f"{what} ({detail}). Expected layout: {root}/training/images/<id>_training.tif, "
        f"{root}/training/1st_manual/<id>_manual1.gif and {root}/training/mask/<id>_training_mask.gif for every "
        f"training image, the same under {root}/test/ with <id>_test.tif and <id>_test_mask.gif. Download DRIVE "
        f"from {DRIVE_URL} (registration needed) and unzip it there, or pass root=... (command line: "
        f"--config.dataset.kwargs.root=...) or set INVNORM_DATA_DIR (its DRIVE folder is used)."
    )


def drive_files(root: str | os.PathLike, split: str) -> list[tuple[str, pathlib.Path, pathlib.Path, pathlib.Path]]:
    """``(id, image, annotation, FOV mask)`` paths of every image of one split, each checked to exist.

    Raises:
      DatasetNotFoundError: the split has no images, or an image lacks its annotation or mask.
    """
    root = pathlib.Path(root).expanduser()
    (img_dir, img_sfx), (lab_dir, lab_sfx), (fov_dir, fov_sfx) = _LAYOUT[split]
    paths = sorted((root / split / img_dir).glob(f"*{img_sfx}"))
    if not paths:
        raise _layout_error(root, f"no {split}/{img_dir}/*{img_sfx} files", found=root.is_dir())
    files = []
    for path in paths:
        ident = path.name[: -len(img_sfx)]
        lab_path = root / split / lab_dir / f"{ident}{lab_sfx}"
        fov_path = root / split / fov_dir / f"{ident}{fov_sfx}"
        for needed in (lab_path, fov_path):
            if not needed.is_file():
                raise _layout_error(root, f"missing {needed}", found=True)
        files.append((ident, path, lab_path, fov_path))
    return files


def check_drive_folder(root: str | os.PathLike | None = None) -> None:
    """Check, without reading an image, that ``root`` holds both splits of DRIVE (every companion file)."""
    root = pathlib.Path(root).expanduser() if root is not None else default_drive_root()
    if not root.is_dir():
        raise _layout_error(root, "no such folder")
    for split in _LAYOUT:
        drive_files(root, split)


def _read_binary(path: pathlib.Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def _read_channel(path: pathlib.Path, channel: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if channel == "gray":
            return np.asarray(im.convert("L"), dtype=np.float32)
        return np.asarray(im.convert("RGB"), dtype=np.float32)[..., 1]


def normalize_in_fov(image: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Standardizes one image with the mean/std of its FOV pixels; 0 outside.

    Statistics come from inside the FOV because the black surround would
    otherwise dominate them and differ between cameras.

    >>> image = np.array([[0.0, 1.0, 3.0]])
    >>> normalize_in_fov(image, np.array([[False, True, True]])).tolist()  # mean 2, std 1 inside the FOV
    [[0.0, -1.0, 1.0]]
    """
    values = image[fov] if fov.any() else image.ravel()
    out = (image - values.mean()) / max(float(values.std()), 1e-6)
    return np.where(fov, out, 0.0).astype(np.float32)


def read_drive_split(
    root: str | os.PathLike, split: str, *, channel: str = "green"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Reads every image of one DRIVE split.

    Args:
      root: the DRIVE folder (holding `training/` and `test/`).
      split: "training" or "test".
      channel: "green" or "gray".

    Returns:
      `(images float32 [N, H, W, 1] normalized, labels int32 [N, H, W] in {0, 1},
      fov bool [N, H, W], ids)`.

    Raises:
      DatasetNotFoundError: a folder or a companion file is missing.

    >>> import tempfile
    >>> from invnorm_jax.testing import write_drive_folder
    >>> with tempfile.TemporaryDirectory() as root:
    ...     _ = write_drive_folder(root, height=24, width=20, test_ids=("01", "02", "03"))
    ...     images, labels, fov, ids = read_drive_split(root, "test")
    >>> images.shape, labels.shape, fov.dtype, ids
    ((3, 24, 20, 1), (3, 24, 20), dtype('bool'), ['01', '02', '03'])
    """
    if channel not in ("green", "gray"):
        raise ArgumentError(f"channel={channel!r} is not allowed; expected 'green' or 'gray'.")
    images, labels, fovs, ids = [], [], [], []
    for ident, path, lab_path, fov_path in drive_files(root, split):
        fov = _read_binary(fov_path)
        images.append(normalize_in_fov(_read_channel(path, channel), fov))
        labels.append(_read_binary(lab_path).astype(np.int32))
        fovs.append(fov)
        ids.append(ident)
    return np.stack(images)[..., None], np.stack(labels), np.stack(fovs), ids


def pad_to_multiple(array: np.ndarray, multiple: int, axes: tuple[int, int] = (1, 2)) -> np.ndarray:
    """Zero-pads (bottom/right) the two spatial `axes` up to a multiple of `multiple`.

    >>> pad_to_multiple(np.ones((1, 5, 8, 1)), 4).shape
    (1, 8, 8, 1)
    """
    widths = [(0, 0)] * array.ndim
    for ax in axes:
        widths[ax] = (0, -array.shape[ax] % multiple)
    return np.pad(array, widths)


def random_patches(
    images: np.ndarray,
    labels: np.ndarray,
    patch_size: int,
    num_patches: int,
    *,
    seed: int = 0,
    fov: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples square patches lying fully inside the image bounds.

    Args:
      images: `[N, H, W, C]`.
      labels: `[N, H, W]`.
      patch_size: side P of the patches.
      num_patches: how many patches.
      seed: seed of the sampling.
      fov: optional `[N, H, W]` mask; when given, each patch centre is drawn
        inside the FOV, so no patch is pure black surround.

    Returns:
      `(x [num_patches, P, P, C], y [num_patches, P, P], coords [num_patches, 3])`
      where `coords[k] = (image index, top, left)`.

    Raises:
      ArgumentError: patches larger than the images.

    >>> images = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1)
    >>> x, y, coords = random_patches(images, np.zeros((2, 6, 6), np.int32), 3, 5)
    >>> (n, top, left) = coords[0]
    >>> x.shape, y.shape, bool(np.array_equal(x[0], images[n, top:top + 3, left:left + 3]))
    ((5, 3, 3, 1), (5, 3, 3), True)
    """
    n, h, w = labels.shape
    if patch_size > min(h, w):
        raise ArgumentError(f"patch_size={patch_size} is larger than the images ({h}x{w}): use at most {min(h, w)}.")
    rng = np.random.default_rng(seed)
    valid = np.zeros((n, h, w), bool)
    # A top-left corner is valid when the patch fits and, with a FOV, its centre is inside it.
    valid[:, : h - patch_size + 1, : w - patch_size + 1] = True
    if fov is not None:
        half = patch_size // 2
        centred = np.zeros_like(valid)
        centred[:, : h - half, : w - half] = fov[:, half:, half:]
        valid &= centred
    candidates = np.flatnonzero(valid)
    chosen = rng.choice(candidates, num_patches, replace=len(candidates) < num_patches)
    coords = np.stack(np.unravel_index(chosen, valid.shape), axis=1)
    offs = np.arange(patch_size)
    rows = (coords[:, 1:2] + offs)[:, :, None]
    cols = (coords[:, 2:3] + offs)[:, None, :]
    idx = coords[:, 0][:, None, None]
    return images[idx, rows, cols], labels[idx, rows, cols], coords


def load_drive(
    root: str | os.PathLike | None = None,
    *,
    channel: str = "green",
    patch_size: int = 48,
    num_patches: int = 10_000,
    seed: int = 0,
    pad_multiple: int = 16,
    patches_in_fov: bool = True,
) -> Split:
    """Loads DRIVE: random training patches, padded whole test images.

    Args:
      root: the DRIVE folder; None uses `default_drive_root()`.
      channel: "green" (default) or "gray".
      patch_size: side of the training patches.
      num_patches: number of training patches.
      seed: seed of the patch sampling.
      pad_multiple: test images are zero-padded to a multiple of this.
      patches_in_fov: draw patch centres inside the FOV only.

    Returns:
      A `Split` with `x_train` float32 `[num_patches, P, P, 1]`, `y_train` int32
      `[num_patches, P, P]`, `x_test` float32 `[20, Hp, Wp, 1]`, `y_test` int32
      `[20, Hp, Wp]`, 2 classes, and `extras`: `test_mask` (the FOV, bool, padded: the pixels that count in evaluation),
      `image_shape` (unpadded H, W), `train_images` / `train_labels` /
      `train_fov` (whole training images, to resample patches), `patch_coords`,
      `train_ids`, `test_ids`.

    Raises:
      DatasetNotFoundError: the folder or a file of the layout is missing.

    >>> import tempfile
    >>> from invnorm_jax.testing import write_drive_folder
    >>> with tempfile.TemporaryDirectory() as root:
    ...     _ = write_drive_folder(root, height=30, width=30)
    ...     split = load_drive(root, patch_size=16, num_patches=8, pad_multiple=16)
    >>> split.x_train.shape, split.x_test.shape, split.extras["image_shape"], split.num_classes
    ((8, 16, 16, 1), (2, 32, 32, 1), (30, 30), 2)
    """
    root = pathlib.Path(root).expanduser() if root is not None else default_drive_root()
    check_drive_folder(root)
    tr_x, tr_y, tr_fov, tr_ids = read_drive_split(root, "training", channel=channel)
    te_x, te_y, te_fov, te_ids = read_drive_split(root, "test", channel=channel)
    x_p, y_p, coords = random_patches(
        tr_x, tr_y, patch_size, num_patches, seed=seed, fov=tr_fov if patches_in_fov else None
    )
    return Split(
        x_train=x_p,
        y_train=y_p,
        x_test=pad_to_multiple(te_x, pad_multiple),
        y_test=pad_to_multiple(te_y, pad_multiple),
        num_classes=2,
        class_names=("background", "vessel"),
        extras={
            "test_mask": pad_to_multiple(te_fov, pad_multiple),
            "image_shape": te_x.shape[1:3],
            "train_images": tr_x,
            "train_labels": tr_y,
            "train_fov": tr_fov,
            "patch_coords": coords,
            "train_ids": tr_ids,
            "test_ids": te_ids,
        },
    )
