"""Tests of invnorm_jax.data: embedded sets, TFDS path (mocked), local folders."""

from __future__ import annotations

import ast
import importlib.util
import pathlib

import numpy as np
import pytest

from invnorm_jax import data
from invnorm_jax.testing import write_drive_folder, write_sine_wav, write_speech_commands_folder

DATA_DIR = pathlib.Path(data.__file__).parent


# --------------------------------------------------------------------------- tiny fake dataset folders
# Thin wrappers over the generators of invnorm_jax.testing, with the settings the expectations
# below rely on (pure tones of known pitch, one shared annotation).

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
    lists = write_speech_commands_folder(
        root, words=SPEECH_FREQS, clips_per_word=4, num_validation=1, num_test=1, noise=0.0, jitter=0.0, burst=False
    )
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


# --------------------------------------------------------------------------- embedded


def test_digits_shapes_split_and_standardization():
    d = data.load_digits(seed=0)
    assert d.x_train.shape == (1437, 8, 8, 1) and d.x_test.shape == (360, 8, 8, 1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.num_classes == 10
    assert abs(d.x_train.mean()) < 1e-5 and abs(d.x_train.std() - 1) < 1e-5
    # Stratified: every class has 36 (+-1) test images.
    assert np.all(np.abs(np.bincount(d.y_test, minlength=10) - 36) <= 1)
    # The scale is the documented one: raw pixels / 16, standardized with train statistics.
    assert d.destandardize(d.x_train).min() == pytest.approx(0.0, abs=1e-6)
    assert d.destandardize(d.x_train).max() == pytest.approx(1.0, abs=1e-6)
    again = data.load_digits(seed=0)
    np.testing.assert_array_equal(again.x_test, d.x_test)
    assert not np.array_equal(data.load_digits(seed=1).y_test, d.y_test)


def test_mnist1d_generated_locally_and_leaves_global_rng_alone():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    d = data.load_mnist1d(num_samples=1000)
    assert np.random.rand() == expected_next
    assert d.x_train.shape == (800, 40, 1) and d.x_test.shape == (200, 40, 1)
    assert d.x_train.dtype == np.float32 and d.y_test.dtype == np.int32
    assert set(np.unique(d.y_train)) == set(range(10))
    assert abs(d.x_train.mean()) < 0.1 and abs(d.x_train.std() - 1) < 0.1


def test_co2_fill_windows_and_split():
    import statsmodels.api as sm

    raw = sm.datasets.co2.load_pandas().data["co2"].to_numpy()
    assert np.isnan(raw[6]) and np.isnan(raw[11]) and not np.isnan(raw[5:9:2]).any()
    c = data.load_co2(window=52, horizon=1)  # one week ahead: every week is a target
    series = c.extras["series_ppm"]
    assert series.shape == (2284,) and not np.isnan(series).any()
    assert series[6] == pytest.approx((raw[5] + raw[7]) / 2, abs=1e-4)  # one-week gap
    assert series[11] == pytest.approx(raw[8] + (raw[14] - raw[8]) * 3 / 6, abs=1e-4)  # long gap
    assert c.x_train.shape[1:] == (52, 1) and c.y_train.shape[1:] == (1,)
    assert len(c.x_train) + len(c.x_test) == 2284 - 52
    assert len(c.x_train) == int(0.8 * 2284) - 52
    # Chronological: every training target precedes every test target.
    assert c.extras["target_dates_train"].max() < c.extras["target_dates_test"].min()
    # Train statistics: the training period standardizes to mean 0, std 1.
    cut = int(0.8 * 2284)
    train_scaled = (series[:cut] - c.mean) / c.std
    assert abs(train_scaled.mean()) < 1e-4 and abs(train_scaled.std() - 1) < 1e-4
    assert abs(c.x_train.mean()) < 0.05 and abs(c.x_train.std() - 1) < 0.05
    # Targets are the week after each window, and de-standardize to ppm.
    np.testing.assert_allclose(c.x_train[1, -1, 0], c.y_train[0, 0], rtol=1e-6)
    np.testing.assert_allclose(c.destandardize(c.y_test)[-1, 0], series[-1], rtol=1e-5)


def test_make_windows_layout():
    x, y = data.make_windows(np.arange(10.0), window=3, horizon=2)
    assert x.shape == (6, 3, 1) and y.shape == (6, 2)
    np.testing.assert_array_equal(x[2, :, 0], [2, 3, 4])
    np.testing.assert_array_equal(y[2], [5, 6])  # the next two values


# --------------------------------------------------------------------------- batching


def test_batches_seeded_complete_and_drop_last():
    x = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    first = [yb.tolist() for _, yb in data.batches(x, y, 4, seed=3)]
    second = [yb.tolist() for _, yb in data.batches(x, y, 4, seed=3)]
    assert first == second and [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == list(range(10))
    assert first != [yb.tolist() for _, yb in data.batches(x, y, 4, seed=4)]
    dropped = list(data.batches(x, y, 4, seed=3, drop_last=True))
    assert [len(b[1]) for b in dropped] == [4, 4]
    ordered = [yb.tolist() for _, yb in data.batches(x, y, 4, shuffle=False)]
    assert ordered[0] == [0, 1, 2, 3]
    for xb, yb in data.batches(x, y, 3, seed=0):
        np.testing.assert_array_equal(xb[:, 0], yb)
    with pytest.raises(ValueError):
        next(data.batches(x, y[:5], 2))


def test_registry_names_and_unknown():
    assert set(data.DATASETS) == {"digits", "mnist1d", "co2", "cifar10", "speech_commands", "drive"}
    assert data.get_dataset("digits").x_test.shape == (360, 8, 8, 1)
    with pytest.raises(ValueError, match="cifar10.*co2.*digits.*drive.*mnist1d.*speech_commands"):
        data.get_dataset("imagenet")


def test_data_package_imports_no_jax_or_higher_layers():
    forbidden = ("jax", "flax", "optax", "invnorm_jax.models", "invnorm_jax.nn", "invnorm_jax.train")
    for path in DATA_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


# --------------------------------------------------------------------------- CIFAR-10 (TFDS)


@pytest.fixture()
def mock_cifar():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_cifar10_from_mocked_tfds(mock_cifar):
    c = data.load_cifar10()
    assert c.x_train.shape == (8, 32, 32, 3) and c.x_test.shape == (8, 32, 32, 3)
    assert c.x_train.dtype == np.float32 and c.y_train.dtype == np.int32
    assert c.num_classes == 10 and np.all((c.y_train >= 0) & (c.y_train < 10))
    # Normalization: undoing it gives integer pixel values in [0, 255].
    pixels = (c.x_train * data.CIFAR10_STD + data.CIFAR10_MEAN) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3
    assert abs(float(c.x_train.mean())) < 1.0  # uniform random pixels land near 0


def test_cifar10_augmentation_shape_and_determinism(mock_cifar):
    c = data.load_cifar10()
    run = lambda epoch: [xb for xb, _ in data.cifar10_batches(c.x_train, c.y_train, 4, seed=1, epoch=epoch)]
    a, b, other = run(0), run(0), run(1)
    assert [x.shape for x in a] == [(4, 32, 32, 3)] * 2
    for xa, xb in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
    assert not all(np.array_equal(xa, xo) for xa, xo in zip(a, other))
    evaluation = [xb for xb, _ in data.cifar10_batches(c.x_train, c.y_train, 3, train=False)]
    assert sum(len(x) for x in evaluation) == 8
    np.testing.assert_array_equal(evaluation[0], c.x_train[:3])


def test_random_crop_flip_really_flips_and_crops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 7, 2)).astype(np.float32)
    out = data.random_crop_flip(x, np.random.default_rng(5), padding=0)
    flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped ^ kept) and 10 < flipped.sum() < 54
    # With padding, each output is a window of the zero-padded (maybe flipped) image.
    out = data.random_crop_flip(x, np.random.default_rng(6), padding=2)
    assert out.shape == x.shape
    for o, xi in zip(out[:8], x[:8]):
        found = any(
            np.array_equal(o, np.pad(v, ((2, 2), (2, 2), (0, 0)))[t : t + 6, c : c + 7])
            for v in (xi, xi[:, ::-1])
            for t in range(5)
            for c in range(5)
        )
        assert found
    assert np.any(out == 0)  # some crops reach into the zero padding


def test_cifar10_missing_raises_with_prepare_command(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_cifar10(data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "download_and_prepare" in message
    assert "array_record" in message and "invnorm-jax[tf]" in message
    assert isinstance(info.value, FileNotFoundError)


# --------------------------------------------------------------------------- Speech Commands


def _dominant_hz(clip: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(clip))
    return float(np.fft.rfftfreq(len(clip), 1 / rate)[np.argmax(spectrum)])


def test_speech_folder_resample_pad_and_split(tmp_path):
    lists = make_speech_folder(tmp_path)
    s = data.load_speech_commands(tmp_path, source="folder")
    assert s.class_names == ("bed", "cat", "yes") and s.num_classes == 3
    assert s.x_train.shape == (9, 8000, 1) and s.x_train.dtype == np.float32
    assert s.x_val.shape == (3, 8000, 1) and s.x_test.shape == (3, 8000, 1)
    index = data.index_speech_folder(tmp_path)
    assert sorted(r for r, _ in index["validation"]) == sorted(lists["validation"])
    assert sorted(r for r, _ in index["test"]) == sorted(lists["test"])
    assert not any("_background_noise_" in r for split in ("train", "validation", "test") for r, _ in index[split])
    for clip, label in zip(s.x_test[..., 0], s.y_test):
        assert _dominant_hz(clip, 8000) == pytest.approx(SPEECH_FREQS[s.class_names[label]], abs=2)
    # The 0.5 s clip: 4000 real samples, then zeros to 8000.
    short = data.fix_length(*data.read_wav(tmp_path / "cat" / "short.wav"))
    assert short.shape == (8000,) and np.all(short[4000:] == 0) and np.abs(short[:3990]).max() > 0.4


def test_fix_length_crops_and_filters_alias():
    rate = 16000
    t = np.arange(2 * rate) / rate
    clip = np.sin(2 * np.pi * 5000 * t)  # above the 4 kHz Nyquist of 8 kHz audio
    out = data.fix_length(clip, rate)
    assert out.shape == (8000,)
    assert np.abs(out[100:-100]).max() < 0.05  # filtered, not aliased to 3 kHz


def test_speech_missing_folder_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_speech_commands(missing, source="folder")
    assert str(missing) in str(info.value) and data.SPEECH_COMMANDS_URL in str(info.value)
    with pytest.raises(data.DatasetNotFoundError, match="speech_commands_v0.02.tar.gz"):
        data.load_speech_commands(missing, data_dir=tmp_path)  # auto: no folder, no TFDS data
    (missing / "yes").mkdir(parents=True)
    with pytest.raises(data.DatasetNotFoundError, match="validation_list.txt"):
        data.load_speech_commands(missing, source="folder")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow installed")
def test_speech_tfds_without_tensorflow_says_install_tf_extra(tmp_path):
    with pytest.raises(ImportError, match=r"invnorm-jax\[tf\]"):
        data.load_speech_commands(source="tfds", data_dir=tmp_path)


def test_speech_tfds_records_conversion():
    t = np.arange(16000) / 16000
    records = [{"audio": (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16), "label": 3}]
    x, y = data.speech_commands.speech_records_to_arrays(records)
    assert x.shape == (1, 8000, 1) and y.tolist() == [3]
    assert _dominant_hz(x[0, :, 0], 8000) == pytest.approx(1000, abs=2)


# --------------------------------------------------------------------------- DRIVE


def test_drive_loader_shapes_mask_and_patches(tmp_path):
    truth = make_drive_folder(tmp_path)
    d = data.load_drive(tmp_path, patch_size=16, num_patches=50, seed=1)
    assert d.x_train.shape == (50, 16, 16, 1) and d.y_train.shape == (50, 16, 16)
    assert d.x_test.shape == (2, 48, 48, 1) and d.y_test.shape == (2, 48, 48)
    assert d.x_test.dtype == np.float32 and d.y_test.dtype == np.int32
    fov = d.extras["test_mask"]
    assert fov.shape == (2, 48, 48) and d.extras["image_shape"] == (37, 45)
    np.testing.assert_array_equal(fov[0, :37, :45], truth["fov"])
    assert not fov[:, 37:].any() and not fov[:, :, 45:].any()
    np.testing.assert_array_equal(d.y_test[0, :37, :45], truth["label"].astype(np.int32))
    # Mask applied: zero outside the FOV, standardized inside it.
    assert np.all(d.x_test[..., 0][~fov] == 0)
    inside = d.x_test[0, ..., 0][fov[0]]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3
    images, labels = d.extras["train_images"], d.extras["train_labels"]
    for (i, top, left), xp, yp in zip(d.extras["patch_coords"], d.x_train, d.y_train):
        assert 0 <= top <= 37 - 16 and 0 <= left <= 45 - 16
        assert d.extras["train_fov"][i, top + 8, left + 8]  # centre inside the FOV
        np.testing.assert_array_equal(xp, images[i, top : top + 16, left : left + 16])
        np.testing.assert_array_equal(yp, labels[i, top : top + 16, left : left + 16])
    again = data.load_drive(tmp_path, patch_size=16, num_patches=50, seed=1)
    np.testing.assert_array_equal(again.extras["patch_coords"], d.extras["patch_coords"])


def test_drive_gray_differs_from_green(tmp_path):
    make_drive_folder(tmp_path)
    green = data.read_drive_split(tmp_path, "test", channel="green")[0]
    gray = data.read_drive_split(tmp_path, "test", channel="gray")[0]
    assert green.shape == gray.shape == (2, 37, 45, 1) and not np.allclose(green, gray)


def test_drive_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_drive(tmp_path / "DRIVE")
    message = str(info.value)
    assert str(tmp_path / "DRIVE") in message and "drive.grand-challenge.org" in message
    assert "training/1st_manual/<id>_manual1.gif" in message
    make_drive_folder(tmp_path)
    (tmp_path / "test" / "mask" / "02_test_mask.gif").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="02_test_mask.gif"):
        data.load_drive(tmp_path, patch_size=16, num_patches=4)
