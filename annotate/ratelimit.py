"""A fixed-window counter in the shared cache (Redis in production): the API's per-token limit and the per-user
limit on browser imports. Fixed windows let a burst of twice the limit straddle a boundary, which is fine for
keeping a queue from being flooded, and cost one cache round trip."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


def _name(key: str, per_seconds: int) -> str:
    return f"ratelimit:{key}:{int(time.time() // per_seconds)}"


def hit(key: str, *, limit: int, per_seconds: int) -> bool:
    """Count one use of `key`; True when this use goes beyond `limit` in the current window.

    Without the cache (Redis down) nothing can be counted and the use is allowed: the limits keep the task queue from
    being flooded, and that queue lives in the same Redis, so refusing every request too would only add an outage."""
    name = _name(key, per_seconds)
    try:
        cache.add(name, 0, per_seconds * 2)
        try:
            used = cache.incr(name)
        except ValueError:  # expired between add and incr
            cache.set(name, 1, per_seconds * 2)
            used = 1
    except Exception:
        log.warning("rate limit %s not counted: the cache is unavailable", key, exc_info=True)
        return False
    return used > limit


def reset(key: str, *, per_seconds: int) -> None:
    """Forget the current window's count of `key` (an operator lifting a limit; tests)."""
    cache.delete(_name(key, per_seconds))
