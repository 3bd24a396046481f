"""Redis unavailable: annotators keep labeling (labels go to PostgreSQL) and queued work resumes when Redis returns.

A throwaway redis-server serves as cache, session cache and broker of an app under gunicorn, a Celery worker and
its beat; the test kills it (SIGKILL) mid-session. The shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.core.files.uploadedfile import SimpleUploadedFile

from annotate import tokens
from annotate.imports.jobs import import_job_create, import_job_preview
from annotate.middleware import CACHE_RETRY_MESSAGE
from annotate.models import ImportJob, Item, Label
from judges.models import JudgeRun, Verdict
from judges.services import judge_versions
from tests.conftest import PASSWORD
from tests.faults.harness import (
    ROOT,
    AppServer,
    Session,
    app_env,
    database_url,
    first_form,
    start_worker,
    stop_process,
    timed,
    wait_for,
)
from tests.judges.conftest import make_version

N_IMPORTED = 3000


def test_with_redis_down_annotators_keep_labeling_and_queued_work_resumes_when_it_returns(
    labeling_project, lead, annotator, throwaway_redis, collected_static, standin, tmp_path, settings
):
    project = labeling_project
    # A checked upload, waiting for the lead's confirmation; the import itself goes to the worker (size > 0).
    rows = "\n".join(
        json.dumps({"external_id": f"new-{n}", "input": f"New {n}?", "output": "Yes."}) for n in range(N_IMPORTED)
    )
    job = import_job_create(
        project=project, actor=lead, kind="items", upload=SimpleUploadedFile("more.jsonl", rows.encode())
    )
    import_job_preview(job_id=job.pk)
    version = make_version(judge_versions.judge_create(project=project, criterion_key="acceptable"))
    _, secret = tokens.token_create(user=lead, name="faults")
    env = app_env(
        database_url=database_url(),
        redis_url=throwaway_redis.url,
        STATIC_ROOT=str(collected_static),
        VAR_DIR=str(tmp_path / "var"),
        IMPORT_UPLOAD_DIR=str(settings.IMPORT_UPLOAD_DIR),
        IMPORT_SYNC_MAX_BYTES="0",
        IMPORT_RECONCILE_SECONDS="2",
        JUDGE_RECONCILE_SECONDS="5",
        JUDGE_STANDIN_PORT=str(standin.port),
        JUDGE_PRICES=json.dumps({"standin-judge-2025-01-01": {"input": 1, "output": 4}}),
    )
    server = AppServer(env, tmp_path / "gunicorn.log")
    server.start()
    worker = None
    try:
        ada = Session(server.url)
        ada.log_in(annotator.username, PASSWORD)
        lena = Session(server.url)
        lena.log_in(lead.username, PASSWORD)
        queue = f"/p/{project.slug}/label/"
        action, body = first_form(ada.get(queue).text)  # type: ignore[misc]
        assert ada.post(action, body, htmx=True).status == 200

        throwaway_redis.kill()

        # Labeling goes on: the queue page, a submit, the next item, the side panel, the heartbeat.
        slowest = 0.0
        for _ in range(4):
            page, seconds = timed(lambda: ada.get(queue))
            assert page.status == 200, page.text[:300]
            action, body = first_form(page.text)  # type: ignore[misc]
            saved, more = timed(lambda a=action, b=body: ada.post(a, b, htmx=True))
            assert saved.status == 200, saved.text[:300]
            slowest = max(slowest, seconds, more)
        assert ada.get(queue + "progress/", htmx=True).status == 200
        assert ada.post(queue + "heartbeat/", {}).status in {200, 204}
        assert Label.objects.filter(annotator=annotator).count() == 5 * 3
        # A new login works too (sessions are written through to the database).
        omar = Session(server.url)
        omar.log_in(lead.username, PASSWORD)
        # Logging out is the one thing that waits for Redis (a session left in its cache could come back): a 503.
        r = omar.post("/logout/", {})
        assert r.status == 503 and CACHE_RETRY_MESSAGE in r.text
        # A lead's "Compute now" only sends a task: refused with the retry message, nothing changed.
        r = lena.post(f"/p/{project.slug}/agreement/compute/", {})
        assert r.status == 503 and CACHE_RETRY_MESSAGE in r.text
        # The API answers (its rate limit cannot count without Redis and lets the call through).
        r = lena.get("/api/v1/projects", headers={"Authorization": f"Bearer {secret}"})
        assert r.status == 200 and json.loads(r.text)[0]["slug"] == project.slug
        # Work that needs the queue is recorded, not lost and not a 500: the import is confirmed...
        r = lena.post(f"/p/{project.slug}/import/{job.pk}/confirm/", {})
        assert r.status == 200 and r.url.endswith(f"/import/{job.pk}/")
        assert ImportJob.objects.get(pk=job.pk).status == "queued"
        # ... and a judge run is started.
        r = lena.post(
            f"/p/{project.slug}/judges/versions/{version.pk}/run/", {"scope": "all", "confirm_test": "on"}
        )  # every item, the held-out test split included (confirmed: "All items" leaves it out otherwise)
        assert r.status == 200, r.text[:300]
        run = JudgeRun.objects.get(version=version)
        assert run.status == "queued"
        assert Item.objects.filter(project=project).count() == 20

        throwaway_redis.start()  # empty: whatever was queued in the old one is gone
        worker = start_worker({**env, "LOG_LEVEL": "INFO"}, tmp_path / "worker.log", f"faults-redis-{os.getpid()}")
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotate", "beat", f"--schedule={tmp_path / 'beat-schedule'}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            r = omar.post("/logout/", {})
            assert r.status == 200 and r.url.endswith("/login/")
            wait_for(
                lambda: ImportJob.objects.get(pk=job.pk).status == "done",
                timeout=120,
                every=0.5,
                what="the import confirmed during the outage",
            )
            wait_for(
                lambda: JudgeRun.objects.get(pk=run.pk).status == "done",
                timeout=120,
                every=0.5,
                what="the judge run started during the outage",
            )
        finally:
            stop_process(beat)
    finally:
        if worker is not None:
            stop_process(worker)
        server.stop()
    assert Item.objects.filter(project=project).count() == 20 + N_IMPORTED
    # The run covers the items there were when it started, one verdict each.
    verdicts = list(Verdict.objects.filter(run=run).values_list("item_id", flat=True))
    assert len(verdicts) == len(set(verdicts)) == JudgeRun.objects.get(pk=run.pk).n_items == 20
    labels = list(Label.objects.filter(annotator=annotator).values_list("item_id", "criterion_id"))
    assert len(labels) == len(set(labels)) == 15
    print(f"slowest labeling request while Redis was down: {slowest:.2f} s")
    assert slowest < 5
