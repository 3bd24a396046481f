"""A hung Redis (the process frozen with SIGSTOP, as in a network partition): requests still complete in well under
a second and a half, because the cache and session client time out quickly and a circuit breaker then bypasses
Redis; /healthz says so, and reports Redis latency again once it answers.

The Redis here is a throwaway redis-server this test starts on a free port; the shared one on 6379 is never touched.
"""

from __future__ import annotations

import json
import os
import signal

from annotate.models import Label
from tests.conftest import PASSWORD
from tests.faults.harness import AppServer, Session, app_env, database_url, first_form, timed, wait_for

BOUND_SECONDS = 1.5
BREAKER_SECONDS = 2


def test_a_frozen_redis_costs_requests_one_short_timeout_and_the_breaker_then_bypasses_it(
    labeling_project, annotator, throwaway_redis, collected_static, tmp_path
):
    project = labeling_project
    env = app_env(
        database_url=database_url(),
        redis_url=throwaway_redis.url,
        STATIC_ROOT=str(collected_static),
        VAR_DIR=str(tmp_path / "var"),
        REDIS_BREAKER_SECONDS=str(BREAKER_SECONDS),
    )
    server = AppServer(env, tmp_path / "gunicorn.log")
    server.start()
    assert throwaway_redis.proc is not None
    pid = throwaway_redis.proc.pid
    frozen = False
    try:
        ada = Session(server.url)
        ada.log_in(annotator.username, PASSWORD)
        queue = f"/p/{project.slug}/label/"
        action, body = first_form(ada.get(queue).text)  # type: ignore[misc]
        assert ada.post(action, body, htmx=True).status == 200
        health = json.loads(ada.get("/healthz").text)
        assert health["redis"]["status"] == "ok" and health["redis"]["breaker"] == "closed"

        os.kill(pid, signal.SIGSTOP)  # our own redis-server, by its id
        frozen = True
        timings = []
        for _ in range(6):  # more requests than gunicorn has processes: each process meets the frozen Redis
            page, seconds = timed(lambda: ada.get(queue, timeout=10))
            assert page.status == 200, page.text[:300]
            action, body = first_form(page.text)  # type: ignore[misc]
            saved, more = timed(lambda a=action, b=body: ada.post(a, b, htmx=True, timeout=10))
            assert saved.status == 200, saved.text[:300]
            timings += [seconds, more]
        assert max(timings) < BOUND_SECONDS, timings
        # Once a process's breaker is open it does not wait on Redis at all.
        assert sorted(timings)[len(timings) // 2] < 0.3, timings
        assert Label.objects.filter(annotator=annotator).count() == 7 * 3
        health, seconds = timed(lambda: json.loads(ada.get("/healthz", timeout=10).text))
        assert seconds < BOUND_SECONDS and health["status"] == "ok"
        assert health["redis"]["status"] in {"bypassed", "unreachable"} and health["redis"]["latency_ms"] is None

        os.kill(pid, signal.SIGCONT)
        frozen = False

        seen: dict = {}

        def redis_is_back() -> bool:
            seen.update(json.loads(ada.get("/healthz", timeout=10).text)["redis"])
            return seen["status"] == "ok" and seen["breaker"] == "closed"

        # After the breaker's period a request tries Redis again, and it answers. The breaker is per process: read
        # the latency from the answer that found it closed (the next request may meet a process still bypassing).
        wait_for(redis_is_back, timeout=4 * BREAKER_SECONDS + 10, every=0.3, what="the breaker to close")
        assert seen["latency_ms"] < 100
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        server.stop()
