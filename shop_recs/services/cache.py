"""Django's cache, used so that a cache outage slows lists down instead of breaking pages.

Every cached value here can be recomputed from the database, so when the cache backend (Redis,
memcached) cannot be reached the value is computed and the outage logged, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache

from ..conf import recs_settings

logger = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING = object()


def cached(key: str, compute: Callable[[], T], timeout: float | None = None) -> T:
    """The cached value for ``key``, or ``compute()`` stored for CACHE_SECONDS."""
    try:
        value = cache.get(key, _MISSING)
    except Exception as exc:  # any backend's connection error
        logger.warning("shop_recs: cache unavailable (%s); computing %s", exc, key.split(":")[1])
        return compute()
    if value is not _MISSING:
        return value
    value = compute()
    try:
        cache.set(key, value, recs_settings.CACHE_SECONDS if timeout is None else timeout)
    except Exception as exc:
        logger.warning("shop_recs: cache unavailable (%s); %s not stored", exc, key.split(":")[1])
    return value
