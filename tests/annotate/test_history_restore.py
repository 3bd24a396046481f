"""The Back button after htmx swapped a fragment in: htmx 2 misses its history cache and asks for the URL again with
`HX-Request` and `HX-History-Restore-Request`, then shows the answer as the whole page. Every view that answers
htmx with a fragment must answer that request with the page (annotate.http.wants_partial)."""

from __future__ import annotations

import re

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django_htmx.middleware import HtmxMiddleware

from annotate.http import wants_partial
from annotate.middleware import RETRY_MESSAGE, unavailable_response
from annotate.models import ImportJob
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
RESTORE = {"HX-Request": "true", "HX-History-Restore-Request": "true"}


@pytest.mark.parametrize(
    ("headers", "partial"),
    [({}, False), (HX, True), (RESTORE, False), ({"HX-History-Restore-Request": "true"}, False)],
)
def test_only_a_plain_htmx_request_wants_a_fragment(headers, partial):
    request = RequestFactory().get("/", headers=headers)
    assert wants_partial(request) is partial  # before HtmxMiddleware ran (the outage middleware sits above it)
    HtmxMiddleware(lambda r: None)(request)  # type: ignore[arg-type]
    assert wants_partial(request) is partial


def _title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match, html[:200]
    return match.group(1)


PAGES = [
    "import_start",
    "import_job",  # the URL an htmx upload pushes into the history
    "token_list",
    "agreement_page",
    "rubric_timeline",
    "project_criteria",
    "project_members",
]


def _url(name: str, project, lead) -> str:
    if name == "token_list":
        return reverse(name)
    if name == "import_job":
        job = ImportJob.objects.create(
            project=project, kind="items", filename="big.jsonl", file_format="jsonl", size_bytes=10, created_by=lead
        )
        return reverse(name, args=[project.slug, job.pk])
    return reverse(name, args=[project.slug])


@pytest.mark.parametrize("name", PAGES)
def test_a_history_restore_gets_the_whole_page_where_htmx_alone_gets_the_fragment(client, project, lead, name):
    ItemFactory(project=project)
    client.force_login(lead)
    url = _url(name, project, lead)
    page = client.get(url)
    assert page.status_code == 200 and "<html" in page.content.decode()
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    restored = client.get(url, headers=RESTORE)
    body = restored.content.decode()
    assert restored.status_code == 200 and "<html" in body and "</html>" in body
    assert _title(body) == _title(page.content.decode())
    for response in (page, fragment, restored):  # no cache may answer one of these requests with another's answer
        assert {"HX-Request", "HX-History-Restore-Request"} <= {v.strip() for v in response["Vary"].split(",")}


def test_an_outage_answers_a_history_restore_with_the_retry_page_not_the_labeling_fragment():
    fragment = unavailable_response(RequestFactory().get("/p/x/label/", headers=HX))
    assert fragment.status_code == 503 and fragment.content.decode().strip() == f"<p>{RETRY_MESSAGE}</p>"
    page = unavailable_response(RequestFactory().get("/p/x/label/", headers=RESTORE))
    assert page.status_code == 503 and "<html" in page.content.decode() and RETRY_MESSAGE in page.content.decode()
