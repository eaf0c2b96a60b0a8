"""The one family of errors in what a caller asked for, and the "did you mean" hint.

Every error caused by the caller's input (an argument, a config, a dataset folder, a
checkpoint, a results file, a command line) is an :class:`InputError`, itself a ``ValueError``;
each subclass is also the builtin a caller would expect (``TypeError``, ``FileNotFoundError``,
``ImportError``, ``RuntimeError``). The command line prints an ``InputError`` on one line and
exits with status 2; any other exception is a bug and shows its traceback. docs/errors.md lists
them with their messages. No imports: every layer of the package may raise these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Base of every error in the input: the message says what was wrong and how to fix it.

    >>> all(issubclass(e, InputError) for e in (ArgumentError, ConfigError, DatasetNotFoundError))
    True
    >>> issubclass(InputError, ValueError)
    True
    """


class ArgumentError(InputError):
    """An argument with a value out of range, an unknown name or the wrong shape.

    >>> try:
    ...     raise ArgumentError("rate=1.5 is outside [0, 1]: expected a probability, e.g. rate=0.3.")
    ... except ValueError as err:
    ...     print(err)
    rate=1.5 is outside [0, 1]: expected a probability, e.g. rate=0.3.
    """


class ArgumentTypeError(InputError, TypeError):
    """An argument of the wrong type or dtype; also a ``TypeError``.

    >>> issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, InputError)
    True
    """


class MissingDependencyError(InputError, ImportError):
    """An optional package the asked-for feature needs is not installed; the message says what to install.

    >>> issubclass(MissingDependencyError, ImportError)
    True
    """


class ConfigError(InputError):
    """A config file, variant or override that cannot be used.

    >>> issubclass(ConfigError, ValueError)
    True
    """


class UsageError(InputError):
    """A command line that cannot run as given: a flag's value, an output folder of other files.

    >>> issubclass(UsageError, InputError)
    True
    """


class ResultsError(InputError):
    """A results file that this version cannot read (schema version, missing fields).

    >>> issubclass(ResultsError, InputError)
    True
    """


class DatasetNotFoundError(InputError, FileNotFoundError):
    """A dataset that is not present locally, or only in part; the message says how to get it.

    The library never downloads anything itself: every loader of a non-embedded dataset raises
    this with the download/prepare instructions and the path it searched.

    >>> issubclass(DatasetNotFoundError, FileNotFoundError)
    True
    """


class CheckpointError(InputError, RuntimeError):
    """A checkpoint folder that cannot be read back (train first, use its config, delete a damaged save).

    >>> [issubclass(e, CheckpointError) for e in (CheckpointMissingError, CheckpointCorruptError,
    ...                                           CheckpointIncompatibleError)]
    [True, True, True]
    """


class CheckpointMissingError(CheckpointError):
    """No complete checkpoint where one was expected.

    >>> issubclass(CheckpointMissingError, InputError)
    True
    """


class CheckpointCorruptError(CheckpointError):
    """A checkpoint whose files are damaged (truncated, overwritten, partly deleted).

    >>> issubclass(CheckpointCorruptError, InputError)
    True
    """


class CheckpointIncompatibleError(CheckpointError):
    """A readable checkpoint of another model or optimizer than the one restored into.

    >>> issubclass(CheckpointIncompatibleError, InputError)
    True
    """


class NonFiniteError(ValueError):
    """A NaN or Inf where numbers must be finite; the message says where and what to try.

    Not an input error by itself (a bug can produce one); :class:`TrainingDivergedError` is.

    >>> issubclass(NonFiniteError, ValueError)
    True
    """


class TrainingDivergedError(InputError, NonFiniteError):
    """The training loss (or a parameter) became NaN or Inf; no checkpoint was written after it.

    The fix is in the recipe or the data (the message says what to try).

    >>> issubclass(TrainingDivergedError, InputError) and issubclass(TrainingDivergedError, NonFiniteError)
    True
    """


def did_you_mean(value, choices: Iterable, *, cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``value``, or ``""``.

    >>> did_you_mean("bitflip", ["bit_flip", "additive"])
    " (did you mean 'bit_flip'?)"
    >>> did_you_mean("zzz", ["bit_flip"])
    ''
    """
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointIncompatibleError",
    "CheckpointMissingError",
    "ConfigError",
    "DatasetNotFoundError",
    "InputError",
    "MissingDependencyError",
    "NonFiniteError",
    "ResultsError",
    "TrainingDivergedError",
    "UsageError",
    "did_you_mean",
]
