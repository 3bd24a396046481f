"""Sessions read from the cache and written through to the database, that keep working while the cache is down.

Django's cached_db store already survives a failed cache read and a failed cache write on save, but not the cache
write that follows a read from the database, nor the cache delete of cycle_key() at login: with Redis down every
logged-in request would fail. Here those cache calls are best effort too, so annotators keep labeling on the database
alone. One call stays strict: logging out (flush). If the cache entry of a session could not be deleted, a Redis that
comes back with its data would serve the session again; a failed logout is the honest answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.sessions.backends import cached_db
from django.core.cache.backends.base import BaseCache

log = logging.getLogger(__name__)


def _quietly(action: Callable[[], Any], what: str) -> None:
    try:
        action()
    except Exception:
        log.warning("session cache unavailable: %s skipped", what, exc_info=True)


class SessionStore(cached_db.SessionStore):
    # Set by Django's cached_db store; its stubs do not declare them.
    _cache: BaseCache

    def _get_session_from_db(self) -> Any:
        return super()._get_session_from_db()  # type: ignore[misc]

    def load(self) -> dict[str, Any]:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            data = None
        if data is not None:
            return data
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        age = self.get_expiry_age(expiry=stored.expire_date)
        _quietly(lambda: self._cache.set(self.cache_key, data, age), "caching a session read from the database")
        return data

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            if (self.cache_key_prefix + session_key) in self._cache:
                return True
        except Exception:
            log.warning("session cache unavailable: asking the database", exc_info=True)
        return super(cached_db.SessionStore, self).exists(session_key)

    def delete(self, session_key: str | None = None) -> None:
        # cycle_key() at login deletes the anonymous session it replaces: best effort for the cache part.
        self._delete(session_key, strict=False)

    def flush(self) -> None:
        self.clear()
        self._delete(self.session_key, strict=True)
        self._session_key = None

    def _delete(self, session_key: str | None, *, strict: bool) -> None:
        super(cached_db.SessionStore, self).delete(session_key)
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        if strict:
            self._cache.delete(self.cache_key_prefix + key)
        else:
            _quietly(lambda: self._cache.delete(self.cache_key_prefix + key), "deleting a replaced session")
