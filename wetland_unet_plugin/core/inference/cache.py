"""The per-process model cache: a worker classifying a batch of scenes loads its model once."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from ..feedback import CoreError
from ..modelfile import LoadedModel, load_model

#: How many loaded models the cache keeps.
CACHE_SIZE = 2

_CACHE: "OrderedDict[tuple, LoadedModel]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_STATS = {"loads": 0, "hits": 0}


def _cache_key(path: str) -> tuple:
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
    except OSError:
        raise CoreError(
            f"Model file not found: {path}. Choose a .keras file written by wetlandunet:train."
        ) from None
    return real, stat.st_mtime_ns, stat.st_size


def get_cached_model(path: str) -> LoadedModel:
    """Load a model file once per process; later calls return the same object.

    The cache is keyed by (real path, modification time, size), so a model file
    that is rewritten is loaded again. At most ``CACHE_SIZE`` models are kept.

    Args:
        path: a ``.keras`` model file written by wetlandunet:train.

    Returns:
        The ``LoadedModel``.
    """
    key = _cache_key(path)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            _CACHE_STATS["hits"] += 1
            return _CACHE[key]
    loaded = load_model(path)
    with _CACHE_LOCK:
        _CACHE_STATS["loads"] += 1
        _CACHE[key] = loaded
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded


def model_cache_info() -> dict:
    """Return ``{"loads": n, "hits": n, "entries": n}`` of the model cache."""
    with _CACHE_LOCK:
        return dict(_CACHE_STATS, entries=len(_CACHE))


def clear_model_cache() -> None:
    """Forget every cached model and reset the counters."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_STATS.update(loads=0, hits=0)


def resolve_model(model) -> LoadedModel:
    """A MODEL argument as a ``LoadedModel``: a file path goes through the cache, a
    loaded model is used as it is.

    Raises:
        CoreError: for anything else.
    """
    if isinstance(model, (str, os.PathLike)):
        return get_cached_model(os.fspath(model))
    if hasattr(model, "keras_model") and hasattr(model, "metadata"):
        return model
    raise CoreError("MODEL must be a model file path or a loaded model.")
