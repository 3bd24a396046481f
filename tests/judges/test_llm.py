"""The LLM client against the stand-in: parsing, retries and Retry-After, limits, endpoints, keys kept secret."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core import serializers

from judges import llm, prompts
from judges.models import CachedCompletion, JudgeRun, RunChunk, Verdict
from judges.services import judge_runs, run_chunks
from tests.judges.conftest import MODEL, make_item, make_version

ROOT = Path(__file__).resolve().parents[2]


def _request(text: str = "hello", kind: str = "binary", *, endpoint: llm.Endpoint | None = None) -> llm.ChatRequest:
    endpoint = endpoint or llm.endpoint_get("standin")
    messages = [{"role": "system", "content": prompts.BINARY_FORMAT}, {"role": "user", "content": text}]
    return llm.build_request(endpoint=endpoint, kind=kind, model=MODEL, messages=messages, temperature=0, max_tokens=50)


def _call(request: llm.ChatRequest, endpoint: llm.Endpoint | None = None) -> llm.Completion | llm.Failure:
    result = llm.call(endpoint or llm.endpoint_get("standin"), request)
    result.release()
    return result.outcome


# --- Parsing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"reasoning": "Fine.", "verdict": "pass"}', "pass"),
        ('  {"verdict": "FAIL ", "reasoning": "No."}\n', "fail"),
        ('```json\n{"reasoning": "ok", "verdict": "pass"}\n```', "pass"),
        ('Sure! Here is my answer:\n```\n{"reasoning": "r", "verdict": "fail"}\n```\nThanks.', "fail"),
        ('After thinking: {"reasoning": "uses {braces}", "verdict": "pass"} -- done.', "pass"),
        ('{"reasoning": "a"} then {"reasoning": "b", "verdict": "pass"}', "pass"),
    ],
)
def test_answers_are_parsed_bare_fenced_or_inside_prose(text, verdict):
    answer = llm.parse_answer(text, kind="binary")
    assert answer is not None and answer.verdict == verdict


@pytest.mark.parametrize(
    "text",
    [
        "I would rather not say.",
        '{"reasoning": "no verdict here"}',
        '{"reasoning": "r", "verdict": "mostly pass"}',
        '{"reasoning": "r", "verdict": true}',
        '{"verdict": "pass"} or maybe {"verdict": "fail"}',
        '{"reasoning": "r", "verdict": "A"}',
        "",
    ],
)
def test_answers_without_exactly_one_clear_verdict_are_invalid_never_guessed(text):
    assert llm.parse_answer(text, kind="binary") is None


def test_pairwise_answers_take_a_b_or_tie():
    assert llm.parse_answer('{"reasoning": "", "verdict": "b"}', kind="pairwise") == llm.Answer("B", "")
    assert llm.parse_answer('{"reasoning": "", "verdict": "TIE"}', kind="pairwise") == llm.Answer("tie", "")
    assert llm.parse_answer('{"reasoning": "", "verdict": "pass"}', kind="pairwise") is None


# --- Calls, retries and Retry-After ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_call_asks_for_structured_output_and_reports_usage(standin):
    out = _call(_request("<output>fine</output>"))
    assert isinstance(out, llm.Completion)
    assert llm.parse_answer(out.content, kind="binary") is not None
    assert (out.attempts, out.tokens_in > 0, out.tokens_out > 0) == (1, True, True)
    assert standin.stats()["structured"] == 1


@pytest.mark.django_db
def test_a_429_is_retried_after_the_wait_its_retry_after_asks_for(standin):
    standin.configure(script=["429"], retry_after=1.0)
    started = time.monotonic()
    out = _call(_request())
    assert isinstance(out, llm.Completion) and out.attempts == 2
    assert time.monotonic() - started >= 1.0
    assert standin.stats()["outcomes"] == {"429": 1, "ok": 1}


@pytest.mark.django_db
def test_server_errors_and_timeouts_are_retried_with_backoff(standin, settings):
    settings.JUDGE_STANDIN_TIMEOUT_SECONDS = 1
    standin.configure(script=["500", "timeout"], hang_ms=3000)
    out = _call(_request())
    assert isinstance(out, llm.Completion) and out.attempts == 3
    assert standin.stats()["outcomes"] == {"500": 1, "timeout": 1, "ok": 1}


@pytest.mark.django_db
def test_a_call_that_keeps_failing_ends_as_a_short_category_without_the_body(standin, settings, caplog):
    settings.JUDGE_MAX_ATTEMPTS = 3
    standin.configure(script=["500", "500", "500"])
    out = _call(_request())
    assert out == llm.Failure("HTTP 500", attempts=3, latency_ms=out.latency_ms)
    assert "SECRET-TRACE" not in caplog.text


@pytest.mark.django_db
def test_connection_errors_are_retried_then_reported(settings):
    settings.JUDGE_MAX_ATTEMPTS = 2
    settings.JUDGE_BACKOFF_BASE_MS = 1
    closed = llm.Endpoint(name="closed", base_url="http://127.0.0.1:9/v1", max_concurrency=2, timeout=2)
    out = _call(_request(endpoint=closed), closed)
    assert isinstance(out, llm.Failure) and (out.category, out.attempts, out.fatal) == ("connection error", 2, False)


@pytest.mark.django_db
def test_a_refused_key_is_not_retried_and_is_fatal(standin):
    standin.configure(script=["401", "401"])
    out = _call(_request())
    assert isinstance(out, llm.Failure) and (out.category, out.attempts, out.fatal) == ("HTTP 401", 1, True)


def test_retry_after_is_read_as_seconds_milliseconds_or_a_date():
    assert llm.retry_after_seconds({"retry-after": "2"}) == 2.0
    assert llm.retry_after_seconds({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (llm.retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert llm.retry_after_seconds({"retry-after": "soon"}) is None
    assert llm.retry_after_seconds({}) is None


def test_backoff_doubles_with_full_jitter_up_to_the_cap_and_honours_retry_after(settings):
    settings.JUDGE_BACKOFF_BASE_MS = 100
    settings.JUDGE_BACKOFF_MAX_MS = 400
    settings.JUDGE_RETRY_AFTER_MAX_SECONDS = 5
    waits = {attempt: [llm.backoff_seconds(attempt, None) for _ in range(300)] for attempt in (1, 2, 5)}
    assert max(waits[1]) <= 0.1 < max(waits[2]) <= 0.2 < max(waits[5]) <= 0.4
    assert min(waits[5]) < 0.1  # full jitter: any wait from zero up
    assert 3 <= llm.backoff_seconds(1, 3) <= 3.1
    assert llm.backoff_seconds(1, 600) <= 5.1


# --- Endpoints and keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://evil.example.com/v1", "not in JUDGE_ALLOWED_HOSTS"),
        ("http://169.254.169.254/latest", "not in JUDGE_ALLOWED_HOSTS"),
        ("http://api.openai.com/v1", "use https"),
        ("https://user:pw@api.openai.com/v1", "must not carry credentials"),
        ("file:///etc/passwd", "must be an http(s) URL"),
    ],
)
def test_base_urls_outside_the_allowlist_are_refused(url, problem):
    with pytest.raises(llm.EndpointError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        llm.check_base_url(url)


@pytest.mark.slow
def test_bad_endpoint_settings_stop_the_app_from_starting():
    env = {**os.environ, "JUDGE_ENDPOINTS": '[{"name": "x", "base_url": "https://evil.example.com/v1"}]'}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "JUDGE_ENDPOINTS[0] (x): the base_url must be http(s), without credentials, on a host" in result.stderr


@pytest.mark.django_db
def test_the_key_reaches_the_endpoint_and_nothing_else(standin, settings, monkeypatch, caplog, project, judge):
    secret = "sk-test-DO-NOT-LEAK-0123456789"
    monkeypatch.setenv("JUDGE_TEST_KEY", secret)
    settings.JUDGE_ENDPOINTS = [
        {"name": "keyed", "base_url": f"http://127.0.0.1:{standin.port}/v1", "key_env": "JUDGE_TEST_KEY"}
    ]
    version = make_version(judge, endpoint="keyed")
    make_item(project, 1)
    run = judge_runs.judge_run_start(version=version)
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    assert hashlib.sha256(secret.encode()).hexdigest() in standin.stats()["key_fingerprints"]
    assert Verdict.objects.get().status == "ok"
    stored = serializers.serialize(
        "json",
        [*JudgeRun.objects.all(), *Verdict.objects.all(), *CachedCompletion.objects.all(), *RunChunk.objects.all()],
    )
    stored += serializers.serialize("json", [version])
    assert secret not in stored and secret not in caplog.text


@pytest.mark.django_db
def test_redirects_are_not_followed(standin, settings):
    hits: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{standin.port}/v1/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = llm.Endpoint(name="redirecting", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
        out = _call(_request(endpoint=endpoint), endpoint)
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(out, llm.Failure) and out.category == "HTTP 307"
    assert hits == ["/v1/chat/completions"]
    assert standin.stats()["requests"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
def test_a_body_that_is_not_a_completion_is_a_failed_call_not_a_crash(content_type):
    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"<html>Bad gateway, but 200</html>"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = llm.Endpoint(
            name=f"gateway-{content_type}", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1"
        )
        out = _call(_request(endpoint=endpoint), endpoint)
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(out, llm.Failure) and (out.category, out.fatal) == ("unreadable response", False)


# --- Limits ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_concurrency_limit_holds_however_many_threads_call(standin, settings):
    settings.JUDGE_STANDIN_CONCURRENCY = 3
    standin.configure(latency_ms=50)
    endpoint = llm.endpoint_get("standin")
    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(lambda n: _call(_request(f"item {n}"), endpoint), range(24)))
    assert all(isinstance(out, llm.Completion) for out in outs)
    assert standin.stats()["max_in_flight"] == 3


@pytest.mark.django_db
def test_a_slot_stays_taken_until_the_caller_has_stored_the_answer(standin, settings):
    settings.JUDGE_STANDIN_CONCURRENCY = 1
    endpoint = llm.endpoint_get("standin")
    held = llm.call(endpoint, _request("one"))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert llm.limiter().acquire(endpoint, should_stop=stop.is_set) is None
    held.release()
    slot = llm.limiter().acquire(endpoint, should_stop=lambda: True)
    assert slot is not None
    slot.release()


@pytest.mark.django_db
def test_requests_per_minute_are_capped_across_callers(standin, settings):
    settings.JUDGE_STANDIN_RPM = 3
    endpoint = llm.endpoint_get("standin")
    limiter = llm.limiter()
    assert isinstance(limiter, llm.RedisLimiter)  # the tests run with REDIS_URL: the limit is shared by workers
    for _ in range(3):
        slot = limiter.acquire(endpoint, should_stop=lambda: False)
        assert slot is not None
        slot.release()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert limiter.acquire(endpoint, should_stop=stop.is_set) is None


def test_the_process_local_limiter_keeps_the_same_limits():
    limiter = llm.LocalLimiter()
    endpoint = llm.Endpoint(name="local", base_url="http://127.0.0.1:1/v1", max_concurrency=2, rpm=3)
    first, second = (limiter.acquire(endpoint, should_stop=lambda: False) for _ in range(2))
    assert limiter.acquire(endpoint, should_stop=lambda: True) is None  # both slots taken
    assert first is not None and second is not None
    first.release()
    third = limiter.acquire(endpoint, should_stop=lambda: False)
    assert third is not None
    second.release()
    third.release()
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert limiter.acquire(endpoint, should_stop=stop.is_set) is None  # a fourth start within the minute waits
