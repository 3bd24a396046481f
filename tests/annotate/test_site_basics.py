"""What a browser or a monitor asks of any site (issue 16): HEAD /, a favicon, and API docs that link back."""

from __future__ import annotations

import struct

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_head_of_the_home_page_answers_like_get(client, lead):
    assert client.head("/").status_code == 302  # to the login page, as GET does
    client.force_login(lead)
    get, head = client.get("/"), client.head("/")
    assert get.status_code == head.status_code == 200
    assert head["Content-Type"] == get["Content-Type"]


def test_favicon_ico_answers_with_an_icon_and_pages_link_one(client, lead):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    body = response.content
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind, count) == (0, 1, 1)  # an ICO directory with one image...
    width, height, *_rest, size, offset = struct.unpack("<BBBBHHII", body[6:22])
    assert (width, height) == (32, 32) and body[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"  # ... a 32 px PNG
    assert offset + size == len(body)
    assert client.head("/favicon.ico").status_code == 200
    page = client.get(reverse("login")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in page


def test_the_api_docs_link_back_to_the_app(client):
    html = client.get("/api/v1/docs").content.decode()
    assert '<a href="/">← Back to annotate</a>' in html and 'href="/settings/tokens/"' in html
    assert "/static/favicon.svg" in html and "/static/css/docs.css" in html
