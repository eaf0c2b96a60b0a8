"""Random-access TFDS data sources that work without TensorFlow.

`tfds.data_source` reads prepared ArrayRecord files and decodes images with
numpy/PIL, so CIFAR-10 loads with only `tensorflow-datasets` installed.
Preparing a dataset (the download) does need TensorFlow and network: it is
the user's job, done once, and these helpers say exactly how.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from invnorm_jax.errors import DatasetNotFoundError, MissingDependencyError

TF_EXTRA_HINT = 'pip install "invnorm-jax[tf]"'


def tfds_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
    """The folder TFDS reads from: `data_dir`, `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get("TFDS_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / "tensorflow_datasets"


def prepare_command(name: str, data_dir: str | os.PathLike | None) -> str:
    """The one-liner that prepares `name` in the ArrayRecord format we read.

    `file_format="array_record"` matters: TFDS's default (TFRecord) has no
    random access, so `tfds.data_source` cannot read it.
    """
    dir_arg = f", data_dir={str(tfds_data_dir(data_dir))!r}" if data_dir is not None else ""
    return (
        'python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder({name!r}{dir_arg}, file_format='array_record')"
        '.download_and_prepare()"'
    )


def not_prepared_message(name: str, data_dir: str | os.PathLike | None, reason: str = "") -> str:
    """Error text naming the searched folder and the prepare command."""
    where = tfds_data_dir(data_dir) / name
    text = (
        f"TFDS dataset {name!r} is not prepared (in ArrayRecord format) under {where}. "
        f"On a machine with network access, install the TensorFlow extra "
        f"({TF_EXTRA_HINT}) and run: {prepare_command(name, data_dir)}, "
        f"then copy the prepared folder to {where} on this machine "
        f"(or point data_dir=... / $TFDS_DATA_DIR at its parent)."
    )
    reason = " ".join(reason.split())  # one line
    return text + (f" TFDS said: {reason}" if reason else "")


def open_data_sources(
    name: str, splits: Sequence[str], data_dir: str | os.PathLike | None, *, needs_tensorflow: bool = False
) -> dict[str, Any]:
    """Opens one `tfds.data_source` per split, never downloading.

    Args:
      name: TFDS dataset name (e.g. "cifar10").
      splits: TFDS split specs (slicing such as "train[:1000]" is allowed).
      data_dir: TFDS data folder, or None for the TFDS default.
      needs_tensorflow: the dataset's features decode only with TensorFlow
        (e.g. `Audio`); fail early with an install hint when it is missing.

    Returns:
      `{split: data_source}`; each source supports `len()` and `source[i]`,
      which returns a dict of numpy features.

    Raises:
      MissingDependencyError: (an ImportError) the dataset's features need TensorFlow and it is missing.
      DatasetNotFoundError: the dataset is not prepared in `data_dir`.
    """
    import tensorflow_datasets as tfds

    if needs_tensorflow and importlib.util.find_spec("tensorflow") is None:
        # Checked up front: TFDS would otherwise print a long banner before failing.
        raise MissingDependencyError(f"TFDS dataset {name!r} needs TensorFlow to decode its features: {TF_EXTRA_HINT}.")
    kwargs = {} if data_dir is None else {"data_dir": str(data_dir)}
    sources = {}
    for split in splits:
        try:
            sources[split] = tfds.data_source(name, split=split, download=False, **kwargs)
        except ImportError as err:
            raise MissingDependencyError(
                f"TFDS dataset {name!r} needs TensorFlow to decode its features: {TF_EXTRA_HINT}. ({err})"
            ) from err
        except Exception as err:  # TFDS signals "not prepared" with many types.
            raise DatasetNotFoundError(not_prepared_message(name, data_dir, f"{type(err).__name__}: {err}")) from err
    return sources


def read_records(source: Any) -> list[dict[str, Any]]:
    """Reads every record of a data source, in order.

    Index by index on purpose: it is the access path every TFDS data source
    (including the test mocks) implements.
    """
    return [source[i] for i in range(len(source))]
