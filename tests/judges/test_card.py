"""Judge cards: exported from a version that ran in the app, run elsewhere over real HTTP against the stand-in with
the same rendering and cache keys, and without the app (a fresh virtual environment holding only the runner package);
edited or broken cards, keys and items files are refused with exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate import tokens
from annotate.models import Item, Membership
from annotate.services.rubrics import rubric_set_criteria
from judges import card
from judges.models import CachedCompletion, JudgeRun, RunChunk, Verdict
from judges.services import judge_runs, judge_versions, run_chunks
from tests.factories import ProjectFactory, label, membership
from tests.judges.conftest import MODEL, make_item, make_version

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _run_here(version, **kwargs) -> JudgeRun:
    """Start a run and work its chunks in this process, as a worker would."""
    run = judge_runs.judge_run_start(version=version, **kwargs)
    for chunk in RunChunk.objects.filter(run=run).order_by("number"):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
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
        judge, examples=[judge_versions.ExampleData(example.external_id, "fail", "It says WRONG.")], temperature=0.0
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


def _key_file(tmp_path: Path, slug: str = "support-bot") -> Path:
    path = tmp_path / f"{slug}.card-key"
    path.write_text(card.card_key(slug) + "\n")
    return path


def _args(tmp_path: Path, *args: str, slug: str = "support-bot") -> list[str]:
    return [*args, "--key-file", str(_key_file(tmp_path, slug))]


def test_the_card_holds_the_prompt_model_examples_rubric_and_dated_figures(client, lead, calibrated, standin):
    version, dev, test = calibrated
    data = _card(client, lead, version)
    assert data["card_schema"] == card.SCHEMA and data["signature"]
    assert data["endpoint"] == {
        "name": "standin",
        "base_url": f"http://127.0.0.1:{standin.port}/v1",
        "key_env": "",
        "structured_outputs": True,
        "max_tokens_param": "max_tokens",
        "max_concurrency": 8,
        "rpm": 0,
        "timeout": 5.0,
    }
    assert data["criterion_changed"] is None
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
    # The runner never reads the app's database: it asks the stand-in itself, over HTTP, and caches in its own file.
    cache = tmp_path / "answers.jsonl"
    before = standin.stats()["requests"]
    out = tmp_path / "verdicts.jsonl"
    args = _args(tmp_path, str(card_path), str(items_path), "-o", str(out), "--cache", str(cache))
    assert card.main(args) == 0
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert {v["id"]: v["verdict"] for v in verdicts} == {k: value for k, (value, _key) in in_app.items()}
    assert [v["id"] for v in verdicts] == [f"item-{n}" for n in range(6)]
    assert all(v["status"] == "ok" and not v["cached"] and v["tokens_in"] > 0 and v["reasoning"] for v in verdicts)
    assert standin.stats()["requests"] - before == 6
    # Same rendering and same key function: the card cached exactly the keys the in-app run used.
    cached = [json.loads(line) for line in cache.read_text().splitlines()]
    assert {row["key"] for row in cached} == {key for _v, key in in_app.values()} and len(cached) == 6
    assert set(CachedCompletion.objects.values_list("key", flat=True)) >= {row["key"] for row in cached}

    # Run again: every answer comes from the cache, none from the model.
    before = standin.stats()["requests"]
    again = tmp_path / "again.jsonl"
    args = _args(tmp_path, str(card_path), str(items_path), "-o", str(again), "--cache", str(cache))
    assert card.main(args) == 0
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
    version = make_version(judge_versions.judge_create(project=project, criterion_key="acceptable"))
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
    args = _args(tmp_path, str(tmp_path / "card.json"), str(tmp_path / "items.jsonl"), slug="compare")
    assert card.main(args) == 0
    out, err = capsys.readouterr()
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [(v["id"], v["verdict"], v["status"]) for v in verdicts] == [
        (1, "a", "ok"),
        (2, "b", "ok"),
        (3, "tie", "ok"),
    ]
    assert set(verdicts[0]["orders"]) == {"ab", "ba"} and verdicts[0]["cached"] is False
    assert "6 model calls" in err
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
    assert card.main(_args(tmp_path, str(path), str(items), "-o", str(out))) == 2
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
    # Signed under another project's key (a card key is per project).
    other = card._sign(json.loads(json.dumps(data)), card.card_key("another-project"))
    assert "signature does not match" in _refused(other, items, tmp_path, capsys)
    assert standin.stats()["requests"] == before


def test_a_card_is_refused_without_its_key(files, standin, capsys, monkeypatch):
    data, items, tmp_path = files
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    monkeypatch.delenv(card.KEY_ENV, raising=False)
    assert card.main([str(path), str(items)]) == 2
    assert "No card key" in capsys.readouterr().err
    monkeypatch.setenv(card.KEY_ENV, card.card_key("support-bot"))
    assert card.main([str(path), str(items)]) == 0
    monkeypatch.setenv(card.KEY_ENV, "ack1_" + "0" * 64)
    assert card.main([str(path), str(items)]) == 2
    assert "signature does not match" in capsys.readouterr().err


def test_invalid_cards_are_refused_even_when_signed(files, capsys):
    data, items, tmp_path = files
    assert "not JSON" in _refused("{not json", items, tmp_path, capsys)
    assert "card_schema" in _refused(data | {"card_schema": 99}, items, tmp_path, capsys)
    broken = card._sign({k: v for k, v in data.items() if k not in ("signature", "model")})
    assert "has no model" in _refused(broken, items, tmp_path, capsys)
    bad = json.loads(json.dumps(data))
    bad["prompt"]["user_template"] = "{{ secret }}"
    assert "Unknown placeholder {{ secret }}" in _refused(card._sign(bad), items, tmp_path, capsys)
    broken = card._sign({k: v for k, v in data.items() if k not in ("signature", "endpoint")})
    assert "has no endpoint" in _refused(broken, items, tmp_path, capsys)
    bad = json.loads(json.dumps(data))
    bad["endpoint"]["key_env"] = "ANNOTATE_TEST_UNSET_KEY"
    assert "ANNOTATE_TEST_UNSET_KEY holding the endpoint's key is not set" in _refused(
        card._sign(bad), items, tmp_path, capsys
    )
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


def _bare_env(**extra: str) -> dict[str, str]:
    """What a pipeline has: a PATH, and no DATABASE_URL, REDIS_URL, SECRET_KEY nor Django settings."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", **extra}


@pytest.mark.slow
def test_python_m_judges_card_runs_without_the_apps_settings_or_database(files, standin):
    data, items, tmp_path = files
    path = tmp_path / "card.json"
    out = tmp_path / "out.jsonl"

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "judges.card", str(path), str(items), "-o", str(out)],
            cwd=ROOT,
            env=_bare_env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    path.write_text(json.dumps(data | {"card_schema": 0}))
    result = run(ANNOTATE_CARD_KEY=card.card_key("support-bot"))
    assert result.returncode == 2 and "Unknown card_schema 0" in result.stderr and not out.exists()
    path.write_text(json.dumps(data))
    result = run(ANNOTATE_CARD_KEY=card.card_key("support-bot"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "1 verdicts (1 ok)" in result.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["x"]


def test_a_card_exported_after_its_criterion_changed_says_so_and_the_runner_warns(
    client, lead, calibrated, tmp_path, capsys
):
    version, _dev, _test = calibrated
    project = version.judge.project
    assert _card(client, lead, version)["criterion_changed"] is None
    criteria = [
        {"key": c.key, "name": c.name, "description": c.description}
        for c in project.current_rubric.criteria.order_by("position")
    ]
    for c in criteria:
        if c["key"] == "acceptable":
            c["description"] = "Only answers that cite a source are acceptable."
    rubric_set_criteria(project=project, criteria=criteria)
    data = _card(client, lead, version)
    # Still the calibrated definition, and a signed note of the change.
    assert data["rubric"]["version"] == 1 and data["rubric"]["criterion"]["description"] != criteria[0]["description"]
    changed = data["criterion_changed"]
    assert changed["current_rubric_version"] == 2
    assert changed["current"]["description"] == "Only answers that cite a source are acceptable."
    assert "changed in rubric v2" in changed["message"]
    (tmp_path / "card.json").write_text(json.dumps(data))
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "x", "input": "Question?", "output": "Fine."}) + "\n")
    capsys.readouterr()
    assert card.main(_args(tmp_path, str(tmp_path / "card.json"), str(items), "-o", str(tmp_path / "v.jsonl"))) == 0
    err = capsys.readouterr().err
    assert "warning: The criterion 'acceptable' changed in rubric v2" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def separate_standin(tmp_path):
    """The stand-in as its own process on a free port, as a pipeline would reach a model server."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "judges.standin", "--port", str(port), "--latency-ms", "0", "--rule", "keyword"],
        cwd=ROOT,
        env=_bare_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stats", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.mark.slow
def test_the_runner_package_installs_alone_and_judges_an_export_without_the_app(
    client, lead, calibrated, tmp_path, separate_standin
):
    """Done when of issue 23: a fresh virtual environment with only what runner/ declares (PyPI or uv's wheel cache),
    an items file exported from the app, the stand-in in its own process, no database, no settings, no SECRET_KEY."""
    version, dev, _test = calibrated
    (tmp_path / "card.json").write_text(json.dumps(_card(client, lead, version)))
    items = tmp_path / "dev.jsonl"
    call_command("export_labels", "support-bot", "--split", "dev", "--format", "jsonl", "-o", str(items))
    in_app = dict(Verdict.objects.filter(run=dev).values_list("item__external_id", "value"))

    uv = Path(sys.executable).with_name("uv")
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([str(uv), "venv", "-q", "--python", base_python, str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(uv), "pip", "install", "-q", str(ROOT / "runner")],
        check=True,
        timeout=600,
        env=os.environ | {"VIRTUAL_ENV": str(venv)},
    )
    python = venv / "bin" / "python"
    # Only the runner and what it declares: neither Django nor the app's other modules are there.
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print([bool(u.find_spec(m)) for m in "
            "('openai', 'judges.card', 'django', 'judges.models', 'annotate')])",
        ],
        cwd=tmp_path,
        env=_bare_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[True, True, False, False, False]"

    key = tmp_path / "key"
    key.write_text(card.card_key("support-bot"))
    out = tmp_path / "verdicts.jsonl"
    cache = tmp_path / "answers.jsonl"
    command = [
        str(venv / "bin" / "annotate-judge-card"),
        "card.json",
        "dev.jsonl",
        "-o",
        str(out),
        "--key-file",
        str(key),
        "--cache",
        str(cache),
        "--base-url",
        f"{separate_standin}/v1",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=_bare_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert {v["id"]: v["verdict"] for v in verdicts} == in_app
    assert "6 verdicts (6 ok), 6 model calls, 0 answers from the cache." in result.stderr
    # Again with `python -m judges.card`: every answer from the cache file, no model call.
    command[:1] = [str(python), "-m", "judges.card"]
    result = subprocess.run(command, cwd=tmp_path, env=_bare_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "6 verdicts (6 ok), 0 model calls, 6 answers from the cache." in result.stderr
    shutil.rmtree(venv)


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
    assert (
        response.status_code == 200 and card.card_read(response.json(), key=card.card_key("support-bot")).model == MODEL
    )
    key = client.get("/api/v1/projects/support-bot/judge-card-key", headers={"Authorization": f"Bearer {raw}"})
    assert key.json() == {"key": card.card_key("support-bot"), "env": "ANNOTATE_CARD_KEY"}
    client.force_login(lead)
    page = client.get("/p/support-bot/judges/card-key/")
    assert page.status_code == 200 and page.content.decode().strip() == card.card_key("support-bot")
    assert page["Cache-Control"] == "no-store"
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get("/p/support-bot/judges/card-key/").status_code == 404
    for user in (annotator, outsider):
        _row, other = tokens.token_create(user=user, name="cards")
        assert client.get(api, headers={"Authorization": f"Bearer {other}"}).status_code == 404
        key_api = "/api/v1/projects/support-bot/judge-card-key"
        assert client.get(key_api, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert Item.objects.filter(project__slug="support-bot").exists()


def test_the_runner_caches_answers_in_redis_when_given_a_redis_url(files, standin, settings, capsys):
    data, items, tmp_path = files
    if not settings.REDIS_URL:
        pytest.skip("the embedded default has no Redis")
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    if stale := client.keys("judges:card-cache:*"):
        client.delete(*stale)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    args = _args(tmp_path, str(path), str(items), "--redis-url", settings.REDIS_URL)
    before = standin.stats()["requests"]
    assert card.main(args) == 0
    assert "1 model calls, 0 answers from the cache" in capsys.readouterr().err
    assert card.main(args) == 0
    assert "0 model calls, 1 answers from the cache" in capsys.readouterr().err
    assert standin.stats()["requests"] - before == 1
    # One entry for the one request, kept with an expiry.
    names = client.keys("judges:card-cache:*")
    assert len(names) == 1 and 0 < client.ttl(names[0]) <= card.RedisCache.TTL_SECONDS
    client.delete(*names)
