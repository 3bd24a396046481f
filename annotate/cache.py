"""Caches that store JSON, never pickle: Django's Redis and file caches pickle every value (and unpickle whatever they
read back, which runs code if someone could write to Redis or the cache folder). settings.CACHES uses these.

Only plain JSON data can be cached: a value that is not (a datetime, a model, a dataclass) fails loudly on `set`.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import IO, Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.files import locks


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
