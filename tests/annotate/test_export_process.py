"""Downloads built in a child process (annotate/export_process.py): same bytes as in-process, refusals and failures
said plainly, and no child left behind when the client goes away or the child dies.

These tests commit their data (transaction=True): a child process has its own database connection, and sees only
what is committed.
"""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from annotate import export_process, exports
from annotate.models import Item, Project
from annotate.services.items import item_build
from tests.factories import label

pytestmark = pytest.mark.django_db(transaction=True)


def _items(project, n):
    items = [
        item_build(
            project=project,
            fields={"input": f"Prompt {i} <script>alert(1)</script>", "output": "Out " * 40},
            external_id=f"item-{i:05d}",
            split="train",
        )
        for i in range(n)
    ]
    return Item.objects.bulk_create(items)


def _children():
    return [p for p in multiprocessing.active_children() if p.name.startswith("export-")]


def _gone(timeout=10.0):
    deadline = time.monotonic() + timeout
    while _children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _children()


@pytest.fixture
def labeled(project, annotator, other_annotator):
    # More than the pipe between the processes holds (about 1 MB): the child is still writing after the first chunk.
    first, second, *_rest = _items(project, 2000)
    for user in (annotator, other_annotator):
        label(first, user, "acceptable", "pass", note=f"note by {user.username}")
    label(second, annotator, "acceptable", "fail")
    return Project.objects.select_related("current_rubric").get(pk=project.pk)


@pytest.mark.slow
@pytest.mark.postgres(reason="downloads are built in a child process on PostgreSQL only (export_process.enabled)")
def test_a_download_is_built_in_a_child_and_has_the_in_process_bytes(client, lead, labeled, settings):
    client.force_login(lead)
    url = f"/p/{labeled.slug}/export/download/?format=jsonl&individual=on"
    assert export_process.enabled()
    response = client.get(url)
    assert response.status_code == 200
    chunks = iter(response.streaming_content)
    first = next(chunks)
    assert [p.name for p in _children()] == [f"export-{labeled.slug}"]  # the bytes come from a child
    body = first + b"".join(chunks)
    manifest = json.loads(response[exports.MANIFEST_HEADER])

    settings.EXPORT_IN_CHILD = False
    assert not export_process.enabled()
    inline = client.get(url)
    assert b"".join(inline.streaming_content) == body
    assert json.loads(inline[exports.MANIFEST_HEADER])["counts"] == manifest["counts"]
    assert inline["Content-Disposition"] == response["Content-Disposition"]
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert len(rows) == manifest["counts"]["rows"] == 2000
    assert rows[0]["labels"]["acceptable"]["individual"][0]["note"].startswith("note by ")
    assert _gone()


def test_a_refusal_from_the_child_is_the_same_plain_400(client, lead, labeled):
    client.force_login(lead)
    response = client.get(f"/p/{labeled.slug}/export/download/?format=preference")
    assert response.status_code == 400
    assert b"Preference pairs need a pairwise project" in response.content
    assert _gone()


def test_the_api_download_comes_from_a_child_too(client, lead, labeled):
    from annotate import tokens

    _token, secret = tokens.token_create(user=lead, name="pipeline")
    response = client.get(
        f"/api/v1/projects/{labeled.slug}/export?format=jsonl", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body.splitlines()) == json.loads(response[exports.MANIFEST_HEADER])["counts"]["rows"] == 2000
    assert _gone()


@pytest.mark.postgres(reason="downloads are built in a child process on PostgreSQL only (export_process.enabled)")
def test_a_client_that_goes_away_stops_the_child(project, annotator):
    _items(project, 3000)  # more than the pipe holds: the child is still writing when the client leaves
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    _prepared, stream = export_process.stream(project=project, options=exports.ExportOptions())
    next(stream)
    assert len(_children()) == 1
    stream.close()  # what a streaming response does when the client disconnects
    assert _gone()


@pytest.mark.postgres(reason="downloads are built in a child process on PostgreSQL only (export_process.enabled)")
def test_a_child_that_dies_mid_stream_cuts_the_download_short(project, annotator):
    _items(project, 3000)
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    prepared, stream = export_process.stream(project=project, options=exports.ExportOptions())
    assert prepared.manifest["counts"]["rows"] == 3000
    received = next(stream)
    (child,) = _children()
    child.kill()
    chunks = []
    with pytest.raises(export_process.ExportFailed, match="ended early"):
        chunks.extend(stream)
    received += b"".join(chunks)
    assert received.count(b"\n") < 3000  # what had arrived, and no more: the response is not made to look whole
    assert _gone()


def test_inside_a_transaction_the_export_stays_in_process(project, annotator):
    from django.db import transaction

    _items(project, 3)
    with transaction.atomic():
        assert not export_process.enabled()  # a child could not see this transaction's rows
        project = Project.objects.select_related("current_rubric").get(pk=project.pk)
        _prepared, stream = export_process.stream(project=project, options=exports.ExportOptions())
        assert not _children()
        assert len(b"".join(stream).splitlines()) == 3


def test_bad_or_foreign_requests_start_no_child(client, lead, labeled, outsider, annotator):
    """Access and the options are checked in the web process, before any child is forked."""
    client.force_login(lead)
    for query in ("format=exe", "min_labels=-1", "since=yesterday", "format=jsonl&criterion=<script>"):
        response = client.get(f"/p/{labeled.slug}/export/download/?{query}")
        assert response.status_code == 400, query
        assert b"<script>" not in response.content
    for user in (outsider, annotator):  # not a member; a member but not a lead
        client.force_login(user)
        assert client.get(f"/p/{labeled.slug}/export/download/?format=jsonl").status_code == 404
    assert not _children()


@pytest.mark.postgres(reason="downloads are built in a child process on PostgreSQL only (export_process.enabled)")
def test_an_empty_export_from_a_child_says_so_and_leaves_no_child(client, lead, labeled):
    client.force_login(lead)
    assert export_process.enabled()
    response = client.get(f"/p/{labeled.slug}/export/download/?format=csv&bom=on&split=test")
    assert response.status_code == 200 and not response.streaming
    assert "No item matches these options: nothing to download." in response.text
    assert _gone()
