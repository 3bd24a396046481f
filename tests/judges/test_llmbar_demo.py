"""The LLMBar demo: the recorded judges' preloaded runs hold exactly what the real models answered, their figures are
what those answers give under the app's rules, the authors' own statistics.json agree per order, and a run through
the stand-in's `recorded` endpoint over real HTTP stores the same verdicts as the preloaded one."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotate import demo_llmbar
from annotate.models import GoldLabel, Item, Project
from judges import llm, ranking, recorded, selectors
from judges.demo import TARGET_ACCURACY, llmbar_judges_load
from judges.models import CachedCompletion, JudgeRun, JudgeVersion, RunChunk, Verdict
from judges.services import judge_runs, judge_versions, run_chunks

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[2] / "annotate" / "demo_data" / "llmbar"
SHARED = Path(__file__).resolve().parents[3] / "shared/datasets/llmbar-judges"
FIELDS = ("status", "value", "answer", "reasoning", "raw", "tokens_in", "tokens_out")


def _data() -> tuple[list[dict], list[dict]]:
    """The copied files, read here without judges.recorded."""
    items = [json.loads(line) for line in (DATA / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    answers = [json.loads(line) for line in (DATA / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    return items, answers


def _expected_value(winner: str | None) -> str | None:
    """A winner in the dataset's numbering as the app's canonical value: output_1 is the item's output_a."""
    return {"1": "a", "2": "b"}.get(winner or "")


def _count(text: str) -> int:
    return int(re.match(r"(\d+) / \d+", text).group(1))


@pytest.mark.skipif(not SHARED.exists(), reason="the shared LLMBar dataset is not on this machine")
def test_the_copied_data_equals_the_authors_files():
    items, answers = _data()
    assert len(items) == 419
    for name in recorded.STRATEGIES:
        copied = (DATA / "prompts" / "comparison" / f"{name}.txt").read_bytes()
        assert copied == (SHARED / "prompts" / "comparison" / f"{name}.txt").read_bytes()
    assert (DATA / "LICENSE").read_bytes() == (SHARED / "LICENSE").read_bytes()
    for line in answers:
        n = 0
        for subset in recorded.SUBSETS:
            folder = SHARED / subset / "evaluators" / line["model"] / line["strategy"]
            assert line["statistics"][subset] == json.loads((folder / "statistics.json").read_text())
            for row in json.loads((folder / "result.json").read_text()):
                item = items[n]
                assert (item["subset"], item["input"], item["output_1"], item["output_2"], item["label"]) == (
                    subset,
                    row["input"],
                    row["output_1"],
                    row["output_2"],
                    row["label"],
                )
                last = row["results"][-1]
                assert line["answers"][n] == [
                    last["swap = False"]["completion"][0],
                    last["swap = False"]["winner"],
                    last["swap = True"]["completion"][0],
                    last["swap = True"]["winner"],
                ]
                n += 1
        assert n == 419


def test_the_authors_templates_become_the_apps_with_their_text_unchanged():
    for name in recorded.STRATEGIES:
        system, user = recorded.templates(name)
        original = (DATA / "prompts" / "comparison" / f"{name}.txt").read_text(encoding="utf-8")
        assert system in original
        assert (
            user.replace("{{ input }}", "{input}")
            .replace("{{ output_a }}", "{output_1}")
            .replace("{{ output_b }}", "{output_2}")
            in original
        )
        assert "{{ output_a }}" in user and "{{ output_b }}" in user and "<|im_start|>user" not in user[:20]


def test_the_demo_preloads_every_recording_with_figures_from_the_recorded_answers(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    items, answers = _data()
    project = Project.objects.get(slug=demo_llmbar.SLUG)
    assert project.kind == "pairwise" and not project.allow_tie and project.status == "active"
    criteria = [c.key for c in project.current_rubric.criteria.order_by("position")]
    assert criteria[0] == "follows_instruction"
    by_external = {i.external_id: i for i in Item.objects.filter(project=project)}
    assert len(by_external) == 419 and {i.split for i in by_external.values()} == {"dev"}
    gold = dict(GoldLabel.objects.filter(item__project=project).values_list("item__external_id", "value"))
    assert gold == {row["id"]: "a" if row["label"] == 1 else "b" for row in items}
    for row in items:
        item = by_external[row["id"]]
        assert (item.input, item.output_a, item.output_b, item.metadata["subset"]) == (
            row["input"],
            row["output_1"],
            row["output_2"],
            row["subset"],
        )

    versions = list(JudgeVersion.objects.filter(judge__project=project).order_by("number"))
    assert len(versions) == len(answers) == 19
    seen = set()
    for version, line in zip(versions, answers, strict=True):
        pair = f"{line['model']} / {line['strategy']}"
        found = version.recording
        assert found is not None, pair
        assert (found.model.folder, found.strategy) == (line["model"], line["strategy"]), pair
        assert (version.system_template, version.user_template) == recorded.templates(line["strategy"])
        assert version.endpoint == llm.RECORDED and not version.uses_standin
        seen.add((line["model"], line["strategy"]))
        run = JudgeRun.objects.get(version=version)
        assert (run.status, run.scope, run.n_items, run.n_calls) == ("done", "dev", 419, 838), pair
        verdicts = {(v.item_id, v.order): v for v in Verdict.objects.filter(run=run).only("item_id", "order", *FIELDS)}
        assert len(verdicts) == 838, pair

        # Each verdict is the recorded answer; the app's figures follow from them by its own rules.
        n_both = n_agree = n_correct = n_invalid = 0
        counts: Counter[str] = Counter()
        per_subset: dict[str, Counter[str]] = {s: Counter() for s in recorded.SUBSETS}
        for row, answer in zip(items, line["answers"], strict=True):
            item = by_external[row["id"]]
            label = "a" if row["label"] == 1 else "b"
            got = {}
            for order, completion, winner in (("ab", answer[0], answer[1]), ("ba", answer[2], answer[3])):
                verdict = verdicts[(item.pk, order)]
                expected = _expected_value(winner)
                if expected is None:
                    assert (verdict.status, verdict.value, verdict.raw) == ("invalid", "", completion[:20_000]), pair
                    n_invalid += 1
                else:
                    assert (verdict.status, verdict.value, verdict.reasoning) == ("ok", expected, completion[:5000])
                    shown_first = {"ab": "a", "ba": "b"}[order]
                    assert verdict.answer == ("A" if expected == shown_first else "B"), pair
                got[order] = verdict.value or None
            stats = per_subset[row["subset"]]
            stats["correct_False"] += got["ab"] == label
            stats["correct_True"] += got["ba"] == label
            stats["correct_both"] += got["ab"] == got["ba"] == label
            # The authors count two unreadable answers as agreeing with each other.
            stats["equal"] += got["ab"] == got["ba"]
            if got["ab"] and got["ba"]:
                n_both += 1
                if got["ab"] == got["ba"]:
                    n_agree += 1
                    n_correct += got["ab"] == label
                    counts[got["ab"]] += 1
        report = run.report
        assert report["n"] == n_agree and report["n_both_orders"] == n_both, pair
        assert report["n_inconsistent"] == n_both - n_agree and report["n_invalid"] == n_invalid, pair
        assert report["judge_counts"] == dict(counts), pair
        assert report["figures"]["agreement"]["value"] == pytest.approx(n_correct / n_agree), pair
        assert report["figures"]["position_consistency"]["value"] == pytest.approx(n_agree / n_both), pair
        assert report["compared_kinds"]["gold"] == n_agree, pair
        # The authors' statistics.json, subset by subset: accuracy in each order, in both, and position agreement.
        for subset, stats in per_subset.items():
            authors = line["statistics"][subset]
            for name in ("correct_False", "correct_True", "correct_both", "equal"):
                assert stats[name] == _count(authors[name]), f"{pair} {subset} {name}"
    assert seen == {(line["model"], line["strategy"]) for line in answers}

    # Loading again changes nothing.
    before = (JudgeVersion.objects.count(), JudgeRun.objects.count(), Verdict.objects.count())
    again = llmbar_judges_load()
    assert (again.versions_created, again.runs_created) == (0, 0)
    assert (JudgeVersion.objects.count(), JudgeRun.objects.count(), Verdict.objects.count()) == before


def _sample(answers: list[list], n: int = 8) -> list[int]:
    """Items that show every way a recording can go: unreadable answers, orders that disagree, agreeing ones."""
    invalid = [i for i, a in enumerate(answers) if a[1] is None or a[3] is None]
    split = [i for i, a in enumerate(answers) if a[1] != a[3] and i not in invalid]
    agree = [i for i, a in enumerate(answers) if a[1] == a[3] and a[1] is not None]
    return sorted(set(invalid[:3] + split[:3] + agree[:2] + agree[-1:]))[:n]


def test_a_run_through_the_recorded_endpoint_over_http_stores_the_preloaded_verdicts(standin):
    project, _, _ = demo_llmbar.llmbar_project_load(members=[])
    llmbar_judges_load()
    items, answers = _data()
    by_external = dict(Item.objects.filter(project=project).values_list("external_id", "pk"))
    # Without the answers the preload cached, every request of the runs below goes to the stand-in over HTTP.
    CachedCompletion.objects.all().delete()
    requests = 0
    for line in answers:
        pair = f"{line['model']} / {line['strategy']}"
        version = next(
            v
            for v in JudgeVersion.objects.filter(judge__project=project)
            if v.recording and (v.recording.model.folder, v.recording.strategy) == (line["model"], line["strategy"])
        )
        preloaded = JudgeRun.objects.get(version=version)
        chosen = [by_external[items[i]["id"]] for i in _sample(line["answers"])]
        run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.ITEMS, item_ids=chosen)
        for chunk in RunChunk.objects.filter(run=run).order_by("number"):
            run_chunks.judge_chunk_process(chunk_id=chunk.pk)
        run.refresh_from_db()
        assert run.status == "done", pair
        live = {(v.item_id, v.order): v for v in Verdict.objects.filter(run=run)}
        assert len(live) == 2 * len(chosen) and not any(v.cached for v in live.values()), pair
        for (item_id, order), verdict in live.items():
            stored = Verdict.objects.get(run=preloaded, item_id=item_id, order=order)
            assert [getattr(verdict, f) for f in FIELDS] == [getattr(stored, f) for f in FIELDS], pair
        requests += len(live)
    assert standin.stats()["outcomes"] == {"ok": requests}


def test_a_prompt_without_a_recording_gets_the_plain_stand_in_and_says_so(standin, lead):
    project, _, _ = demo_llmbar.llmbar_project_load(members=[(lead, "lead")])
    judge = judge_versions.judge_create(project=project, criterion_key=demo_llmbar.CRITERION)
    system, user = recorded.templates("Vanilla")
    edited = judge_versions.judge_version_create(
        judge=judge,
        system_template=system,
        user_template=user + "\nThink hard.",
        endpoint=llm.RECORDED,
        model="gpt-4-0613",
    )
    unknown_model = judge_versions.judge_version_create(
        judge=judge, system_template=system, user_template=user, endpoint=llm.RECORDED, model="gpt-4o-2024-08-06"
    )
    for version in (edited, unknown_model):
        assert version.recording is None and version.uses_standin
        item = Item.objects.filter(project=project).order_by("id").first()
        run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.ITEMS, item_ids=[item.pk])
        for chunk in RunChunk.objects.filter(run=run):
            run_chunks.judge_chunk_process(chunk_id=chunk.pk)
        reasons = set(Verdict.objects.filter(run=run).values_list("reasoning", flat=True))
        label = f"Plain stand-in: no recorded answer of {version.model!r} to this prompt."
        assert reasons and all(r.startswith(label) for r in reasons)
        assert selectors.run_prices(run) == selectors.STANDIN_PRICE


def test_recorded_runs_are_priced_from_the_dated_table_and_the_cheapest_meeting_the_target_is_chosen(
    settings, client, lead
):
    project, _, _ = demo_llmbar.llmbar_project_load(members=[(lead, "lead")])
    llmbar_judges_load()
    judge = project.judges.get()
    assert judge.target == "accuracy" and judge.target_accuracy == TARGET_ACCURACY
    groups = selectors.model_choices(judge=judge)
    # One group per strategy: the same prompt on each model that has a recording of it.
    assert sorted(len(g) for g in groups) == [4, 5, 5, 5]
    for group in groups:
        for choice in group:
            price = settings.JUDGE_RECORDED_PRICES.get(choice.version.model)
            if price is None:
                assert choice.cost_per_1000 is None
                continue
            tokens = Verdict.objects.filter(run=choice.run).values_list("tokens_in", "tokens_out")
            usd = sum(i * price[0] + o * price[1] for i, o in tokens) / 1_000_000
            assert float(choice.cost_per_1000) == pytest.approx(usd * 1000 / 838)
        meeting = [c for c in group if c.check.status == "calibrated" and c.cost_per_1000 is not None]
        best = [c for c in group if c.best]
        assert best == ([min(meeting, key=lambda c: c.cost_per_1000)] if meeting else [])
    # On LLMBar only GPT-4 reaches 80% agreement with the experts, whatever the prompt.
    assert {c.version.model for g in groups for c in g if c.best} == {"gpt-4-0613"}

    # The judge page ranks every prompt on every model, best agreement first, and highlights the same choice.
    ranked = ranking.configuration_ranking(judge=judge)
    assert len(ranked) == 19 and [r.rank for r in ranked] == list(range(1, 20))
    values = [r.choice.figure["value"] for r in ranked]
    assert values == sorted(values, reverse=True)
    meeting = [r for r in ranked if r.choice.check.status == "calibrated" and r.choice.cost_per_1000 is not None]
    (best,) = [r for r in ranked if r.choice.best]
    assert best.choice.cost_per_1000 == min(r.choice.cost_per_1000 for r in meeting)
    assert (best.prompt, best.choice.version.model) == ("Vanilla (with rules)", "gpt-4-0613")
    assert {r.prompt for r in ranked} == set(recorded.STRATEGY_LABELS.values())
    for r in ranked:
        assert r.consistency["value"] == r.choice.run.report["figures"]["position_consistency"]["value"]
    client.force_login(lead)
    page = client.get(reverse("judges:judge_detail", args=[project.slug, judge.pk])).content.decode()
    assert "Every prompt on every model, ranked" in page and "list prices as of 2023-11-06" in page
    row = re.search(r'<tr class="best">(.*?)</tr>', page[page.index("ranking-h") :], re.DOTALL).group(1)
    assert "Vanilla (with rules)" in row and "gpt-4-0613" in row and "cheapest that meets the target" in row
    assert page.count("replays GPT-4 (0613)") == 4


def test_the_demo_pages_count_gold_as_the_human_reference_and_say_only_what_holds(settings, tmp_path, client):
    """The QA walkthrough of the demo: gold labels are human labels to compare with, a gold-only disagreement card
    does not say "No labels", the dashboard calls a judge calibrated only when its run meets the target, the
    model-choice groups have headings, and replayed models are not floating aliases."""
    settings.VAR_DIR = tmp_path
    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    project = Project.objects.get(slug=demo_llmbar.SLUG)
    lead = project.memberships.filter(role="lead").first().user
    client.force_login(lead)
    versions = list(JudgeVersion.objects.filter(judge__project=project).order_by("number"))

    version_page = client.get(reverse("judges:version_detail", args=[project.slug, versions[1].pk])).content.decode()
    assert "No human labels to compare with" not in version_page
    assert "floating alias" not in version_page
    assert not any(v.model_is_alias for v in versions)

    run = JudgeRun.objects.filter(version=versions[1]).get()
    report_page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "gold</span>" in report_page or "gold ·" in report_page
    assert "No labels on this criterion." not in report_page
    assert "Floating alias" not in report_page

    dashboard = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    judges_card = dashboard.split('id="judges-h"')[1].split("</section>")[0]
    latest = selectors.latest_alignment(project=project)
    meets = {judge_id: selectors.run_target_check(run=r).status == "calibrated" for judge_id, r in latest.items()}
    assert meets and not all(meets.values())  # the newest recording misses the 0.80 bar
    assert "Below target" in judges_card
    assert judges_card.count("Calibrated") == sum(meets.values())

    judge_page = client.get(reverse("judges:judge_detail", args=[project.slug, versions[0].judge_id])).content.decode()
    headings = re.findall(r'<h3 class="model-choice-h">([^<]+)</h3>', judge_page)
    assert headings and all(" models (v" in h for h in headings)
    assert {h.split(" — ")[0] for h in headings} <= set(recorded.STRATEGY_LABELS.values())
    assert "recorded recorded" not in judge_page and "recorded: " not in judge_page
    assert "floating alias" not in judge_page
