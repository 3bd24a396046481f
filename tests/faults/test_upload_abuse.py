"""Upload abuse: archives, compressed files (a gzip bomb among them), images, executables, NUL bytes, UTF-16 and
invalid UTF-8 are refused with a clear message through every way in (browser upload, command, API), and nothing is
written. Compressed uploads are not accepted at all, so nothing is ever decompressed: a bomb is refused by its first
bytes, in the time it takes to read them.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate import tokens
from annotate.models import ImportJob, Item

pytestmark = pytest.mark.django_db

GOOD = b'{"external_id": "a-1", "input": "Where is my order?", "output": "On its way."}\n'


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("items.jsonl", GOOD * 100)
    return buffer.getvalue()


def _gzip_bomb() -> bytes:
    """200 MB of zeros in about 200 KB: what a decompressing importer would be made to swallow."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as g:
        block = b"\x00" * (1 << 20)
        for _ in range(200):
            g.write(block)
    return buffer.getvalue()


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 + b"\x90" * 512
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
JUNK = {
    "zip": (_zip(), "The file is a ZIP archive"),
    "gzip-bomb": (_gzip_bomb(), "The file is a gzip-compressed file"),
    "png": (PNG, "The file is a PNG image"),
    "elf": (ELF, "The file is an executable (ELF)"),
    "nul": (GOOD[:20] + b"\x00\x00\x00" + GOOD[20:], "binary data (NUL bytes)"),
    "utf16": ("\ufeff".encode("utf-16-le") + GOOD.decode().encode("utf-16-le"), "UTF-16 text; save it as UTF-8"),
}


def _stored_uploads() -> set[str]:
    folder = Path(settings.IMPORT_UPLOAD_DIR)
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.fixture
def before(project):
    return ImportJob.objects.count(), Item.objects.count(), _stored_uploads()


def _nothing_written(before) -> None:
    assert (ImportJob.objects.count(), Item.objects.count(), _stored_uploads()) == before


@pytest.mark.parametrize("name", JUNK)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_binary_junk_is_refused_in_the_browser_upload_and_nothing_is_written(
    client, project, lead, before, name, suffix
):
    content, message = JUNK[name]
    client.force_login(lead)
    started = time.perf_counter()
    response = client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": SimpleUploadedFile(f"items{suffix}", content)},
    )
    assert time.perf_counter() - started < 5  # the bomb is not inflated
    assert response.status_code == 415
    assert message in response.content.decode()
    _nothing_written(before)


@pytest.mark.parametrize("name", JUNK)
def test_binary_junk_is_refused_by_the_import_command_and_nothing_is_written(project, before, name, tmp_path):
    content, message = JUNK[name]
    path = tmp_path / "items.jsonl"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command(
            "import_items", project.slug, str(path), "--no-progress", stdout=io.StringIO(), stderr=io.StringIO()
        )
    _nothing_written(before)


def test_a_gzip_upload_is_refused_without_being_decompressed(client, project, lead, before):
    bomb = JUNK["gzip-bomb"][0]
    assert len(bomb) < 1024 * 1024  # small on the wire
    client.force_login(lead)
    for name in ("items.jsonl.gz", "items.gz", "items.jsonl"):
        response = client.post(
            reverse("import_start", args=[project.slug]), {"kind": "items", "file": SimpleUploadedFile(name, bomb)}
        )
        assert response.status_code == 415 and "uncompressed" in response.content.decode()
    _nothing_written(before)


def test_text_that_is_not_utf8_is_refused_row_by_row_and_nothing_is_imported(client, project, lead, before):
    latin1 = '{"external_id": "e-1", "input": "Où est ma commande ?", "output": "Déjà partie."}\n'.encode("latin-1")
    client.force_login(lead)
    response = client.post(
        reverse("import_start", args=[project.slug]), {"kind": "items", "file": SimpleUploadedFile("x.jsonl", latin1)}
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.status == "invalid"
    assert job.errors[0]["message"].startswith("bad encoding: not UTF-8 (byte 0xf9")
    assert Item.objects.count() == before[1]
    assert _stored_uploads() == before[2]  # the refused upload is deleted


@pytest.mark.parametrize("name", ["zip", "elf", "nul"])
def test_binary_junk_sent_to_the_api_is_refused_with_a_clear_message(client, project, lead, before, name):
    _, secret = tokens.token_create(user=lead, name="abuse")
    content = JUNK[name][0]
    response = client.post(
        f"/api/v1/projects/{project.slug}/items",
        content,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body"}
    _nothing_written(before)


def test_a_nul_character_inside_api_json_is_refused_by_its_row(client, project, lead, before):
    _, secret = tokens.token_create(user=lead, name="abuse")
    body = {"items": [{"external_id": "n-1", "input": "Hello\u0000there", "output": "Hi."}]}
    response = client.post(
        f"/api/v1/projects/{project.slug}/items",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400, response.content
    assert "NUL character" in json.dumps(response.json())
    _nothing_written(before)
