"""Compiled chip steps, cached without keeping the caller's functions alive.

A jitted step of :func:`~invnorm_jax.faults.simulate_chips` is reused by every later call with
the same function and static setting (a sweep compiles once). A plain ``functools.lru_cache``
keyed on the caller's ``apply_fn`` would keep that function, its closure and whatever it
captures (a dataset, a model's weights) alive for the rest of the program. Here a step sees the
caller's functions only through :class:`WeakCallable` (a weak reference), and its cache entry
goes when any of them is garbage-collected, taking the step's compilations and traced
constants with it.

A function defined once (a module-level ``def``, a lambda kept in a variable, a bound method of
a long-lived object) is compiled once; a new lambda or ``functools.partial`` per call is a new
function, so each call compiles anew.
"""

from __future__ import annotations

import collections
import types
import weakref
from collections.abc import Callable

__all__ = ["StepCache", "WeakCallable"]


class WeakCallable:
    """A callable that holds ``fn`` weakly and calls it (``None`` stays ``None``: :meth:`wrap`).

    A bound method is rebuilt from its function and a weak reference to its object: the method
    object ``obj.f`` is made anew on every attribute access, so a reference to it would die at
    once. ``key`` identifies the function (by identity) for as long as the handle lives.

    >>> def f(x):
    ...     return x + 1
    >>> handle = WeakCallable.wrap(f)
    >>> handle(1), handle.key == WeakCallable.wrap(f).key
    (2, True)
    """

    def __init__(self, fn: Callable):
        if isinstance(fn, types.MethodType):  # a weak reference to the object, the function itself kept
            self._func, self._ref = fn.__func__, weakref.ref(fn.__self__)
            self.key = ("method", id(fn.__func__), id(fn.__self__))
        else:
            self._func, self._ref = None, weakref.ref(fn)  # TypeError if fn cannot be referenced weakly
            self.key = ("function", id(fn))

    def owner(self):
        """The object whose death ends the handle's use: the function, or a bound method's object."""
        return self._ref()

    @staticmethod
    def wrap(fn: Callable | None) -> WeakCallable | None:
        return None if fn is None else WeakCallable(fn)

    def __call__(self, *args, **kwargs):
        target = self._ref()
        if target is None:  # only a step whose cache entry is gone could get here
            raise ReferenceError("the function of this compiled chip step was garbage-collected")
        if self._func is not None:
            return self._func(target, *args, **kwargs)
        return target(*args, **kwargs)


class StepCache:
    """Steps by their static key and the identity of the functions they call.

    ``get(make, fns, statics)`` returns ``make(*handles, *statics)`` (``handles``: a
    :class:`WeakCallable` per function of ``fns``, ``None`` kept), made once per ``statics``
    and function identities while those functions live; at most ``maxsize`` entries, the least
    recently used dropped first. A function that cannot be weakly referenced (a builtin, an
    object with ``__slots__``) is called through a strong reference, and its step is not cached.

    >>> cache = StepCache(maxsize=4)
    >>> def apply(x):
    ...     return 2 * x
    >>> make = lambda fn, scale: (lambda x: scale * fn(x))
    >>> step = cache.get(make, (apply,), (3,))
    >>> step(1), cache.get(make, (apply,), (3,)) is step, len(cache)
    (6, True, 1)
    >>> del apply, step
    >>> len(cache)   # the function is gone, and so is its step
    0
    """

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._entries: collections.OrderedDict = collections.OrderedDict()  # key -> (step, finalizers)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def get(self, make: Callable, fns: tuple, statics: tuple):
        try:
            handles = tuple(WeakCallable.wrap(fn) for fn in fns)
        except TypeError:  # not weakly referenceable: a fresh step, not kept
            return make(*fns, *statics)
        key = (tuple(None if h is None else h.key for h in handles), statics)
        hash(key)  # a static that cannot be hashed is the caller's bug: raise here, plainly
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        step = make(*handles, *statics)
        finalizers = [weakref.finalize(h.owner(), self._drop, key) for h in handles if h is not None]
        self._entries[key] = (step, finalizers)
        while len(self._entries) > self.maxsize:
            self._drop(next(iter(self._entries)))
        return step

    def _drop(self, key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for finalizer in entry[1]:  # the other owners no longer need to report this entry
                finalizer.detach()
