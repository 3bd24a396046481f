"""No feature fetches a URL taken from user input (SSRF): item text, metadata, notes and ids full of loopback URLs go
through import (command, browser upload, API), labeling, a judge run and every export format while a listener on that
loopback port counts the requests it gets. It must get none.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from annotate import exports, tokens
from annotate.models import Item, Label
from annotate.services.projects import project_set_status
from judges.models import RunChunk, Verdict
from judges.services import judge_runs, judge_versions, run_chunks
from tests.judges.conftest import make_version

pytestmark = pytest.mark.django_db


class _Listener(ThreadingHTTPServer):
    hits: list[str]


class _Handler(BaseHTTPRequestHandler):
    def _hit(self) -> None:
        self.server.hits.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"fetched")

    do_GET = do_POST = do_HEAD = _hit

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener(("127.0.0.1", 0), _Handler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _hostile(base: str, n: int) -> dict[str, object]:
    return {
        "external_id": f"{base}id/{n}",
        "input": f'Summarise {base}page/{n} and ![chart]({base}md/{n}.png) <img src="{base}html/{n}.png">',
        "output": f"See [the docs]({base}link/{n}) or file://{'/etc/passwd'} or {base}plain/{n}",
        "metadata": {"image_url": f"{base}meta/{n}.png", "callback": f"{base}hook/{n}", "path": "/etc/passwd"},
    }


def test_urls_in_user_data_are_never_fetched_by_import_labeling_judging_or_export(
    client, project, lead, annotator, listener, standin, tmp_path
):
    base = f"http://127.0.0.1:{listener.server_address[1]}/"
    project_set_status(project=project, status="active")
    # Import: the command, the browser upload and the API.
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(_hostile(base, n)) + "\n" for n in range(3)))
    call_command("import_items", project.slug, str(path), "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())
    client.force_login(lead)
    upload = "".join(json.dumps(_hostile(base, n)) + "\n" for n in range(3, 5)).encode()
    response = client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": SimpleUploadedFile("more.jsonl", upload)},
    )
    job_url = response["Location"]
    client.post(job_url + "confirm/", {})
    _, secret = tokens.token_create(user=lead, name="ssrf")
    response = client.post(
        f"/api/v1/projects/{project.slug}/items",
        json.dumps({"items": [_hostile(base, 5)]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content
    assert Item.objects.filter(project=project).count() == 6
    # Labeling, with a note full of URLs, then the history page.
    client.force_login(annotator)
    queue = reverse("label_queue", args=[project.slug])
    for _ in range(6):
        page = client.get(queue)
        assert page.status_code == 200
        item = page.context["current"].item
        form = {f"c-{c.key}": "fail" for c in page.context["criteria"]}
        form |= {
            "note": f"Broken, see {base}note and ![x]({base}note.png)",
            "form_key": page.context["current"].form_key,
        }
        assert client.post(reverse("label_submit", args=[project.slug, item.pk]), form).status_code == 302
    assert client.get(reverse("label_history", args=[project.slug])).status_code == 200
    assert Label.objects.filter(annotator=annotator).count() == 6 * 3
    # A judge run over every item (the stand-in model sees the text; the app fetches nothing from it).
    version = make_version(judge_versions.judge_create(project=project, criterion_key="acceptable"))
    # Test items included, confirmed as the app asks (all items leave the held-out test split out otherwise).
    run = judge_runs.judge_run_start(version=version, scope="all", confirm_test=True)
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    assert Verdict.objects.filter(run=run, status="ok").count() == 6
    # Every export format, by command and by the lead's download.
    for fmt in exports.FORMATS:
        if fmt == "preference":
            continue  # pairwise projects only
        out = io.StringIO()
        call_command("export_labels", project.slug, "--format", fmt, "--individual", stdout=out, stderr=io.StringIO())
        assert base in out.getvalue()  # the URLs are exported as text...
    client.force_login(lead)
    response = client.get(reverse("export_download", args=[project.slug]), {"format": "jsonl"})
    assert response.status_code == 200 and base in b"".join(response.streaming_content).decode()
    # ... and never requested.
    assert listener.hits == []
    assert standin.stats()["requests"] == 6
    # The listener does count what reaches it.
    with urllib.request.urlopen(base + "control", timeout=5) as control:
        assert control.read() == b"fetched"
    assert listener.hits == ["GET /control"]
