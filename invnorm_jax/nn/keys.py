"""Where a stochastic layer's random numbers come from: its path in the model.

Every stochastic layer (:class:`~invnorm_jax.nn.InvertedNorm`, the MC dropouts) folds the id of
its path in the model (``"blocks/0/site1"``, CRC-32) into the key of every example, so two
layers never share a draw and adding a layer leaves the draws of every other layer unchanged.
No call is needed for that: a layer whose id was not set finds its path when it is called, in
the modules on the call stack that hold it (:func:`call_path`: from the outermost one, as
``nnx.iter_graph`` names it), so a model you write draws what the chip simulator draws for it.
:func:`number_stochastic_sites` sets the ids once instead (the library's models call it, and the
simulator on its copy of any model), which also spares the search at every eager call.

The key itself comes, first to last, from ``key=`` (one key, or one per example; what ``vmap``
over keys and the chip simulator use), from ``rngs=`` given to the call, or from the layer's
own ``nnx.Rngs`` stream, as in ``nnx.Dropout``.
"""

from __future__ import annotations

import sys
import zlib

import jax
from flax import nnx

from invnorm_jax._checks import check_key
from invnorm_jax.errors import ArgumentError, ArgumentTypeError
from invnorm_jax.functional.keys import example_keys, fold_in_each


def path_id(path) -> int:
    """A stable 31-bit id of a path in a model or pytree: CRC-32 of its ``/``-joined parts.

    >>> path_id(("blocks", 0, "site1")) == path_id("blocks/0/site1")
    True
    """
    name = path if isinstance(path, str) else "/".join(str(p) for p in path)
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


#: The id of a layer used on its own (its path is empty).
ROOT_ID = path_id(())


def _child_path(owner: nnx.Module, node) -> tuple | None:
    """The path of ``node`` in ``owner``'s graph, or None if ``owner`` does not hold it."""
    for path, child in nnx.iter_graph(owner):
        if child is node:
            return tuple(path)
    return None


def call_path(layer: nnx.Module) -> tuple:
    """The path of ``layer`` in the outermost module on the call stack that holds it.

    Walks the Python frames from the caller up: each frame whose ``self`` is an ``nnx.Module``
    holding the module reached so far extends the path by that module's path in it; a linen
    module (an NNX module wrapped by ``nnx.bridge.to_linen``) ends the walk with its own path.
    Called from a model's ``__call__`` (or any helper it calls)
    on ``model(x, key=k)``, it is the layer's path in ``model``: the path
    :func:`number_stochastic_sites` would give it. ``()`` for a layer called on its own.

    >>> from invnorm_jax.nn.norm import MCDropout
    >>> class Two(nnx.Module):
    ...     def __init__(self):
    ...         self.first, self.second = MCDropout(0.5), MCDropout(0.5)
    ...     def __call__(self, x):
    ...         return call_path(self.first), call_path(self.second)
    >>> Two()(None)
    (('first',), ('second',))
    """
    linen = sys.modules.get("flax.linen")  # not imported: no linen module can be on the stack
    path, node = (), layer
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code  # f_locals is built on demand: only for frames that have a self
        owner = frame.f_locals.get("self") if "self" in code.co_varnames or "self" in code.co_freevars else None
        if isinstance(owner, nnx.Module) and owner is not node:
            sub = _child_path(owner, node)
            if sub is not None:
                path, node = sub + path, owner
        elif linen is not None and isinstance(owner, linen.Module) and owner.scope is not None:
            # An NNX module inside linen (nnx.bridge.to_linen): linen's own path is absolute.
            return tuple(owner.path) + path
        frame = frame.f_back
    return path


def layer_key_id(layer: nnx.Module) -> int:
    """``layer.key_id`` if it was set, else the id of its :func:`call_path` (called from the layer).

    >>> from invnorm_jax.nn.norm import MCDropout
    >>> layer = MCDropout(0.5)
    >>> layer_key_id(layer) == ROOT_ID  # on its own: the empty path
    True
    >>> layer.key_id = 7
    >>> layer_key_id(layer)
    7
    """
    kid = layer.key_id
    return path_id(call_path(layer)) if kid is None else kid


def number_stochastic_sites(model: nnx.Module) -> int:
    """Give every stochastic layer of ``model`` the id of its path; returns how many there are.

    Optional: an unnumbered layer finds the same id when it is called (:func:`call_path`). The
    library's models call it at the end of ``__init__``, and the chip simulator on its own copy
    of any model, so that ids are fixed before anything is traced.

    Raises:
      ArgumentError: if two paths hash to the same id (their layers would share random draws).

    >>> from invnorm_jax.nn.norm import MCDropout
    >>> model = nnx.List([MCDropout(0.3), MCDropout(0.3)])
    >>> number_stochastic_sites(model), model[1].key_id == path_id("1")
    (2, True)
    """
    seen: dict[int, str] = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and hasattr(node, "key_id"):
            name = "/".join(str(p) for p in path)
            kid = path_id(name)
            if kid in seen:
                raise ArgumentError(
                    f"stochastic layers {seen[kid]!r} and {name!r} have the same key id {kid}; rename one."
                )
            seen[kid] = name
            node.key_id = kid
    return len(seen)


def number_fault_sites(model: nnx.Module) -> int:
    """Give every faultable layer of ``model`` a distinct ``fault_id``; returns their count.

    The order is that of ``nnx.iter_graph`` (deterministic for a given model class and
    config), so the numbering, and with it every chip's faults, is reproducible. It also gives
    every stochastic layer the key id of its path
    (:func:`number_stochastic_sites`): one call at the end of a model's
    ``__init__`` numbers both kinds of site.

    Args:
      model: an NNX module; its faultable layers are those with a ``fault_id`` attribute.

    Returns:
      The number of fault sites.

    >>> from invnorm_jax.nn.quantized import BinaryDense
    >>> class Tiny(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.first = BinaryDense(4, 4, rngs=rngs)
    ...         self.second = BinaryDense(4, 2, rngs=rngs)
    >>> model = Tiny(nnx.Rngs(0))
    >>> number_fault_sites(model), model.first.fault_id, model.second.fault_id
    (2, 0, 1)
    """
    number_stochastic_sites(model)
    count = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and hasattr(node, "fault_id"):
            node.fault_id = count
            count += 1
    return count


def stochastic_site_ids(model: nnx.Module) -> dict[str, int]:
    """``{path: key_id}`` of every stochastic layer of ``model`` (None: set when it is called).

    >>> from invnorm_jax.nn.norm import MCDropout
    >>> model = nnx.List([nnx.Linear(2, 2, rngs=nnx.Rngs(0)), MCDropout(0.3)])
    >>> _ = number_stochastic_sites(model)
    >>> stochastic_site_ids(model) == {"1": path_id("1")}
    True
    """
    return {
        "/".join(str(p) for p in path): node.key_id
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Module) and hasattr(node, "key_id")
    }


def rng_stream(rngs, collection: str, *, only_if_named: bool = False):
    """The stream a layer keeps for itself (``nnx.Dropout``'s rule), or ``nnx.data(None)``.

    ``only_if_named``: keep one only when ``rngs`` names ``collection`` explicitly; a layer that
    also takes its parameters from ``rngs`` then adds no RNG state to models built with a bare
    ``nnx.Rngs(seed)``.

    Raises:
      ArgumentTypeError: ``rngs`` of another type.

    >>> type(rng_stream(nnx.Rngs(dropout=0), "dropout")).__name__
    'RngStream'
    """
    if isinstance(rngs, nnx.Rngs):
        if collection not in rngs and (only_if_named or "default" not in rngs):
            return nnx.data(None)  # nothing to fork (nnx.bridge.to_linen passes an empty nnx.Rngs at apply)
        return rngs[collection].fork()
    if isinstance(rngs, nnx.RngStream):
        return rngs.fork()
    if rngs is None:
        return nnx.data(None)
    raise ArgumentTypeError(f"rngs must be an nnx.Rngs, an nnx.RngStream or None, not {type(rngs).__name__}.")


def resolve_key(key, rngs, stream, collection: str, who: str) -> jax.Array:
    """The key of one stochastic call: ``key=``, else ``rngs=``, else the layer's stream.

    Args:
      key: the call's ``key=``, or None.
      rngs: the call's ``rngs=`` (an ``nnx.Rngs``, ``nnx.RngStream`` or key), or None.
      stream: the layer's own stream (from :func:`rng_stream`), or None.
      collection: the stream name to draw from an ``nnx.Rngs``.
      who: the layer's name, for the error message.

    Returns:
      One typed key.

    Raises:
      ArgumentError: none of the three is given; the message says how to call the layer.

    >>> key = jax.random.key(0)
    >>> resolve_key(key, None, None, "dropout", "MCDropout") is key
    True
    >>> try:
    ...     resolve_key(None, None, None, "dropout", "MCDropout")
    ... except ValueError as err:
    ...     print(err)
    MCDropout is stochastic: call it with key=jax.random.key(...) ...
    """
    if key is not None:
        return check_key(key)
    if isinstance(rngs, nnx.Rngs):
        return rngs[collection]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if rngs is not None:
        return check_key(rngs, "rngs")
    if stream is not None:
        return stream()
    raise ArgumentError(
        f"{who} is stochastic: call it with key=jax.random.key(...) "
        "(one key per forward pass / MC sample), or with deterministic=True "
        "(or model.eval()), or give it a stream: rngs=nnx.Rngs(dropout=0)."
    )


def layer_keys(key: jax.Array, key_id: int, batch_size: int) -> jax.Array:
    """Per-example keys of one layer: ``fold_in(fold_in(key, i), key_id)`` for example ``i``.

    >>> key = jax.random.key(0)
    >>> keys = layer_keys(key, 7, 3)
    >>> expected = jax.random.fold_in(jax.random.fold_in(key, 2), 7)
    >>> keys.shape, bool((jax.random.key_data(keys[2]) == jax.random.key_data(expected)).all())
    ((3,), True)
    """
    return fold_in_each(example_keys(key, batch_size), key_id)


__all__ = [
    "ROOT_ID",
    "call_path",
    "layer_key_id",
    "layer_keys",
    "number_fault_sites",
    "number_stochastic_sites",
    "path_id",
    "resolve_key",
    "rng_stream",
    "stochastic_site_ids",
]
