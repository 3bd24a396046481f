"""The export page's and API's options from issue 16: filters that match nothing, the CSV byte order mark, the
former format id, and the formats loaded from the real demo data by their tools' loaders."""

from __future__ import annotations

import json

import pytest

from annotate import exports, tokens
from annotate.demo import demo_load
from annotate.models import Project
from tests.annotate.test_export_loaders import _export, _load_json
from tests.factories import label

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, annotator):
    from annotate.services.items import item_build

    item = item_build(
        project=project, fields={"input": "Où ?", "output": "Là, café"}, external_id="only", split="train"
    )
    item.save()
    label(item, annotator, "acceptable", "pass")
    return project


def test_a_filter_that_matches_nothing_says_so_instead_of_downloading_an_empty_file(client, labeled, lead):
    client.force_login(lead)
    response = client.get("/p/support-bot/export/download/", {"format": "jsonl", "split": "test"})
    assert response.status_code == 200 and not response.streaming
    assert "No item matches these options: nothing to download." in response.text
    response = client.get("/p/support-bot/export/download/", {"format": "csv", "min_labels": 2})
    assert not response.streaming and "(1 left out by the filters)" in response.text
    response = client.get("/p/support-bot/export/download/", {"format": "inspect-ai", "criterion": "factually_correct"})
    assert not response.streaming and "1 without a reference label on the criterion" in response.text
    # A filter that matches: the download.
    response = client.get("/p/support-bot/export/download/", {"format": "jsonl", "split": "train"})
    assert response.streaming and b"only" in b"".join(response.streaming_content)


def test_the_api_gives_an_empty_export_with_its_count(client, labeled, lead):
    _row, raw = tokens.token_create(user=lead, name="export")
    auth = {"Authorization": f"Bearer {raw}"}
    response = client.get("/api/v1/projects/support-bot/export", {"format": "jsonl", "split": "test"}, headers=auth)
    assert response.status_code == 200 and b"".join(response.streaming_content) == b""
    assert json.loads(response[exports.MANIFEST_HEADER])["counts"]["rows"] == 0


def test_csv_offers_a_utf8_byte_order_mark_for_spreadsheets(client, labeled, lead):
    client.force_login(lead)
    page = client.get("/p/support-bot/export/").text
    assert 'name="bom"' in page and "byte order mark" in page
    plain = b"".join(client.get("/p/support-bot/export/download/", {"format": "csv"}).streaming_content)
    marked = b"".join(client.get("/p/support-bot/export/download/", {"format": "csv", "bom": "on"}).streaming_content)
    assert not plain.startswith(b"\xef\xbb\xbf") and marked == b"\xef\xbb\xbf" + plain
    assert "Là, café" in marked.decode("utf-8-sig")
    response = client.get("/p/support-bot/export/download/", {"format": "jsonl", "bom": "on"})
    assert response.status_code == 400 and "for CSV files only" in response.text
    _row, raw = tokens.token_create(user=lead, name="export")
    auth = {"Authorization": f"Bearer {raw}"}
    api = client.get("/api/v1/projects/support-bot/export", {"format": "csv", "bom": "true"}, headers=auth)
    assert b"".join(api.streaming_content) == marked
    refused = client.get("/api/v1/projects/support-bot/export", {"format": "jsonl", "bom": "true"}, headers=auth)
    assert refused.status_code == 400 and "CSV" in refused.json()["detail"]


def test_the_former_openai_evals_id_still_downloads_by_page_and_api(client, labeled, lead):
    client.force_login(lead)
    response = client.get("/p/support-bot/export/download/", {"format": "openai-evals"})
    assert response.streaming and "openai-evals-api.jsonl" in response["Content-Disposition"]
    row = json.loads(b"".join(response.streaming_content))
    assert row["item"]["output"] == "Là, café" and row["item"]["reference"] == "pass"
    _row, raw = tokens.token_create(user=lead, name="export")
    api = client.get(
        "/api/v1/projects/support-bot/export", {"format": "openai-evals"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert json.loads(b"".join(api.streaming_content)) == row
    assert json.loads(api[exports.MANIFEST_HEADER])["format"] == "openai-evals-api"


@pytest.mark.slow
def test_the_real_demo_data_loads_in_inspect_and_hugging_face_datasets(settings, tmp_path, monkeypatch):
    """The tulu human-eval demo (real human labels): every format of each project, loaded by its tool."""
    from inspect_ai.dataset import json_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    settings.VAR_DIR = tmp_path
    demo_load()
    for slug in ("tulu-acceptability", "tulu-preference"):
        project = Project.objects.get(slug=slug)
        manifest = _export(project, tmp_path / f"{slug}-inspect.jsonl", fmt="inspect-ai")
        samples = list(json_dataset(str(tmp_path / f"{slug}-inspect.jsonl")))
        assert len(samples) == manifest["counts"]["rows"] > 0
        assert all(s.target and s.input for s in samples)
        manifest = _export(project, tmp_path / f"{slug}-hf.jsonl", fmt="hf-datasets")
        dataset = _load_json(tmp_path / f"{slug}-hf.jsonl", tmp_path / slug)
        assert dataset.num_rows == manifest["counts"]["rows"] == project.items.count()
