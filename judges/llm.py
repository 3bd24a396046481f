"""The LLM client: endpoints from settings, the OpenAI Python client, shared rate limits, retries, answer parsing.

Nothing here touches the database: the chunk service calls `call` from a thread pool and writes the results itself.
Nothing here needs Django either, except the defaults read from settings: the judge card runner (judges/card.py), which
runs where the app is not installed, builds its Endpoint from the card and passes its own Policy and Limiter.

Endpoints are configuration, never user input: each has a name, a base URL checked against JUDGE_ALLOWED_HOSTS, and
the NAME of the environment variable holding its key. The key is read from the environment when the client is built
and goes nowhere else: not to the database, not to logs (failures are logged and stored as a short category such as
"HTTP 429", never with the response body), not to pages. Redirects are not followed.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httpx2
import openai

try:
    from django.conf import settings
except ImportError:  # the judge card runner, installed alone (runner/): it passes its own Policy and Limiter
    settings = cast(Any, None)

logger = logging.getLogger(__name__)
# The HTTP client logs every request at INFO (URL and status); a run makes thousands. Unless LOGGING says otherwise,
# keep its warnings only.
if logging.getLogger("httpx2").level == logging.NOTSET:
    logging.getLogger("httpx2").setLevel(logging.WARNING)

STANDIN = "standin"
# The stand-in's replay of real judges' recorded answers (judges/recorded.py), on the stand-in's port.
RECORDED = "recorded"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class EndpointError(Exception):
    """An endpoint that cannot be used as configured. The message is safe to show a lead (no URL secrets, no key)."""


# --- Endpoints ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    key_env: str = ""
    structured_outputs: bool = True
    max_concurrency: int = 8
    rpm: int = 0  # requests per minute shared by all workers; 0 = no limit
    timeout: float = 60.0
    max_tokens_param: str = "max_tokens"  # or "max_completion_tokens" (newer OpenAI reasoning models)


def check_base_url(base_url: str) -> None:
    """Refuse any base URL whose host is not allowlisted, or that is plain HTTP to a host not listed for HTTP."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    allowed = {h.lower() for h in settings.JUDGE_ALLOWED_HOSTS}
    http_hosts = {h.lower() for h in settings.JUDGE_HTTP_HOSTS}
    if parts.scheme not in {"https", "http"} or not host:
        raise EndpointError("The base URL must be an http(s) URL with a host.")
    if parts.username or parts.password:
        raise EndpointError("The base URL must not carry credentials; name an environment variable instead.")
    if host not in allowed:
        raise EndpointError(f"The host {host!r} is not in JUDGE_ALLOWED_HOSTS.")
    if parts.scheme == "http" and host not in http_hosts:
        raise EndpointError(f"The host {host!r} is not in JUDGE_HTTP_HOSTS: use https.")


def endpoints() -> dict[str, Endpoint]:
    """The configured endpoints by name, the built-in stand-in last (settings are read on every call)."""
    found: dict[str, Endpoint] = {}
    for raw in cast(list[dict[str, Any]], settings.JUDGE_ENDPOINTS):
        endpoint = Endpoint(
            name=raw["name"],
            base_url=raw["base_url"].rstrip("/"),
            key_env=raw.get("key_env", ""),
            structured_outputs=bool(raw.get("structured_outputs", True)),
            max_concurrency=int(raw.get("max_concurrency", 8)),
            rpm=int(raw.get("rpm", 0)),
            timeout=float(raw.get("timeout", settings.JUDGE_TIMEOUT_SECONDS)),
            max_tokens_param=raw.get("max_tokens_param", "max_tokens"),
        )
        found[endpoint.name] = endpoint
    found[STANDIN] = Endpoint(
        name=STANDIN,
        base_url=f"http://127.0.0.1:{settings.JUDGE_STANDIN_PORT}/v1",
        structured_outputs=True,
        max_concurrency=settings.JUDGE_STANDIN_CONCURRENCY,
        rpm=settings.JUDGE_STANDIN_RPM,
        timeout=float(settings.JUDGE_STANDIN_TIMEOUT_SECONDS),
    )
    found[RECORDED] = Endpoint(
        name=RECORDED,
        base_url=f"http://127.0.0.1:{settings.JUDGE_STANDIN_PORT}/recorded/v1",
        structured_outputs=True,
        max_concurrency=settings.JUDGE_STANDIN_CONCURRENCY,
        rpm=settings.JUDGE_STANDIN_RPM,
        timeout=float(settings.JUDGE_STANDIN_TIMEOUT_SECONDS),
    )
    return found


def is_standin(name: str) -> bool:
    """Whether the endpoint called `name` is served by the stand-in (judges/standin.py): the built-in one, or a
    configured endpoint whose base URL is the stand-in's (a loopback host on JUDGE_STANDIN_PORT). Its calls cost
    nothing, whatever model name it answers to."""
    endpoint = endpoints().get(name)
    if endpoint is None:
        return False
    if endpoint.name == STANDIN:
        return True
    return _on_standin_port(endpoint) and not is_recorded(name)


def is_recorded(name: str) -> bool:
    """Whether the endpoint called `name` replays recorded answers of real models (the stand-in's `recorded` path):
    its verdicts are what those models answered, so they are priced as those models (judges.selectors.price_for),
    unless the version's prompt has no recording (JudgeVersion.uses_standin)."""
    endpoint = endpoints().get(name)
    if endpoint is None:
        return False
    return endpoint.name == RECORDED or (
        _on_standin_port(endpoint) and urlsplit(endpoint.base_url).path.rstrip("/") == "/recorded/v1"
    )


def _on_standin_port(endpoint: Endpoint) -> bool:
    parts = urlsplit(endpoint.base_url)
    try:
        port = parts.port
    except ValueError:
        return False
    return (parts.hostname or "").lower() in LOOPBACK and port == settings.JUDGE_STANDIN_PORT


def endpoint_get(name: str) -> Endpoint:
    endpoint = endpoints().get(name)
    if endpoint is None:
        raise EndpointError(f"No endpoint named {name!r} is configured (JUDGE_ENDPOINTS).")
    check_base_url(endpoint.base_url)
    return endpoint


def endpoint_has_key(endpoint: Endpoint) -> bool:
    return not endpoint.key_env or bool(os.environ.get(endpoint.key_env))


_clients: dict[tuple[Endpoint, str], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def client_for(endpoint: Endpoint, *, check: bool = True) -> openai.OpenAI:
    """One OpenAI client per endpoint per process (thread-safe). It never retries by itself: `call` does.

    `check=False` skips the app's host allowlist: only for the card runner, whose endpoint comes from a signed card
    or from the operator's command line, never from a user of the app."""
    if check:
        check_base_url(endpoint.base_url)
    if endpoint.key_env:
        key = os.environ.get(endpoint.key_env, "")
        if not key:
            raise EndpointError(f"The environment variable {endpoint.key_env} holding this endpoint's key is not set.")
    else:
        key = "no-key"  # local servers (the stand-in, Ollama, vLLM) take any key
    fingerprint = hashlib.sha256(key.encode()).hexdigest()
    with _clients_lock:
        client = _clients.get((endpoint, fingerprint))
        if client is None:
            http = httpx2.Client(
                follow_redirects=False,
                trust_env=False,
                timeout=endpoint.timeout,
                limits=httpx2.Limits(
                    max_connections=endpoint.max_concurrency + 8, max_keepalive_connections=endpoint.max_concurrency
                ),
            )
            client = openai.OpenAI(
                api_key=key, base_url=endpoint.base_url, max_retries=0, timeout=endpoint.timeout, http_client=http
            )
            _clients[(endpoint, fingerprint)] = client
    return client


# --- Requests, the cache key and the answer schema ------------------------------------------------------------

VERDICTS = {"binary": ("pass", "fail"), "pairwise": ("A", "B", "tie")}


def response_format(kind: str) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": f"{kind}_verdict",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string"},
                    "verdict": {"type": "string", "enum": list(VERDICTS[kind])},
                },
                "required": ["reasoning", "verdict"],
                "additionalProperties": False,
            },
        },
    }


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Mapping[str, str], ...]
    temperature: float
    max_tokens: int
    response_format: Mapping[str, Any] | None = None

    def cache_key(self, endpoint: Endpoint, *, scope: str) -> str:
        """The exact-match cache key: the project (`scope`, its slug), endpoint, model, rendered messages and every
        parameter sent. Scoped to the project, so that nobody gets another project's answer by sending the same
        request; the versions and runs of one project still share their answers."""
        payload = {
            "scope": scope,
            "endpoint": endpoint.name,
            "base_url": endpoint.base_url,
            "model": self.model,
            "messages": [dict(m) for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": self.response_format,
        }
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def build_request(
    *,
    endpoint: Endpoint,
    kind: str,
    model: str,
    messages: Sequence[Mapping[str, str]],
    temperature: float,
    max_tokens: int,
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        temperature=temperature,
        max_tokens=max_tokens,
        response_format=response_format(kind) if endpoint.structured_outputs else None,
    )


# --- Parsing answers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    verdict: str  # as the model said it: pass/fail, or A/B/tie
    reasoning: str


def _objects(text: str) -> list[Any]:
    """Every JSON object in the text: the whole text, else every object in it, fenced or in prose.

    Never only the fenced ones: a model that quotes an item holding a fenced `{"verdict": ...}` and then gives its
    own verdict outside a fence would otherwise be read as the item's verdict (prompt injection). All objects count,
    and two verdicts that disagree make the answer invalid.
    """
    stripped = text.strip()
    try:
        return [json.loads(stripped)]
    except ValueError:
        pass
    found = []
    decoder = json.JSONDecoder()
    position = text.find("{")
    while position != -1:
        try:
            obj, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        found.append(obj)
        position = text.find("{", end)
    return found


def parse_answer(text: str, *, kind: str) -> Answer | None:
    """The verdict in the model's answer, or None when there is none or more than one (never a guess).

    Only the model's answer is parsed, and strictly: a JSON object whose "verdict" is one of the allowed values
    (case and surrounding spaces aside). Objects without a "verdict" are ignored; two objects that disagree make the
    answer invalid.
    """
    allowed = {v.lower(): v for v in VERDICTS[kind]}
    answers: list[Answer] = []
    for obj in _objects(text):
        if not isinstance(obj, dict) or "verdict" not in obj:
            continue
        verdict = obj["verdict"]
        if not isinstance(verdict, str) or verdict.strip().lower() not in allowed:
            return None
        reasoning = obj.get("reasoning", "")
        answers.append(Answer(verdict=allowed[verdict.strip().lower()], reasoning=str(reasoning or "")))
    if not answers or len({a.verdict for a in answers}) > 1:
        return None
    return answers[0]


# --- Rate limits shared by all workers ------------------------------------------------------------------------


class Slot(Protocol):
    def release(self) -> None: ...


class Limiter(Protocol):
    shared: bool

    def acquire(self, endpoint: Endpoint, *, should_stop: Callable[[], bool]) -> Slot | None: ...


# Holders are a sorted set scored by lease expiry, so the slots of a worker killed mid-call come back by themselves.
# Requests per minute are a sliding window of the last 60 s of starts. Redis's clock serves every worker.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
local rpm = tonumber(ARGV[4])
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[2]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + 60000 - now)
  end
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 61000)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return 0
"""
_RELEASE_WAIT_SECONDS = 0.5
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], 60000)
return 0
"""


@dataclass
class _RedisSlot:
    limiter: RedisLimiter
    endpoint: Endpoint
    token: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limiter.release(self.endpoint, self.token)


class RedisLimiter:
    """Per-endpoint concurrency and requests-per-minute limits shared by every worker through Redis."""

    shared = True

    def __init__(self, url: str, *, grace_seconds: float | None = None) -> None:
        import redis

        self.grace_seconds = settings.JUDGE_SLOT_GRACE_SECONDS if grace_seconds is None else grace_seconds
        self.redis = redis.Redis.from_url(url, max_connections=512, socket_timeout=10)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)

    @staticmethod
    def keys(endpoint: Endpoint) -> tuple[str, str, str]:
        base = f"judges:limit:{endpoint.name}"
        return f"{base}:holders", f"{base}:starts", f"{base}:released"

    def acquire(self, endpoint: Endpoint, *, should_stop: Callable[[], bool]) -> Slot | None:
        holders, starts, released = self.keys(endpoint)
        token = uuid.uuid4().hex
        lease_ms = int((endpoint.timeout + self.grace_seconds) * 1000)
        while True:
            waited = int(
                self._acquire(keys=[holders, starts], args=[token, endpoint.max_concurrency, lease_ms, endpoint.rpm])
            )
            if waited == 0:
                return _RedisSlot(self, endpoint, token)
            if should_stop():
                return None
            if waited < 0:
                # Every slot is taken: wait for a release notice, which wakes one waiter per release. The timeout only
                # covers a lease that expired instead (its holder died): polling more often costs every waiting
                # thread a round trip to Redis 20 times a second, which a busy run's dozens of threads turn into
                # thousands of Redis calls a second and most of a core (docs/load.md).
                self.redis.blpop([released], timeout=_RELEASE_WAIT_SECONDS)
            else:
                time.sleep(min(waited / 1000, 1.0) * random.uniform(1.0, 1.2))

    def release(self, endpoint: Endpoint, token: str) -> None:
        holders, _starts, released = self.keys(endpoint)
        self._release(keys=[holders, released], args=[token, endpoint.max_concurrency])


@dataclass
class _LocalSlot:
    semaphore: threading.Semaphore
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.semaphore.release()


@dataclass
class _LocalState:
    semaphore: threading.Semaphore
    starts: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalLimiter:
    """The same limits within one process, for the embedded default without Redis. Each worker process has its own
    budget, so N worker processes may together reach N times the limits; the run page says so."""

    shared = False

    def __init__(self) -> None:
        self._states: dict[Endpoint, _LocalState] = {}
        self._lock = threading.Lock()

    def _state(self, endpoint: Endpoint) -> _LocalState:
        with self._lock:
            state = self._states.get(endpoint)
            if state is None:
                state = self._states[endpoint] = _LocalState(threading.Semaphore(endpoint.max_concurrency))
            return state

    def acquire(self, endpoint: Endpoint, *, should_stop: Callable[[], bool]) -> Slot | None:
        state = self._state(endpoint)
        while not state.semaphore.acquire(timeout=0.05):
            if should_stop():
                return None
        while endpoint.rpm > 0:
            with state.lock:
                now = time.monotonic()
                while state.starts and state.starts[0] <= now - 60:
                    state.starts.popleft()
                if len(state.starts) < endpoint.rpm:
                    state.starts.append(now)
                    break
                wait = state.starts[0] + 60 - now
            if should_stop():
                state.semaphore.release()
                return None
            time.sleep(min(wait, 1.0))
        return _LocalSlot(state.semaphore)


_limiter: Limiter | None = None
_limiter_lock = threading.Lock()


def limiter() -> Limiter:
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            if settings.REDIS_URL:
                _limiter = RedisLimiter(settings.REDIS_URL)
            else:
                logger.warning(
                    "REDIS_URL is not set: judge rate limits are kept per worker process, not shared between workers."
                )
                _limiter = LocalLimiter()
        return _limiter


def limiter_is_shared() -> bool:
    return bool(settings.REDIS_URL)


# --- Calling with retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    content: str
    tokens_in: int
    tokens_out: int
    finish_reason: str
    attempts: int
    latency_ms: int


@dataclass(frozen=True)
class Failure:
    category: str  # short and safe to show: "HTTP 429", "timeout", "connection error"
    attempts: int
    latency_ms: int
    fatal: bool = False  # the endpoint refuses us (bad key, unknown model): stop the run instead of trying every item
    cancelled: bool = False


@dataclass
class CallResult:
    outcome: Completion | Failure
    slot: Slot | None  # held until the caller has stored the result (see judges.services.run_chunks); may be None

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None


_TRANSIENT_STATUS = frozenset({408, 409, 429})
_FATAL_STATUS = frozenset({401, 403, 404})


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if any."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Policy:
    """How `call` retries: attempts, exponential backoff (ms) and the longest Retry-After it honours (s)."""

    max_attempts: int = 6
    backoff_base_ms: int = 500
    backoff_max_ms: int = 30_000
    retry_after_max_seconds: int = 60


def policy() -> Policy:
    """The app's retry policy, from settings (JUDGE_MAX_ATTEMPTS, JUDGE_BACKOFF_*, JUDGE_RETRY_AFTER_MAX_SECONDS)."""
    return Policy(
        max_attempts=settings.JUDGE_MAX_ATTEMPTS,
        backoff_base_ms=settings.JUDGE_BACKOFF_BASE_MS,
        backoff_max_ms=settings.JUDGE_BACKOFF_MAX_MS,
        retry_after_max_seconds=settings.JUDGE_RETRY_AFTER_MAX_SECONDS,
    )


def backoff_seconds(attempt: int, retry_after: float | None, *, rules: Policy | None = None) -> float:
    """Exponential backoff with full jitter; a Retry-After is waited in full (up to JUDGE_RETRY_AFTER_MAX_SECONDS)."""
    rules = rules or policy()
    base = rules.backoff_base_ms / 1000
    cap = rules.backoff_max_ms / 1000
    jittered = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        return min(retry_after, float(rules.retry_after_max_seconds)) + random.uniform(0, base)
    return jittered


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Sleep, waking early to stop. True when the call should stop."""
    deadline = time.monotonic() + seconds
    while True:
        if should_stop():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.25))


def call(
    endpoint: Endpoint,
    request: ChatRequest,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    limits: Limiter | None = None,
    rules: Policy | None = None,
) -> CallResult:
    """Ask the model once, retrying 429, 5xx, timeouts and connection errors with backoff, jitter and Retry-After.

    The returned slot is still held: the caller releases it once the result is stored, so that a worker killed
    between the answer and the write has at most the limit's worth of calls to repeat. Without `limits` and `rules`
    (the app) they come from settings; the card runner passes its own and its endpoint is not checked against the
    app's allowlist.
    """
    standalone = rules is not None
    rules = rules or policy()
    client = client_for(endpoint, check=not standalone)
    limits = limits or limiter()
    started = time.monotonic()
    attempt = 0
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": [dict(m) for m in request.messages],
        "temperature": request.temperature,
        endpoint.max_tokens_param: request.max_tokens,
    }
    if request.response_format is not None:
        kwargs["response_format"] = dict(request.response_format)
    while True:
        attempt += 1
        slot = limits.acquire(endpoint, should_stop=should_stop)
        if slot is None:
            return CallResult(Failure("cancelled", attempt - 1, _ms(started), cancelled=True), None)
        retry_after: float | None = None
        try:
            response = client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            category = "timeout"
        except openai.APIConnectionError:
            category = "connection error"
        except openai.APIStatusError as exc:
            category = f"HTTP {exc.status_code}"
            if exc.status_code < 500 and exc.status_code not in _TRANSIENT_STATUS:
                logger.warning("judge call to %s refused: %s", endpoint.name, category)
                fatal = exc.status_code in _FATAL_STATUS
                return CallResult(Failure(category, attempt, _ms(started), fatal=fatal), slot)
            retry_after = retry_after_seconds(exc.response.headers)
        except (openai.APIError, ValueError):
            # A body the client could not read as a completion (a gateway's HTML page, broken JSON). Not the model's
            # text: that is parsed later, and kept when it is invalid.
            logger.warning("judge call to %s: unreadable response", endpoint.name)
            return CallResult(Failure("unreadable response", attempt, _ms(started)), slot)
        except BaseException:
            slot.release()
            raise
        else:
            if not hasattr(response, "choices"):  # a 200 with another content type comes back as a plain string
                logger.warning("judge call to %s: unreadable response", endpoint.name)
                return CallResult(Failure("unreadable response", attempt, _ms(started)), slot)
            choice = response.choices[0] if response.choices else None
            usage = response.usage
            # A refusal is the model's answer too: kept as its text, and stored as invalid when parsed.
            text = (choice.message.content or getattr(choice.message, "refusal", None) or "") if choice else ""
            return CallResult(
                Completion(
                    content=text,
                    tokens_in=usage.prompt_tokens if usage else 0,
                    tokens_out=usage.completion_tokens if usage else 0,
                    finish_reason=(choice.finish_reason or "") if choice else "",
                    attempts=attempt,
                    latency_ms=_ms(started),
                ),
                slot,
            )
        if attempt >= rules.max_attempts:
            logger.warning("judge call to %s failed after %d attempts: %s", endpoint.name, attempt, category)
            return CallResult(Failure(category, attempt, _ms(started)), slot)
        slot.release()
        if _sleep(backoff_seconds(attempt, retry_after, rules=rules), should_stop):
            return CallResult(Failure("cancelled", attempt, _ms(started), cancelled=True), None)


def _ms(started: float) -> int:
    return math.ceil((time.monotonic() - started) * 1000)
