"""The per-process model registry: bounded, least recently used, each model built once.

Its size is ``$GLICLASS_PIPELINES_MAX_MODELS`` (default 2) or :func:`set_max_models`; an evicted
model is dropped, garbage-collected and its CUDA cache emptied.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from gliclass_pipelines._common.redaction import redact, shorten
from gliclass_pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_MODELS_ENV = "GLICLASS_PIPELINES_MAX_MODELS"
DEFAULT_MAX_MODELS = 2


T = TypeVar("T")


def max_models() -> int:
    """The registry's default size: $GLICLASS_PIPELINES_MAX_MODELS when set, else DEFAULT_MAX_MODELS."""
    raw = os.environ.get(MAX_MODELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MODELS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_MODELS_ENV} must be a positive integer, got {shorten(repr(raw))}")
    return int(raw)


class Registry:
    """A thread-safe, bounded, least-recently-used map from a key to an object built once per process.

    Concurrent callers asking for the same key wait for one build; different keys build in parallel.
    When a build makes it hold more than its limit, the least recently used entries are evicted: the
    registry drops them, collects garbage and empties the CUDA cache, so their memory is freed once no
    caller holds them any more. The limit is ``max_items`` if given (or set by :meth:`set_limit`), else
    :func:`max_models` (``$GLICLASS_PIPELINES_MAX_MODELS``, default 2).
    """

    def __init__(self, max_items: int | None = None) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._limit = None if max_items is None else _positive(max_items)
        self.load_count = 0
        self.evict_count = 0
        self.load_seconds = 0.0

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else max_models()

    def set_limit(self, max_items: int | None) -> None:
        """Hold at most ``max_items`` objects (None: back to the environment's or default limit)."""
        self._limit = None if max_items is None else _positive(max_items)
        limit = self.limit
        with self._lock:
            evicted = self._evict_over_limit(limit)
        _free(evicted)

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            limit = self.limit  # a bad $GLICLASS_PIPELINES_MAX_MODELS fails before loading
            started = time.perf_counter()
            item = load()
            with self._lock:
                self._items[key] = item
                self.load_count += 1
                self.load_seconds += time.perf_counter() - started
                evicted = self._evict_over_limit(limit)
        _free(evicted)
        return item

    def _evict_over_limit(self, limit: int) -> list[tuple[Hashable, Any]]:
        evicted = []
        while len(self._items) > limit:
            evicted.append(self._items.popitem(last=False))
            self.evict_count += 1
        return evicted

    def keys(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            evicted = list(self._items.items())
            self._items.clear()
            self._key_locks.clear()
        _free(evicted)


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"the model registry limit must be a positive integer, got {shorten(repr(value))}")
    return value


def _free(evicted: list[tuple[Hashable, Any]]) -> None:
    """Drop the registry's references to evicted objects and give their memory back."""
    if not evicted:
        return
    for key, _ in evicted:
        logger.info("evicted %s from the model registry (least recently used)", redact(key))
    evicted.clear()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


REGISTRY = Registry()


def load_count() -> int:
    """How many models this process has loaded (cache hits do not count)."""
    return REGISTRY.load_count


def set_max_models(max_models: int | None) -> None:
    """Keep at most ``max_models`` models loaded in this process (least recently used evicted first).

    None returns to ``$GLICLASS_PIPELINES_MAX_MODELS`` or the default (2).
    """
    REGISTRY.set_limit(max_models)
