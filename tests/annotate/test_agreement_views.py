"""Stored agreement reports, the command that prints them, adjudication, and who may see them."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape

from annotate import reports, tasks
from annotate.demo import demo_load
from annotate.models import AgreementReport, GoldLabel, Label, Membership, Project
from annotate.services.gold import gold_set
from tests.factories import UserFactory, membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    pairwise = Project.objects.select_related("current_rubric").get(slug="tulu-preference")
    lead = UserFactory(username="demo-lead-test")
    membership(lead, pairwise, Membership.Role.LEAD)
    return pairwise, lead


def test_the_command_prints_the_documented_json_schema(demo):
    project, _ = demo
    out = StringIO()
    call_command("agreement_report", project.slug, "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["project"] == "tulu-preference" and data["rubric_version"] == 1
    human = data["criteria"]["overall"]["human"]
    assert set(human) >= {
        "n_items",
        "n_labels",
        "n_annotators",
        "percent_agreement",
        "fleiss_kappa",
        "krippendorff_alpha",
        "pairwise_cohen_kappa",
    }
    for figure in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha"):
        assert set(human[figure]) >= {"value", "ci_low", "ci_high"}
    assert human["n_labels"] == Label.objects.filter(item__project=project, criterion__key="overall").count()
    assert data["criteria"]["overall"]["judge"] == {}
    assert AgreementReport.objects.filter(project=project).count() == 1


def test_the_command_marks_alpha_as_the_headline_where_items_have_different_numbers_of_labels(demo):
    project, _ = demo
    out = StringIO()
    call_command("agreement_report", project.slug, stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.strip().startswith("krippendorff_alpha") and line.endswith("(headline)") for line in lines)
    assert not any(line.strip().startswith("fleiss_kappa") and "headline" in line for line in lines)


def test_the_report_is_served_from_storage_and_recomputed_only_when_labels_change(demo):
    project, _ = demo
    first = reports.report_refresh(project=project)
    assert not reports.report_stale(project=project)
    again = reports.report_refresh(project=project)
    assert again.computed_at == first.computed_at
    Label.objects.filter(item__project=project).first().delete()
    assert reports.report_stale(project=project)
    assert tasks.agreement_reports_refresh() >= 1
    assert AgreementReport.objects.get(pk=first.pk).n_labels == first.n_labels - 1


def test_a_gold_label_settles_an_item_and_the_report_says_so(demo, client):
    project, lead = demo
    report = reports.report_refresh(project=project)
    consensus = report.data["criteria"]["overall"]["consensus"]
    assert consensus["n_needs_adjudication"] > 0  # real data: some doubly-labeled items disagree
    item_id = consensus["needs_adjudication"][0]
    client.force_login(lead)
    page = client.get(reverse("adjudicate", args=[project.slug, "overall"]))
    assert page.status_code == 200 and "Save and next" in page.content.decode()
    url = reverse("adjudicate", args=[project.slug, "overall"])
    response = client.post(url, {"item": item_id, "c-overall": "tie", "note": "Both fine."})
    assert response.status_code == 302
    assert GoldLabel.objects.get(item_id=item_id).value == "tie"
    refreshed = reports.report_refresh(project=project)
    after = refreshed.data["criteria"]["overall"]["consensus"]
    assert after["n_gold"] == 1 and after["n_needs_adjudication"] == consensus["n_needs_adjudication"] - 1
    other = next(pk for pk in after["needs_adjudication"] if pk != item_id)
    bad = client.post(reverse("adjudicate", args=[project.slug, "overall"]), {"item": other, "c-overall": "pass"})
    assert bad.status_code == 400 and not GoldLabel.objects.filter(item_id=other).exists()


def test_the_agreement_page_shows_figures_with_their_definitions(demo, client):
    project, lead = demo
    reports.report_refresh(project=project)
    client.force_login(lead)
    page = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    assert "Krippendorff" in page and escape(reports.DEFINITIONS["krippendorff_alpha"]) in page
    # The formula of the generalised Fleiss' κ and its source are named beside it.
    assert escape(reports.DEFINITIONS["fleiss_kappa"]) in page and "Gwet, Handbook of Inter-Rater Reliability" in page
    # Items have two or three labels: α leads, above percent agreement and κ, and the page says why.
    assert "50 items with 2, 9 items with 3" in page
    assert "Items have different numbers of labels, so Krippendorff" in page
    table = page[page.index('id="c-overall"') :]
    assert table.index("headline</span>") < table.index("Percent agreement") < table.index("Fleiss' κ</th>")
    assert not re.search(r"\bnan\b", page, re.IGNORECASE)  # a word: the random CSRF token may hold "nan"
    partial = client.get(reverse("agreement_page", args=[project.slug]), headers={"HX-Request": "true"})
    assert partial.content.decode().lstrip().startswith('<div id="report">')


def test_annotators_and_outsiders_get_404_on_agreement_and_adjudication(demo, client, outsider):
    project, _ = demo
    annotator = UserFactory(username="ann-only")
    membership(annotator, project, Membership.Role.ANNOTATOR)
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(reverse("agreement_page", args=[project.slug])).status_code == 404
        assert client.post(reverse("agreement_compute", args=[project.slug])).status_code == 404
        assert client.get(reverse("adjudicate", args=[project.slug, "overall"])).status_code == 404
        assert (
            client.post(reverse("adjudicate", args=[project.slug, "overall"]), {"item": 1, "value": "a"}).status_code
            == 404
        )
    assert not GoldLabel.objects.filter(item__project=project).exists()


def test_gold_set_refuses_items_of_other_projects(demo):
    project, lead = demo
    other = Project.objects.get(slug="tulu-acceptability")
    foreign = other.items.first()
    with pytest.raises(Exception, match="not in this project"):
        gold_set(project=project, item_id=foreign.pk, criterion_key="overall", value="a", note="", actor=lead)


def test_the_agreement_page_orders_criteria_as_the_rubric_does_and_titles_them_by_name(client):
    """PostgreSQL's jsonb keeps object keys by length, then bytes: the report must not show that order."""
    from tests.factories import ItemFactory, ProjectFactory, label

    criteria = [
        {"key": "zeta_is_long", "name": "Resolves the issue", "description": "Nothing more is needed."},
        {"key": "b", "name": "Grounded in sources", "description": "Claims are sourced."},
        {"key": "mid", "name": "Tone & register", "description": "Polite."},
    ]
    project = ProjectFactory(slug="ordered", criteria=criteria)
    lead, ann1, ann2 = UserFactory(), UserFactory(), UserFactory()
    membership(lead, project, Membership.Role.LEAD)
    for user in (ann1, ann2):
        membership(user, project, Membership.Role.ANNOTATOR)
    for _ in range(3):
        item = ItemFactory(project=project)
        for user in (ann1, ann2):
            for c in criteria:
                label(item, user, c["key"], "pass")
    report = reports.report_refresh(project=project)
    report.refresh_from_db()
    client.force_login(lead)
    page = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    titles = re.findall(r'<h2 id="c-([a-z_]+)">([^<]+)', page)
    assert titles == [
        ("zeta_is_long", "Resolves the issue "),
        ("b", "Grounded in sources "),
        ("mid", escape("Tone & register") + " "),
    ]
    out = StringIO()
    call_command("agreement_report", project.slug, "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert (
        list(data["criteria"]) == ["zeta_is_long", "b", "mid"]
        and data["criteria"]["b"]["name"] == "Grounded in sources"
    )
