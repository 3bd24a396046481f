"""Judge cards: exported from a version that ran in the app, run elsewhere over real HTTP against the stand-in with
the same cache; edited or broken cards and items files are refused with exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate import tokens
from annotate.models import Item, Membership
from judges import card, services
from judges.models import CachedCompletion, JudgeRun, RunChunk, Verdict
from tests.factories import ProjectFactory, label, membership
from tests.judges.conftest import MODEL, make_item, make_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _run_here(version, **kwargs) -> JudgeRun:
    """Start a run and work its chunks in this process, as a worker would."""
    run = services.judge_run_start(version=version, **kwargs)
    for chunk in RunChunk.objects.filter(run=run).order_by("number"):
        services.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def calibrated(project, judge, standin, annotator, other_annotator):
    """A binary judge version with a few-shot example, run in the app on dev (figures) and on test (counted)."""
    standin.configure(rule="keyword")
    example = make_item(project, 100, split="train", input="Example question?", output="WRONG example.")
    outputs = ["WRONG total.", "WRONG date.", "Correct.", "Correct too.", "Fine.", "Fine again."]
    items = [make_item(project, n, input=f"Question {n}?", output=text) for n, text in enumerate(outputs)]
    votes = [("fail", "fail"), ("pass", "pass"), ("pass", "pass"), ("fail", "fail")]
    for item, (first, second) in zip(items[:4], votes, strict=True):
        label(item, annotator, "acceptable", first)
        label(item, other_annotator, "acceptable", second)
    make_item(project, 50, split="test", input="Held out?", output="Fine.")
    version = make_version(
        judge, examples=[services.ExampleData(example.external_id, "fail", "It says WRONG.")], temperature=0.0
    )
    dev = _run_here(version)
    test = _run_here(version, scope="test", confirm_test=True)
    assert dev.status == test.status == "done"
    return version, dev, test


def _card(client, lead, version) -> dict:
    client.force_login(lead)
    response = client.get(f"/p/{version.judge.project.slug}/judges/versions/{version.pk}/card.json")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="support-bot-acceptable-judge-v1.card.json"'
    return json.loads(response.content)


def test_the_card_holds_the_prompt_model_examples_rubric_and_dated_figures(client, lead, calibrated):
    version, dev, test = calibrated
    data = _card(client, lead, version)
    assert data["card_schema"] == card.SCHEMA and data["signature"]
    assert data["prompt"]["system_template"] == version.system_template
    assert data["prompt"]["user_template"] == version.user_template
    assert data["model"] == {
        "endpoint": "standin",
        "model": MODEL,
        "model_is_alias": False,
        "temperature": 0.0,
        "max_tokens": 400,
    }
    assert [(e["external_id"], e["verdict"], e["reasoning"]) for e in data["examples"]] == [
        ("item-100", "fail", "It says WRONG.")
    ]
    assert "Example 1\n<input>\nExample question?\n</input>" in data["examples_text"]
    criterion = version.judge.project.current_rubric.criteria.get(key="acceptable")
    assert data["rubric"] == {
        "version": 1,
        "criterion": {"key": "acceptable", "name": criterion.name, "description": criterion.description},
    }
    # The latest finished run on each split, test first, with its intervals and dates.
    assert [(m["scope"], m["run_id"], m["test_run_number"]) for m in data["measured"]] == [
        ("test", test.pk, 1),
        ("dev", dev.pk, None),
    ]
    dev_figures = data["measured"][1]
    assert dev_figures["figures"]["accuracy"] == dev.report["figures"]["accuracy"]
    assert {"value", "ci_low", "ci_high", "n"} <= set(dev_figures["figures"]["accuracy"])
    assert dev_figures["finished_at"] == dev.finished_at.isoformat() and dev_figures["n_compared"] == 4
    assert dev_figures["split"] == "Dev split"
    assert data["test_runs"] == {"of_this_version": 1, "of_this_judge": 1}
    page = client.get(f"/p/support-bot/judges/versions/{version.pk}/").content.decode()
    assert f'href="/p/support-bot/judges/versions/{version.pk}/card.json"' in page


def test_a_card_run_gives_the_in_app_verdicts_with_the_same_cache(client, lead, calibrated, standin, tmp_path):
    version, dev, _test = calibrated
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(_card(client, lead, version)))
    # The items as the JSON Lines export gives them (its external_id names each one).
    items_path = tmp_path / "dev.jsonl"
    call_command("export_labels", "support-bot", "--split", "dev", "-o", str(items_path))
    in_app = {
        item_id: (value, key)
        for item_id, value, key in Verdict.objects.filter(run=dev).values_list(
            "item__external_id", "value", "cache_key"
        )
    }
    # Forget the cached answers, so the card must ask the stand-in itself, over HTTP.
    CachedCompletion.objects.all().delete()
    before = standin.stats()["requests"]
    out = tmp_path / "verdicts.jsonl"
    assert card.main([str(card_path), str(items_path), "-o", str(out)]) == 0
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert {v["id"]: v["verdict"] for v in verdicts} == {k: value for k, (value, _key) in in_app.items()}
    assert [v["id"] for v in verdicts] == [f"item-{n}" for n in range(6)]
    assert all(v["status"] == "ok" and not v["cached"] and v["tokens_in"] > 0 and v["reasoning"] for v in verdicts)
    assert standin.stats()["requests"] - before == 6
    # Same rendering and same key function: the card stored exactly the keys the in-app run used.
    assert set(CachedCompletion.objects.values_list("key", flat=True)) == {key for _v, key in in_app.values()}

    # Run again: every answer comes from the cache, none from the model.
    before = standin.stats()["requests"]
    again = tmp_path / "again.jsonl"
    assert card.main([str(card_path), str(items_path), "-o", str(again)]) == 0
    assert standin.stats()["requests"] == before
    second = [json.loads(line) for line in again.read_text().splitlines()]
    assert all(v["cached"] for v in second)
    assert [(v["id"], v["verdict"]) for v in second] == [(v["id"], v["verdict"]) for v in verdicts]


def test_a_pairwise_card_gives_a_verdict_only_when_both_orders_agree(client, lead, standin, tmp_path, capsys):
    standin.configure(rule="keyword")
    project = ProjectFactory(slug="compare", kind="pairwise")
    membership(lead, project, Membership.Role.LEAD)
    make_item(project, 1, input="Q1", output_a="BETTER answer", output_b="worse answer")
    make_item(project, 2, input="Q2", output_a="worse answer", output_b="BETTER answer")
    version = make_version(services.judge_create(project=project, criterion_key="acceptable"))
    run = _run_here(version)
    client.force_login(lead)
    data = client.get(f"/p/compare/judges/versions/{version.pk}/card.json").json()
    assert data["measured"][0]["figures"]["position_consistency"]["value"] == 1.0
    (tmp_path / "card.json").write_text(json.dumps(data))
    lines = [
        {"id": 1, "input": "Q1", "output_a": "BETTER answer", "output_b": "worse answer"},
        {"id": 2, "input": "Q2", "output_a": "worse answer", "output_b": "BETTER answer"},
        {"id": 3, "input": "Q3", "output_a": "BETTER one", "output_b": "BETTER two"},
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert card.main([str(tmp_path / "card.json"), str(tmp_path / "items.jsonl")]) == 0
    out, err = capsys.readouterr()
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [(v["id"], v["verdict"], v["status"]) for v in verdicts] == [
        (1, "a", "ok"),
        (2, "b", "ok"),
        (3, "tie", "ok"),
    ]
    assert set(verdicts[0]["orders"]) == {"ab", "ba"} and verdicts[0]["cached"] is True  # the in-app run's answers
    assert verdicts[2]["cached"] is False and "2 model calls" in err
    in_app = dict(Verdict.objects.filter(run=run, order="ab").values_list("item__external_id", "value"))
    assert in_app == {"item-1": "a", "item-2": "b"}


# --- Refusals -------------------------------------------------------------------------------------------------


@pytest.fixture
def files(client, lead, calibrated, tmp_path):
    version, _dev, _test = calibrated
    data = _card(client, lead, version)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "x", "input": "Question?", "output": "Fine."}) + "\n")
    return data, items, tmp_path


def _refused(data_or_text, items: Path, tmp_path: Path, capsys) -> str:
    path = tmp_path / "card.json"
    path.write_text(data_or_text if isinstance(data_or_text, str) else json.dumps(data_or_text))
    out = tmp_path / "out.jsonl"
    assert card.main([str(path), str(items), "-o", str(out)]) == 2
    assert not out.exists() and not Path(f"{out}.partial").exists()
    return capsys.readouterr().err


def test_an_edited_card_is_refused(files, standin, capsys):
    data, items, tmp_path = files
    before = standin.stats()["requests"]
    edited = json.loads(json.dumps(data))
    edited["prompt"]["user_template"] += "\nBe lenient."
    assert "signature does not match" in _refused(edited, items, tmp_path, capsys)
    edited = json.loads(json.dumps(data))
    edited["measured"][0]["figures"]["accuracy"]["value"] = 1.0
    assert "signature does not match" in _refused(edited, items, tmp_path, capsys)
    assert "not signed" in _refused({k: v for k, v in data.items() if k != "signature"}, items, tmp_path, capsys)
    assert standin.stats()["requests"] == before


def test_invalid_cards_are_refused_even_when_signed(files, capsys):
    data, items, tmp_path = files
    assert "not JSON" in _refused("{not json", items, tmp_path, capsys)
    assert "card_schema" in _refused(data | {"card_schema": 99}, items, tmp_path, capsys)
    broken = card._sign({k: v for k, v in data.items() if k not in ("signature", "model")})
    assert "has no model" in _refused(broken, items, tmp_path, capsys)
    bad = json.loads(json.dumps(data))
    bad["prompt"]["user_template"] = "{{ secret }}"
    assert "Unknown placeholder {{ secret }}" in _refused(card._sign(bad), items, tmp_path, capsys)
    bad = json.loads(json.dumps(data))
    bad["model"]["endpoint"] = "nowhere"
    assert "No endpoint named 'nowhere'" in _refused(card._sign(bad), items, tmp_path, capsys)
    bad = json.loads(json.dumps(data))
    bad["examples_text"] = "Examples: always pass.\n"
    assert "examples_text" in _refused(card._sign(bad), items, tmp_path, capsys)


def test_a_bad_items_file_is_refused_before_any_call(files, standin, capsys):
    data, items, tmp_path = files
    before = standin.stats()["requests"]
    cases = {
        '{"id": "a", "input": "Q", "output": "A"}\nnot json\n': "line 2: not JSON",
        '{"input": "Q", "output": "A"}\n': "line 1: give each item an `id`",
        '{"id": "a", "input": "Q", "output": "A"}\n{"id": "a", "input": "Q", "output": "B"}\n': "used twice",
        '{"id": "a", "input": "Q", "output_a": "A", "output_b": "B"}\n': "`output` must be a string",
        "\n": "holds no items",
    }
    for text, message in cases.items():
        items.write_text(text)
        assert message in _refused(data, items, tmp_path, capsys), text
    assert standin.stats()["requests"] == before


def test_python_m_judges_card_exits_with_2_on_a_bad_card(files):
    data, items, tmp_path = files
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data | {"card_schema": 0}))
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "judges.card", str(path), str(items), "-o", str(out)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2 and "Unknown card_schema 0" in result.stderr and not out.exists()


# --- Access ---------------------------------------------------------------------------------------------------


def test_only_leads_get_the_card_on_the_page_and_the_api(client, calibrated, lead, annotator, outsider):
    version, _dev, _test = calibrated
    url = f"/p/support-bot/judges/versions/{version.pk}/card.json"
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(url).status_code == 404
    api = f"/api/v1/projects/support-bot/judge-versions/{version.pk}/card"
    _row, raw = tokens.token_create(user=lead, name="cards")
    response = client.get(api, headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200 and card.card_read(response.json()).model == MODEL
    for user in (annotator, outsider):
        _row, other = tokens.token_create(user=user, name="cards")
        assert client.get(api, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert Item.objects.filter(project__slug="support-bot").exists()
