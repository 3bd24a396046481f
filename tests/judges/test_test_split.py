"""The test split stays held out: "All items" and API item runs leave test items out unless confirmed like "Confirm
on test"; any run with test items is a counted look at test, shown everywhere; a test run's page folds its
disagreements behind "Show test items" and offers no "New version from this one"."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from annotate import tokens
from judges import selectors
from judges.models import JudgeRun, RunChunk
from judges.services import judge_runs, run_chunks
from tests.factories import label, migrate_to_latest
from tests.judges.conftest import make_item, make_version

pytestmark = pytest.mark.django_db

NEW_VERSION = "New version from this one"


@pytest.fixture
def split_items(project, annotator, other_annotator, standin):
    """Two dev and two test items; the stand-in fails outputs saying WRONG. Humans pass every item, so the judge
    disagrees (too strict) on dev-1 and test-3, and agrees on dev-0 and test-2."""
    standin.configure(rule="keyword")
    specs = [("dev", "Fine."), ("dev", "WRONG but fine."), ("test", "Fine too."), ("test", "WRONG yet fine.")]
    items = [make_item(project, n, split=split, output=text) for n, (split, text) in enumerate(specs)]
    for item in items:
        label(item, annotator, "acceptable", "pass")
        label(item, other_annotator, "acceptable", "pass")
    return items


def _work(run: JudgeRun) -> JudgeRun:
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


def _judge_pages(client, project, version, run) -> dict[str, str]:
    return {
        name: client.get(url).content.decode()
        for name, url in {
            "list": reverse("judges:judge_list", args=[project.slug]),
            "judge": reverse("judges:judge_detail", args=[project.slug, version.judge_id]),
            "version": reverse("judges:version_detail", args=[project.slug, version.pk]),
            "run": reverse("judges:run_detail", args=[project.slug, run.pk]),
        }.items()
    }


def test_all_items_in_the_browser_leaves_test_out_unless_confirmed_and_then_counts_a_look(
    client, lead, project, version, split_items
):
    client.force_login(lead)
    start = reverse("judges:run_start", args=[project.slug, version.pk])
    client.post(start, {"scope": "all"})
    plain = JudgeRun.objects.latest("id")
    assert (plain.n_items, plain.n_test_items, plain.test_run_number) == (2, 0, None)
    assert selectors.test_runs_count(judge=version.judge) == 0
    client.post(start, {"scope": "all", "confirm_test": "on"})
    confirmed = _work(JudgeRun.objects.latest("id"))
    assert (confirmed.n_items, confirmed.n_test_items, confirmed.test_run_number) == (4, 2, 1)
    pages = _judge_pages(client, project, version, confirmed)
    assert "test looked at 1×" in pages["judge"] and "test looked at 1×" in pages["run"]
    assert "test run #1" in pages["run"] and "test run #1" in pages["version"]
    assert '<span class="badge warn">1</span>' in pages["list"]
    assert "count this as test run #2" in pages["version"]


def test_api_item_runs_refuse_test_items_unless_confirmed_and_count_them(client, lead, project, version, split_items):
    _token, raw = tokens.token_create(user=lead, name="ci")
    headers = {"Authorization": f"Bearer {raw}"}
    url = f"/api/v1/projects/{project.slug}/judge-versions/{version.pk}/runs"
    dev, test = split_items[0], split_items[2]
    body = {"scope": "items", "item_ids": [dev.pk, test.pk]}
    refused = client.post(url, body, content_type="application/json", headers=headers)
    assert refused.status_code == 400
    assert "1 of the chosen items are in the held-out test split" in refused.json()["detail"]
    assert not JudgeRun.objects.exists()
    dev_only = client.post(url, body | {"item_ids": [dev.pk]}, content_type="application/json", headers=headers)
    assert dev_only.status_code == 201 and dev_only.json()["test_run_number"] is None
    confirmed = client.post(url, body | {"confirm_test": True}, content_type="application/json", headers=headers)
    assert confirmed.status_code == 201
    assert (confirmed.json()["n_test_items"], confirmed.json()["test_run_number"]) == (1, 1)
    everything = client.post(url, {"scope": "all"}, content_type="application/json", headers=headers).json()
    assert (everything["n_items"], everything["n_test_items"], everything["test_run_number"]) == (2, 0, None)
    assert selectors.test_runs_count(judge=version.judge) == 1


def _disagreement_parts(page: str) -> tuple[str, str]:
    """(what the disagreements list shows openly, what sits folded behind "Show test items")."""
    section = page.split('id="disagreements"')[1].split('aria-labelledby="verdicts-h"')[0]
    if "<details" not in section:
        return section, ""
    open_part, rest = section.split("<details", 1)
    return open_part, rest.split("</details>")[0]


def test_a_test_run_page_shows_figures_and_verdict_folds_its_disagreements_and_offers_no_new_version(
    client, lead, project, version, split_items
):
    run = _work(judge_runs.judge_run_start(version=version, scope="test", confirm_test=True))
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "Judge vs humans" in page and 'class="chart chart-bars"' in page  # figures still shown
    assert NEW_VERSION not in page
    shown, folded = _disagreement_parts(page)
    assert "<code>item-3</code>" not in shown and "outside the held-out test split" in shown
    assert '<summary>Show test items <span class="count">1</span></summary>' in folded
    assert "<code>item-3</code>" in folded
    # The htmx fragment of the list folds them the same way.
    fragment = client.get(
        reverse("judges:run_detail", args=[project.slug, run.pk]) + "?part=disagreements",
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "<summary>Show test items" in fragment and fragment.index("<details") < fragment.index("item-3")


def test_a_confirmed_all_items_run_lists_dev_disagreements_openly_and_folds_the_test_ones(
    client, lead, project, version, split_items
):
    run = _work(judge_runs.judge_run_start(version=version, scope="all", confirm_test=True))
    dev_run = _work(judge_runs.judge_run_start(version=version, scope="dev"))
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    shown, folded = _disagreement_parts(page)
    assert "<code>item-1</code>" in shown and "<code>item-3</code>" not in shown
    assert "<code>item-3</code>" in folded and "<code>item-1</code>" not in folded
    assert NEW_VERSION not in page
    dev_page = client.get(reverse("judges:run_detail", args=[project.slug, dev_run.pk])).content.decode()
    assert NEW_VERSION in dev_page and "Show test items" not in dev_page


def test_the_database_refuses_a_run_with_test_items_and_no_look_number(project, version, split_items):
    with pytest.raises(IntegrityError), transaction.atomic():
        JudgeRun.objects.create(
            project=project, version=version, rubric_version=project.current_rubric, n_items=2, n_test_items=1
        )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_earlier_runs_with_test_items_as_looks_in_the_order_they_were_made(
    project, version, split_items
):
    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([target])

    dev, test = split_items[0], split_items[2]
    first = judge_runs.judge_run_start(version=version, scope="test", confirm_test=True)
    everything = judge_runs.judge_run_start(version=version, scope="all", confirm_test=True)
    chosen = judge_runs.judge_run_start(version=version, scope="items", item_ids=[dev.pk, test.pk], confirm_test=True)
    dev_run = judge_runs.judge_run_start(version=version, scope="dev")
    # As runs started before test items counted as looks: only the test-split run carried a number.
    JudgeRun.objects.filter(pk__in=[everything.pk, chosen.pk]).update(n_test_items=0, test_run_number=None)
    migrate(("judges", "0003_refkinds_single_label_reference"))
    migrate(("judges", "0004_skips_test_looks"))
    looks = {run.pk: (run.n_test_items, run.test_run_number) for run in JudgeRun.objects.all()}
    migrate_to_latest()  # later migrations, so the tests after this one find the whole schema
    assert looks == {first.pk: (2, 1), everything.pk: (2, 2), chosen.pk: (1, 3), dev_run.pk: (0, None)}


def test_run_judge_all_leaves_test_out_unless_include_test(project, version, split_items):
    err = io.StringIO()
    call_command("run_judge", project.slug, str(version.pk), "--split", "all", stdout=io.StringIO(), stderr=err)
    assert JudgeRun.objects.latest("id").n_test_items == 0 and "test run" not in err.getvalue()
    call_command(
        "run_judge", project.slug, str(version.pk), "--split", "all", "--include-test", stdout=io.StringIO(), stderr=err
    )
    run = JudgeRun.objects.latest("id")
    assert (run.n_items, run.n_test_items, run.test_run_number) == (4, 2, 1)
    assert "2 item(s) of the held-out test split: this is test run #1." in err.getvalue()


def _flip_parts(page: str) -> tuple[str, str]:
    """(the flipped items the comparison lists openly, those folded behind "Show test items")."""
    section = page.split('id="flips"')[1]
    if "<details" not in section:
        return section, ""
    open_part, rest = section.split("<details", 1)
    return open_part, rest.split("</details>")[0]


def test_a_comparison_with_test_items_keeps_their_figures_folds_their_flips_and_offers_no_new_version(
    client, lead, project, version, split_items
):
    # v2 fails everything: against humans who pass every item, dev-0 and test-2 break (v1 passed them).
    child = make_version(
        version.judge,
        parent=version,
        change_note="Everything fails",
        user_template="<input>{{ input }}</input><output>{{ output }} WRONG</output>",
    )
    a = _work(judge_runs.judge_run_start(version=version, scope="all", confirm_test=True))
    b = _work(judge_runs.judge_run_start(version=child, scope="all", confirm_test=True))
    client.force_login(lead)
    url = reverse("judges:compare", args=[project.slug]) + f"?a={a.pk}&b={b.pk}"
    page = client.get(url + "&flip=broken").content.decode()
    assert '<span class="big">2</span> broken' in page  # the figures count every common item, test ones too
    assert "New version from v2" not in page
    shown, folded = _flip_parts(page)
    assert "<code>item-0</code>" in shown and "<code>item-2</code>" not in shown
    assert '<summary>Show test items <span class="count">1</span></summary>' in folded
    assert "<code>item-2</code>" in folded and "<code>item-0</code>" not in folded
    # The htmx fragment of the flips folds them the same way.
    fragment = client.get(url + "&flip=broken&part=flips", headers={"HX-Request": "true"}).content.decode()
    assert "<summary>Show test items" in fragment and fragment.index("<details") < fragment.index("<code>item-2</code>")
    # Compared on dev only, nothing is folded and the next version is offered.
    dev_a = _work(judge_runs.judge_run_start(version=version, scope="dev"))
    dev_b = _work(judge_runs.judge_run_start(version=child, scope="dev"))
    dev_url = reverse("judges:compare", args=[project.slug]) + f"?a={dev_a.pk}&b={dev_b.pk}&flip=broken"
    dev_page = client.get(dev_url).content.decode()
    assert "<code>item-0</code>" in dev_page and "Show test items" not in dev_page
    assert "New version from v2" in dev_page
