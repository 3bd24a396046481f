"""A fixed-window counter in the shared cache (Redis in production): the API's per-token limit and the per-user
limit on browser imports. Fixed windows let a burst of twice the limit straddle a boundary, which is fine for
keeping a queue from being flooded, and cost one cache round trip."""

from __future__ import annotations

import time

from django.core.cache import cache


def _name(key: str, per_seconds: int) -> str:
    return f"ratelimit:{key}:{int(time.time() // per_seconds)}"


def hit(key: str, *, limit: int, per_seconds: int) -> bool:
    """Count one use of `key`; True when this use goes beyond `limit` in the current window."""
    name = _name(key, per_seconds)
    cache.add(name, 0, per_seconds * 2)
    try:
        used = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.set(name, 1, per_seconds * 2)
        used = 1
    return used > limit


def reset(key: str, *, per_seconds: int) -> None:
    """Forget the current window's count of `key` (an operator lifting a limit; tests)."""
    cache.delete(_name(key, per_seconds))
