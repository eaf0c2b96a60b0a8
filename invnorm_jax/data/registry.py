"""Name -> loader registry, so configs can say `dataset="digits"`."""

from __future__ import annotations

from collections.abc import Callable

from invnorm_jax.data.cifar10 import load_cifar10, random_crop_flip
from invnorm_jax.data.common import Split
from invnorm_jax.data.drive import load_drive
from invnorm_jax.data.embedded import load_co2, load_digits, load_mnist1d
from invnorm_jax.data.speech_commands import load_speech_commands

#: Every dataset the library knows, by the name configs use.
DATASETS: dict[str, Callable[..., Split]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "co2": load_co2,
    "cifar10": load_cifar10,
    "speech_commands": load_speech_commands,
    "drive": load_drive,
}


#: Training-time augmentations by the name a config gives (``config.augment``):
#: ``augment(batch, rng) -> batch`` on a numpy minibatch, or None.
AUGMENTATIONS: dict[str, Callable | None] = {
    "none": None,
    "crop_flip": random_crop_flip,  # 4-pixel padded random crop and horizontal flip (CIFAR)
}


def get_dataset(name: str, *, synthetic: bool = False, **kwargs) -> Split:
    """Loads a dataset by name.

    Args:
      name: one of `DATASETS` ("digits", "mnist1d", "co2", "cifar10",
        "speech_commands", "drive").
      synthetic: load a generated stand-in with the real shapes and label space
        instead (no download; for smoke runs, the metrics are meaningless):
        "cifar10", "speech_commands" and "drive" only. See
        `invnorm_jax.testing`.
      **kwargs: forwarded to the loader (e.g. `seed=`, `root=`, `data_dir=`),
        or to the synthetic generator (e.g. `num_train=`, `clips_per_word=`).

    Returns:
      The loader's `Split`.

    Raises:
      ValueError: unknown name (the message lists the known ones), or
        `synthetic=True` for a dataset without a synthetic stand-in.

    >>> get_dataset("digits").x_test.shape
    (360, 8, 8, 1)
    """
    if synthetic:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
        from invnorm_jax.testing import get_synthetic  # fixtures, loaded only when asked for

        return get_synthetic(name, **kwargs)
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None
    return loader(**kwargs)
