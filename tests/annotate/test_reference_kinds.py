"""Reference kinds (issue 15) on the agreement report, its page, the dashboard and exports, on a project mixing items
with 1, 2 and 3 labels, gold labels and an unlabeled item (tests.factories.MIXED_REFERENCE). SQLite-capable."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from annotate import exports, reports
from annotate.models import Project
from annotate.stats import reference
from tests.factories import MIXED_REFERENCE, UserFactory, membership, mixed_reference_items

pytestmark = pytest.mark.django_db

# What MIXED_REFERENCE holds, counted by hand: three gold (over two labels, over one, on an unlabeled item), three
# majorities of two or three labels, two single labels, one 1–1 split; the "unlabeled" item has no kind.
EXPECTED = {"gold": 3, "majority": 3, "single": 2, "unsettled": 1}


@pytest.fixture
def mixed(project, lead, annotator, other_annotator):
    third = UserFactory(username="tess-annotator")
    membership(third, project)
    return mixed_reference_items(project, [annotator, other_annotator, third], lead)


def test_the_mixed_project_is_what_its_table_says():
    counted = {name: 0 for name in reference.SHOWN}
    for _votes, _gold, kind, _label in MIXED_REFERENCE.values():
        if kind is not None:
            counted[kind] += 1
    assert counted == EXPECTED


def test_the_report_counts_each_reference_kind_and_a_single_label_is_no_majority(project, mixed):
    section = reports.report_build(project=project, n_boot=10)["criteria"]["acceptable"]
    consensus = section["consensus"]
    assert {name: consensus[f"n_{name}"] for name in reference.SHOWN} == EXPECTED
    # Every item with a label or a gold label, the gold-only one included; the split is the one to adjudicate.
    assert consensus["n_items"] == 9 and consensus["n_needs_adjudication"] == 1
    assert consensus["needs_adjudication"] == [mixed["two-split"].pk]
    assert "strict majority of two or more labels, else the single label" in consensus["reference"]
    # The figures are computed on the 5 items with two or more labels, not on the 8 labeled items.
    human = section["human"]
    assert human["n_items"] == 8 and human["ratings_per_item"] == {"2": 3, "3": 2}
    assert {human[name]["n"] for name in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha")} == {5}


def test_the_agreement_page_names_and_counts_each_kind(client, project, lead, mixed):
    reports.report_refresh(project=project, force=True, n_boot=10)
    client.force_login(lead)
    page = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    assert "settled by majority" not in page
    assert (
        "Reference label of the 9 labeled items: <strong>3</strong> gold (a lead's label), <strong>3</strong> majority "
        "(two or more labels, a strict majority), <strong>2</strong> single (one label), <strong>1</strong> unsettled"
    ) in page
    assert "2 items with a single label and no gold label (in no agreement figure)" in page


def test_a_report_stored_before_kinds_were_counted_says_so(client, project, lead, mixed):
    stored = reports.report_refresh(project=project, force=True, n_boot=10)
    consensus = stored.data["criteria"]["acceptable"]["consensus"]
    for name in ("single", "unsettled"):
        del consensus[f"n_{name}"]
    consensus["n_majority"] = 5  # as the old report counted: single labels as majorities
    stored.save(update_fields=["data"])
    client.force_login(lead)
    page = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    assert "5 items with a majority (single labels included)" in page and "counts single labels apart" in page


def test_the_dashboard_shows_the_n_of_each_figure_not_the_item_count(client, project, lead, mixed):
    reports.report_refresh(project=project, force=True, n_boot=10)
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    table = page[page.index("Agreement per criterion") :]
    table = table[: table.index("</table>")]
    row = table[table.index(">Acceptable<") :]
    row = row[: row.index("</tr>")]
    # α, κ and percent agreement, each with the 5 items it is computed on; no column of the 9 items beside them.
    assert re.findall(r'class="muted small figure-n">([^<]*)<', row) == ["n=5", "n=5", "n=5"]
    assert ">Items<" not in table


def test_export_rows_name_the_kind_of_each_reference(project, mixed):
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(criteria=("acceptable",)))
    rows = {row["external_id"]: row["labels"]["acceptable"] for row in map(json.loads, export.lines())}
    assert set(rows) == set(MIXED_REFERENCE)
    for name, (votes, _gold, kind, label) in MIXED_REFERENCE.items():
        assert (rows[name]["source"], rows[name]["reference"], rows[name]["n_labels"]) == (kind, label, len(votes))


def test_csv_rows_and_the_consensus_filter_use_the_same_kinds(project, mixed):
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    options = exports.ExportOptions(fmt="csv", criteria=("acceptable",), consensus_only=True)
    export = exports.export_prepare(project=project, options=options)
    rows = list(csv.DictReader(io.StringIO("".join(export.lines()))))
    by_id = {row["external_id"]: row["acceptable.source"] for row in rows}
    # Every item with a reference label, single labels included (an export has no judge to turn them off).
    assert by_id == {name: kind for name, (_v, _g, kind, label) in MIXED_REFERENCE.items() if label is not None}
    assert export.manifest["counts"]["items_filtered_out"] == 2  # the split and the unlabeled item
