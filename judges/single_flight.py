"""One paid call per identical request at a time, across every worker: a short Redis lock on the request's cache key.

Chunks of one run (or of two runs of one project) that hold the same prompt and run at the same time would each pay
for it: the answer reaches the cache only once the first call is done. Here the first caller takes a lock on the cache
key (SET NX PX, its lease the endpoint's timeout plus JUDGE_SLOT_GRACE_SECONDS, renewed between attempts), calls the
model, and publishes the answer under the key for a minute (by then its worker has stored it in the database cache)
before letting go. Whoever finds the lock taken waits for that answer, polling Redis, and gets it as a cached answer
(no attempt, nothing paid).

- A holder that dies (killed worker) stops renewing its lease: the lock expires after at most one lease, and the next
  waiter to find it gone takes it and calls. Nobody waits longer than that, plus a poll.
- A holder whose call fails releases the lock without an answer: the waiters then try themselves, one at a time.
- A waiter waits at most two leases in all, then calls anyway: a duplicate call at worst, never a stuck chunk.
- Without Redis (the embedded default's file cache), or while it is down or its circuit breaker is open
  (annotate/cache.py: short timeouts), there is no lock: every caller simply calls, as before. A caller that cannot
  tell whether its SET went through (a timeout) still publishes its answer and lets go of the lock if it got it.

Like judges.llm, nothing here touches the database: the pool threads of judges.services call `call`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from annotate.cache import _REDIS_DOWN, BreakerRedisCache, breaker
from judges import llm

logger = logging.getLogger(__name__)

LOCK_PREFIX = "judges:flight:lock:"
ANSWER_PREFIX = "judges:flight:answer:"
# How long a published answer stays for waiters and latecomers: until the holder's worker has stored it in the
# database cache (well under a second normally), which keeps it from then on.
ANSWER_TTL_MS = 60_000
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _NoLock(Exception):
    """Redis is not configured, down or bypassed: go without a lock."""


def _client() -> redis.Redis | None:
    """The cache's Redis client (short timeouts), or None on the embedded default's file cache."""
    from django.core.cache import caches

    cache = caches["default"]
    if not isinstance(cache, BreakerRedisCache):
        return None
    client: redis.Redis = cache._cache.get_client(write=True)
    return client


def _redis(command: Callable[[redis.Redis], Any]) -> Any:
    """Run one Redis command behind the cache's circuit breaker; _NoLock when Redis cannot answer."""
    client = _client()
    if client is None:
        raise _NoLock
    try:
        breaker.before_call()
    except _REDIS_DOWN as exc:
        raise _NoLock from exc
    try:
        result = command(client)
    except _REDIS_DOWN as exc:
        breaker.failed(exc)
        raise _NoLock from exc
    breaker.succeeded()
    return result


def lease_ms(endpoint: llm.Endpoint) -> int:
    """The lock's lease: one attempt's longest wait (the endpoint's timeout) plus the slot grace, as the limiter's."""
    return int((endpoint.timeout + settings.JUDGE_SLOT_GRACE_SECONDS) * 1000)


def _completion(raw: bytes | str, waited_ms: int) -> llm.Completion:
    data = json.loads(raw)
    return llm.Completion(
        content=str(data["content"]),
        tokens_in=int(data["tokens_in"]),
        tokens_out=int(data["tokens_out"]),
        finish_reason=str(data["finish_reason"]),
        attempts=0,  # nothing was paid here: the services count it as a cached answer
        latency_ms=waited_ms,
    )


def call(
    endpoint: llm.Endpoint, request: llm.ChatRequest, key: str, *, should_stop: Callable[[], bool] = lambda: False
) -> llm.CallResult:
    """`llm.call`, made once for concurrent identical requests (same cache key) across workers.

    Returns the caller's own result when it held the lock (or had none); a waiter gets the holder's answer as a
    Completion with attempts=0 and no slot.
    """
    if _client() is None:
        return llm.call(endpoint, request, should_stop=should_stop)
    lock, answer = LOCK_PREFIX + key, ANSWER_PREFIX + key
    token = uuid.uuid4().hex
    lease = lease_ms(endpoint)
    started = time.monotonic()
    give_up = started + 2 * lease / 1000
    poll = POLL_FIRST_SECONDS

    def call_anyway() -> llm.CallResult:
        # Without the lock, or unsure whether it was taken (a timeout after Redis ran the SET): call, then still try
        # to publish the answer and let go of the lock if it is this caller's, so nobody waits out a lease for it.
        return _call_holding(endpoint, request, lock, answer, token, lease, should_stop)

    while True:
        try:
            published, taken = _redis(lambda r: (r.get(answer), r.set(lock, token, nx=True, px=lease)))
        except _NoLock:
            return call_anyway()
        if published is not None:
            return llm.CallResult(_completion(published, llm._ms(started)), None)
        if taken:
            return _call_holding(endpoint, request, lock, answer, token, lease, should_stop)
        # Another caller holds the lock: wait for its answer, or for the lock to go (failed, or died and expired).
        while True:
            if should_stop():
                return llm.CallResult(llm.Failure("cancelled", 0, llm._ms(started), cancelled=True), None)
            if time.monotonic() > give_up:
                logger.warning("judge call: waited %d ms for an identical call; calling too", llm._ms(started))
                return call_anyway()
            time.sleep(poll * random.uniform(0.8, 1.2))
            poll = min(POLL_MAX_SECONDS, poll * 1.5)
            try:
                published, held = _redis(lambda r: r.mget([answer, lock]))
            except _NoLock:
                return call_anyway()
            if published is not None:
                return llm.CallResult(_completion(published, llm._ms(started)), None)
            if held is None:
                break  # free again: try to take it


def _call_holding(
    endpoint: llm.Endpoint,
    request: llm.ChatRequest,
    lock: str,
    answer: str,
    token: str,
    lease: int,
    should_stop: Callable[[], bool],
) -> llm.CallResult:
    """Call with the lock held, renewing its lease whenever the call checks whether to stop (between attempts and
    while it waits for a slot or a backoff), then publish the answer and let go."""
    renewed = time.monotonic()

    def stop_and_renew() -> bool:
        nonlocal renewed
        if time.monotonic() - renewed > lease / 3000:
            renewed = time.monotonic()
            with contextlib.suppress(_NoLock):
                _redis(lambda r: r.eval(_RENEW, 1, lock, token, lease))
        return should_stop()

    result: llm.CallResult | None = None
    try:
        result = llm.call(endpoint, request, should_stop=stop_and_renew)
        return result
    finally:
        out = result.outcome if result is not None else None
        body = None
        if isinstance(out, llm.Completion):
            body = json.dumps(
                {
                    "content": out.content,
                    "tokens_in": out.tokens_in,
                    "tokens_out": out.tokens_out,
                    "finish_reason": out.finish_reason,
                }
            )

        def publish(r: redis.Redis) -> None:
            pipe = r.pipeline()
            if body is not None:
                pipe.set(answer, body, px=ANSWER_TTL_MS)
            pipe.eval(_RELEASE, 1, lock, token)
            pipe.execute()

        with contextlib.suppress(_NoLock):  # without Redis now, the lease runs out by itself
            _redis(publish)
