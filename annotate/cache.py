"""Caches that store JSON, never pickle: Django's Redis and file caches pickle every value (and unpickle whatever they
read back, which runs code if someone could write to Redis or the cache folder). settings.CACHES uses these. The Redis
one also has short timeouts and a circuit breaker (below): a hung Redis must not stall every request.

Only plain JSON data can be cached: a value that is not (a datetime, a model, a dataclass) fails loudly on `set`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import IO, Any

import redis.exceptions
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.files import locks

log = logging.getLogger(__name__)


class JSONSerializer:
    """The `serializer` of Django's RedisCache (OPTIONS): JSON text instead of pickles.

    Integers stay bare (as Django's own serializer keeps them) so that Redis's INCR works on them.
    """

    def dumps(self, obj: Any) -> bytes | int:
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes | int) -> Any:
        if isinstance(data, int):
            return data
        return json.loads(data)


class JSONFileBasedCache(FileBasedCache):
    """Django's file cache (the embedded default's cache) with JSON files: the expiry on the first line, then the
    value as compressed JSON."""

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        fname = self._key_to_file(key, version)  # type: ignore[attr-defined]
        try:
            with open(fname, "rb") as f:
                if not self._is_expired(f):
                    return json.loads(zlib.decompress(f.read()))
        except FileNotFoundError:
            pass
        return default

    def _write_content(self, file: IO[bytes], timeout: float | None, value: Any) -> None:
        expiry = self.get_backend_timeout(timeout)
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        file.write(json.dumps(expiry).encode() + b"\n")
        file.write(zlib.compress(body))

    def touch(self, key: str, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            with open(self._key_to_file(key, version), "r+b") as f:  # type: ignore[attr-defined]
                try:
                    locks.lock(f, locks.LOCK_EX)
                    if self._is_expired(f):
                        return False
                    previous = json.loads(zlib.decompress(f.read()))
                    f.seek(0)
                    self._write_content(f, timeout, previous)
                    f.truncate()
                    return True
                finally:
                    locks.unlock(f)
        except FileNotFoundError:
            return False

    def _is_expired(self, f: IO[bytes]) -> bool:
        """Read the expiry line of an open cache file (leaving `f` at the value) and delete the file if it expired.
        A file that does not start with a JSON expiry (empty, or written by the pickling cache) counts as expired."""
        try:
            expiry = json.loads(f.readline())
        except ValueError:
            expiry = 0
        if expiry is not None and not isinstance(expiry, int | float):
            expiry = 0
        if expiry is not None and expiry < time.time():
            f.close()
            self._delete(f.name)  # type: ignore[attr-defined]
            return True
        return False


# --- Redis with short timeouts and a circuit breaker -------------------------------------------------------------


class CircuitOpen(redis.exceptions.ConnectionError):
    """Raised instead of calling Redis while the breaker is open. A ConnectionError, so that every caller's fallback
    for a dead Redis applies as is: sessions read the database, rate limits let the request through uncounted, and
    what cannot do without Redis (logging out) answers 503 with its retry message."""


class CircuitBreaker:
    """Per process. A connection error or timeout opens it for `open_seconds` (settings.REDIS_BREAKER_SECONDS),
    during which calls fail at once instead of each waiting for a timeout; then one call at a time is let through
    to try Redis again (half-open), and the first that gets an answer closes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open_until = 0.0
        self.trial = False
        self.last_error = ""

    @property
    def open_seconds(self) -> float:
        return float(getattr(settings, "REDIS_BREAKER_SECONDS", 10))

    def state(self) -> str:
        if not self.open_until:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half-open"

    def before_call(self) -> None:
        if not self.open_until:
            return
        with self._lock:
            if not self.open_until:
                return
            if time.monotonic() < self.open_until or self.trial:
                raise CircuitOpen(f"Redis is bypassed for a while after: {self.last_error}")
            self.trial = True  # half-open: this call is the one that tries Redis again

    def succeeded(self) -> None:
        if not (self.open_until or self.trial):
            return
        with self._lock:
            if self.open_until:
                log.warning("Redis answers again: the circuit breaker is closed")
            self.open_until, self.trial = 0.0, False

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if not self.open_until:
                log.warning("Redis failed (%s): bypassing it for %.0f s", exc, self.open_seconds)
            self.open_until = time.monotonic() + self.open_seconds
            self.trial = False
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def reset(self) -> None:
        with self._lock:
            self.open_until, self.trial, self.last_error = 0.0, False, ""


breaker = CircuitBreaker()
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _guarded(impl: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: RedisCacheClient, *args: Any, **kwargs: Any) -> Any:
        breaker.before_call()
        try:
            result = impl(self, *args, **kwargs)
        except _REDIS_DOWN as exc:
            breaker.failed(exc)
            raise
        except BaseException:
            breaker.succeeded()  # Redis answered, with an error of the command's own
            raise
        breaker.succeeded()
        return result

    call.__name__ = impl.__name__
    return call


def _ping(self: RedisCacheClient) -> bool:
    return bool(self.get_client().ping())


class BreakerRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client with every command behind the process's circuit breaker."""

    ping = _guarded(_ping)
    # Set by Django's RedisCacheClient; its stubs do not declare them.
    _client: Any
    _get_connection_pool: Callable[[bool], Any]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        """One redis-py client per connection pool, made once. Django's makes a new one for every command, and each
        builds its table of about 170 response callbacks: a tenth of a millisecond on every session read. A client
        is safe to share between threads (each command takes a connection from the pool)."""
        pool = self._get_connection_pool(write)
        clients: dict[bool, Any] = self.__dict__.setdefault("_clients", {})
        client = clients.get(write)
        if client is None or client.connection_pool is not pool:
            client = clients[write] = self._client(connection_pool=pool)
        return client


_COMMANDS = ("add", "get", "set", "touch", "delete", "get_many", "has_key", "incr", "set_many", "delete_many", "clear")
for _name in _COMMANDS:
    setattr(BreakerRedisCacheClient, _name, _guarded(getattr(RedisCacheClient, _name)))


class BreakerRedisCache(RedisCache):
    """settings.CACHES' Redis backend: short connect and read timeouts (OPTIONS socket_connect_timeout and
    socket_timeout, from REDIS_CONNECT_TIMEOUT_MS and REDIS_TIMEOUT_MS) and the circuit breaker above, so that a
    hung Redis (a frozen process, a network partition) costs one short timeout, not every request's default wait."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = BreakerRedisCacheClient

    def ping_ms(self) -> float:
        """Milliseconds a PING takes (through the breaker: raises CircuitOpen while it is open)."""
        client = self._cache
        assert isinstance(client, BreakerRedisCacheClient)
        started = time.perf_counter()
        client.ping()
        return (time.perf_counter() - started) * 1000


def redis_health() -> dict[str, Any] | None:
    """What /healthz says of Redis: its PING latency and the breaker's state; None without Redis (embedded default)."""
    from django.core.cache import caches

    cache = caches["default"]
    if not isinstance(cache, BreakerRedisCache):
        return None
    state = breaker.state()
    if state == "open":
        return {"status": "bypassed", "breaker": state, "latency_ms": None, "error": breaker.last_error}
    try:
        latency = cache.ping_ms()
    except _REDIS_DOWN as exc:
        return {"status": "unreachable", "breaker": breaker.state(), "latency_ms": None, "error": type(exc).__name__}
    return {"status": "ok", "breaker": breaker.state(), "latency_ms": round(latency, 2)}
