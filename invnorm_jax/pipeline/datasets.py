"""A config's dataset: the library's loader, or with ``synthetic=True`` the generated stand-in.

The smoke variants of the paper-scale configs train on stand-ins (``invnorm_jax.testing``)
with the real shapes; the library's ``invnorm_jax.data`` never loads the test fixtures itself.
"""

from __future__ import annotations

import inspect

from invnorm_jax import data
from invnorm_jax.data.common import Split


def _split_synthetic(kwargs: dict) -> tuple[bool, dict]:
    kwargs = dict(kwargs)
    return bool(kwargs.pop("synthetic", False)), kwargs


def dataset_parameters(name: str, kwargs: dict) -> tuple[str, ...]:
    """The arguments ``dataset.kwargs`` may hold for dataset ``name`` (``synthetic`` included)."""
    synthetic, _ = _split_synthetic(kwargs)
    names = list(data.dataset_parameters(name))
    if synthetic:
        from invnorm_jax.testing.synthetic_data import SYNTHETIC_DATASETS

        if name in SYNTHETIC_DATASETS:
            names += [
                p.name
                for p in inspect.signature(SYNTHETIC_DATASETS[name]).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
    return (*dict.fromkeys(names), "synthetic")


def check_dataset(name: str, kwargs: dict) -> None:
    """:func:`invnorm_jax.data.check_dataset`, or for a stand-in its arguments only."""
    synthetic, rest = _split_synthetic(kwargs)
    if not synthetic:
        data.check_dataset(name, **rest)
        return
    allowed = dataset_parameters(name, kwargs)
    data.check_dataset_kwargs(name, rest, allowed=allowed)


def get_dataset(name: str, kwargs: dict) -> Split:
    """The dataset a config's ``dataset.name`` / ``dataset.kwargs`` name."""
    synthetic, rest = _split_synthetic(kwargs)
    if not synthetic:
        return data.get_dataset(name, **rest)
    data.dataset_parameters(name)  # an unknown name: the library's error
    from invnorm_jax.testing import get_synthetic  # fixtures, loaded only when a config asks for them

    return get_synthetic(name, **rest)
