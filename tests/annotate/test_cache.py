"""The caches store JSON, never pickles (../shared/ATTACKS-AND-FAULTS.md: "no pickle anywhere, caches as JSON")."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass

import pytest
from django.core.cache import cache

from annotate.cache import JSONFileBasedCache


@dataclass
class _Figures:
    n: int


def test_the_redis_cache_round_trips_plain_data_as_json_text():
    value = {"percent": 40, "rows": [1, 2], "name": "Ünïcode <b>", "done": False, "none": None}
    cache.set("dash2:roundtrip", value, 30)
    assert cache.get("dash2:roundtrip") == value
    raw = cache._cache.get_client(write=False).get(cache.make_and_validate_key("dash2:roundtrip"))  # type: ignore[attr-defined]
    assert json.loads(raw) == value and not raw.startswith(b"\x80")  # pickles start with their protocol byte
    cache.delete("dash2:roundtrip")


def test_the_redis_cache_makes_its_client_once_instead_of_for_every_command():
    # Django's cache objects are per thread; within one, every command used to build a new redis-py client.
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    cache.set("dash2:shared", {"ok": True}, 30)
    assert cache.get("dash2:shared") == {"ok": True}
    assert cache._cache.get_client(write=True) is client  # type: ignore[attr-defined]
    assert cache._cache.get_client(write=False) is cache._cache.get_client(write=False)  # type: ignore[attr-defined]
    cache.delete("dash2:shared")


def test_counters_stay_atomic_integers_in_redis():
    cache.set("dash2:counter", 1, 30)
    assert cache.incr("dash2:counter") == 2 and cache.get("dash2:counter") == 2
    cache.delete("dash2:counter")


def test_the_redis_cache_refuses_what_only_pickle_could_store():
    with pytest.raises(TypeError):
        cache.set("dash2:object", _Figures(n=3), 30)
    assert cache.get("dash2:object") is None


def test_the_file_cache_writes_json_and_never_unpickles(tmp_path):
    files = JSONFileBasedCache(str(tmp_path), {})
    files.set("progress", {"percent": 40}, 30)
    assert files.get("progress") == {"percent": 40}
    assert files.touch("progress", 60) and files.get("progress") == {"percent": 40}
    (path,) = tmp_path.glob("*.djcache")
    expiry = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert time.time() + 50 < expiry < time.time() + 61
    with pytest.raises(TypeError):
        files.set("object", _Figures(n=3), 30)
    # A file in the pickling cache's format (or anything else) reads as a miss and is removed, never unpickled.
    path.write_bytes(pickle.dumps(time.time() + 60) + pickle.dumps(_Figures(n=3)))
    assert files.get("progress", "missing") == "missing" and not path.exists()
    files.set("short", [1], 1)
    time.sleep(1.1)
    assert files.get("short") is None
