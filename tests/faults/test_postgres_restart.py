"""PostgreSQL restarted while annotators work: clean 503s with a retry message, then work resumes, same server.

The cluster is a throwaway one (harness.ThrowawayPostgres), never the shared one. The app runs under gunicorn as in
production and is not restarted: CONN_HEALTH_CHECKS makes each request find out that its connection died and open a
new one once the database is back.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from annotate.middleware import RETRY_MESSAGE
from tests.conftest import PASSWORD
from tests.faults.harness import Session, first_form


def _labels(url: str) -> list[tuple[int, int, int]]:
    with psycopg.connect(url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
        rows = conn.execute("SELECT item_id, criterion_id, annotator_id FROM annotate_label").fetchall()
    return [tuple(r) for r in rows]


def test_during_a_postgres_restart_requests_get_a_clean_503_and_work_resumes_without_restarting_the_app(
    app_on_throwaway_postgres, tmp_path
):
    cluster, server, seeded = app_on_throwaway_postgres
    queue = f"/p/{seeded['project']}/label/"
    ada = Session(server.url)
    ada.log_in("ada-annotator", PASSWORD)
    page = ada.get(queue)
    assert page.status == 200
    action, body = first_form(page.text)  # type: ignore[misc]
    assert ada.post(action, body, htmx=True).status == 200
    assert len(_labels(cluster.url)) == 3  # three criteria
    page = ada.get(queue)
    during_action, during_body = first_form(page.text)  # type: ignore[misc]
    gunicorn_pid = server.proc.pid  # type: ignore[union-attr]

    cluster.stop()

    # A page: a small HTML page that says to retry.
    r = ada.get(queue)
    assert r.status == 503 and r.headers["Content-Type"].startswith("text/html")
    assert RETRY_MESSAGE in r.text and "Traceback" not in r.text and "<html" in r.text
    assert r.headers["Retry-After"] == "5"
    # An htmx submit: the labeling page's error partial (label.js shows it and keeps the form filled in).
    r = ada.post(during_action, during_body, htmx=True)
    assert r.status == 503 and r.text.strip() == f"<p>{RETRY_MESSAGE}</p>"
    # The API: JSON.
    api = Session(server.url)
    r = api.get("/api/v1/projects", headers={"Authorization": f"Bearer {seeded['token']}"})
    assert r.status == 503 and json.loads(r.text) == {"detail": RETRY_MESSAGE}
    # A plain (non-htmx) form post, and a page that needs no login, fail the same clean way.
    assert ada.post(during_action, during_body).status == 503
    assert api.get("/healthz").status == 503

    cluster.start()

    # The same server process, no restart: the retried submit (same form key) saves once, then labeling goes on.
    assert server.proc.pid == gunicorn_pid and server.proc.poll() is None  # type: ignore[union-attr]
    r = ada.post(during_action, during_body, htmx=True)
    assert r.status == 200, r.text[:500]
    r = ada.post(during_action, during_body, htmx=True)  # a double retry: still one set of labels
    for _ in range(3):
        page = ada.get(queue)
        assert page.status == 200
        action, body = first_form(page.text)  # type: ignore[misc]
        assert ada.post(action, body, htmx=True).status == 200
    labels = _labels(cluster.url)
    assert len(labels) == len(set(labels)) == 3 * 5
    log = Path(server.log).read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log
