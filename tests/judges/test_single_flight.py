"""Concurrent identical judge requests share one call (judges/single_flight.py), against the stand-in, which counts.

Threads stand in for workers: the lock lives in Redis, so threads of one process contend exactly as processes do.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from annotate.cache import BreakerRedisCache, breaker
from judges import llm, prompts, single_flight
from tests.judges.conftest import MODEL


@pytest.fixture
def redis_cache():
    from django.core.cache import caches

    if not isinstance(caches["default"], BreakerRedisCache):
        pytest.skip("needs the Redis cache (REDIS_URL)")
    breaker.reset()
    yield single_flight._client()
    breaker.reset()


def _request(text: str) -> llm.ChatRequest:
    endpoint = llm.endpoint_get("standin")
    messages = [{"role": "system", "content": prompts.BINARY_FORMAT}, {"role": "user", "content": text}]
    return llm.build_request(
        endpoint=endpoint, kind="binary", model=MODEL, messages=messages, temperature=0, max_tokens=50
    )


def _concurrently(n: int, endpoint: llm.Endpoint, request: llm.ChatRequest, key: str) -> list[llm.CallResult]:
    start = threading.Barrier(n)

    def one(_: int) -> llm.CallResult:
        start.wait()
        result = single_flight.call(endpoint, request, key)
        result.release()
        return result

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_identical_requests_make_one_upstream_call(standin, redis_cache):
    standin.configure(latency_ms=300)
    endpoint = llm.endpoint_get("standin")
    request = _request(f"Is this acceptable? {uuid.uuid4()}")
    key = request.cache_key(endpoint, scope="single-flight-test")
    results = _concurrently(8, endpoint, request, key)
    stats = standin.stats()
    assert stats["requests"] == 1 and stats["answered"] == 1
    outcomes = [r.outcome for r in results]
    assert all(isinstance(o, llm.Completion) for o in outcomes)
    assert len({o.content for o in outcomes}) == 1  # type: ignore[union-attr]
    # One paid (attempts ≥ 1); seven got its answer for nothing (attempts 0, as the services count a cached answer).
    assert sorted(o.attempts for o in outcomes) == [0] * 7 + [1]  # type: ignore[union-attr]
    # The lock is let go; the answer stays a while for latecomers.
    assert redis_cache.get(single_flight.LOCK_PREFIX + key) is None
    assert redis_cache.get(single_flight.ANSWER_PREFIX + key) is not None


def test_different_requests_do_not_wait_for_each_other(standin, redis_cache):
    standin.configure(latency_ms=200)
    endpoint = llm.endpoint_get("standin")
    requests = [_request(f"Question {n} {uuid.uuid4()}") for n in range(6)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(lambda r: single_flight.call(endpoint, r, r.cache_key(endpoint, scope="sf-test")), requests)
        )
    assert time.monotonic() - started < 1.0
    assert standin.stats()["answered"] == 6 and all(r.outcome.attempts == 1 for r in results)  # type: ignore[union-attr]


def test_a_holder_that_died_blocks_others_no_longer_than_its_lease(standin, redis_cache, settings):
    """A lock taken and never released (its worker was killed mid-call): waiters call once it expires."""
    settings.JUDGE_SLOT_GRACE_SECONDS = 1
    endpoint = dataclasses.replace(llm.endpoint_get("standin"), timeout=1.0)
    lease = single_flight.lease_ms(endpoint)
    assert lease == 2000
    request = _request(f"Orphaned {uuid.uuid4()}")
    key = request.cache_key(endpoint, scope="single-flight-test")
    redis_cache.set(single_flight.LOCK_PREFIX + key, "a-worker-that-died", px=lease)
    started = time.monotonic()
    results = _concurrently(5, endpoint, request, key)
    waited = time.monotonic() - started
    assert 1.5 < waited < lease / 1000 + 1.5, waited
    assert standin.stats()["answered"] == 1  # after the lease, still one call for the five
    assert all(isinstance(r.outcome, llm.Completion) for r in results)


def test_a_failed_holder_lets_the_waiters_try_themselves(standin, redis_cache):
    standin.configure(latency_ms=200, script=["401"])  # the first attempt is refused, later ones answered
    endpoint = llm.endpoint_get("standin")
    request = _request(f"Refused once {uuid.uuid4()}")
    key = request.cache_key(endpoint, scope="single-flight-test")
    results = _concurrently(4, endpoint, request, key)
    outcomes = [r.outcome for r in results]
    assert sum(isinstance(o, llm.Failure) for o in outcomes) == 1
    assert sum(isinstance(o, llm.Completion) for o in outcomes) == 3
    assert standin.stats()["answered"] == 1  # the first waiter to get the lock calls; the others share its answer


def test_without_redis_there_is_no_lock_and_every_caller_calls(standin, redis_cache):
    """Redis down (the circuit breaker open): no lock, no wait; each caller calls, as before single-flight."""
    standin.configure(latency_ms=100)
    endpoint = llm.endpoint_get("standin")
    request = _request(f"No Redis {uuid.uuid4()}")
    key = request.cache_key(endpoint, scope="single-flight-test")
    breaker.failed(ConnectionError("Redis is down (test)"))
    results = _concurrently(3, endpoint, request, key)
    assert all(isinstance(r.outcome, llm.Completion) and r.outcome.attempts == 1 for r in results)
    assert standin.stats()["answered"] == 3


def test_on_the_file_cache_default_there_is_no_lock(standin, settings, tmp_path):
    settings.CACHES = {"default": {"BACKEND": "annotate.cache.JSONFileBasedCache", "LOCATION": str(tmp_path / "cache")}}
    endpoint = llm.endpoint_get("standin")
    request = _request(f"File cache {uuid.uuid4()}")
    results = _concurrently(2, endpoint, request, request.cache_key(endpoint, scope="sf-test"))
    assert all(isinstance(r.outcome, llm.Completion) and r.outcome.attempts == 1 for r in results)
    assert standin.stats()["answered"] == 2


def test_a_set_whose_reply_timed_out_still_publishes_and_lets_go(standin, redis_cache, monkeypatch):
    """Redis took the lock but its reply timed out: the caller calls without knowing it holds the lock. It still
    publishes the answer and releases the lock, so the others get the answer at once instead of waiting out a lease."""
    standin.configure(latency_ms=300)
    real = single_flight._redis
    once = threading.Lock()
    failed: list[bool] = []

    def reply_lost(command):
        result = real(command)
        with once:
            if isinstance(result, tuple) and result[1] and not failed:
                failed.append(True)
                raise single_flight._NoLock  # as a socket timeout after Redis ran the SET
        return result

    monkeypatch.setattr(single_flight, "_redis", reply_lost)
    endpoint = llm.endpoint_get("standin")
    request = _request(f"Reply lost {uuid.uuid4()}")
    key = request.cache_key(endpoint, scope="single-flight-test")
    started = time.monotonic()
    results = _concurrently(5, endpoint, request, key)
    assert failed and time.monotonic() - started < 5 < single_flight.lease_ms(endpoint) / 1000
    assert standin.stats()["answered"] == 1
    assert all(isinstance(r.outcome, llm.Completion) for r in results)
    assert redis_cache.get(single_flight.LOCK_PREFIX + key) is None
