"""The production-quality page (PPI++ beside human-only and Rogan–Gladen, release comparison) and the run page's
judge bias probe, on a run of the stand-in judge (which fails every output containing "WRONG") over daily-sample
items with gold labels. The figures are recomputed here from the design, independently of the page's selectors."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from annotate import selectors as annotate_selectors
from annotate.models import GoldLabel, Item
from judges import estimates
from judges.models import JudgeRun, RunChunk
from judges.services import judge_runs, judge_versions, run_chunks
from judges.templatetags.judges_format import estimate as estimate_tag
from tests.judges.conftest import make_item

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}

# (human label, judge says pass, release, labeled?, how many). The judge fails what contains "WRONG".
DESIGN = [
    ("pass", True, "v1", True, 20),
    ("pass", False, "v1", True, 4),
    ("fail", False, "v1", True, 6),
    ("fail", True, "v1", True, 3),
    ("pass", True, "v2", True, 14),
    ("pass", False, "v2", True, 3),
    ("fail", False, "v2", True, 12),
    ("fail", True, "v2", True, 2),
    ("pass", True, "v1", False, 30),
    ("pass", False, "v1", False, 12),
    ("pass", True, "v2", False, 20),
    ("pass", False, "v2", False, 18),
]


def _run(project, version) -> JudgeRun:
    run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.ALL)
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def production_run(project, version, lead, standin) -> JudgeRun:
    standin.configure(rule="keyword")
    criterion = annotate_selectors.criteria_current(project=project).get(key="acceptable")
    n = 0
    for human, judge_pass, release, labeled, count in DESIGN:
        for _ in range(count):
            n += 1
            word = "fine" if judge_pass else "WRONG"
            # Lengths grow with n, so the probe has a covariate; they are unrelated to the verdict by design.
            item = make_item(project, n, input=f"Question {n}?", output=f"Answer {n} {word}." + " x" * (n % 7))
            Item.objects.filter(pk=item.pk).update(source=Item.Source.SAMPLE, metadata={"release": release})
            if labeled:
                GoldLabel.objects.create(item=item, criterion=criterion, value=human, set_by=lead)
    # Hand-imported items are not production traffic: labeled and judged, but left out of the pass rates.
    for k in range(5):
        item = make_item(project, 1000 + k, input="Imported?", output="Imported WRONG.")
        GoldLabel.objects.create(item=item, criterion=criterion, value="pass", set_by=lead)
    return _run(project, version)


def _arrays(rows):
    y = np.array([1.0 if h == "pass" else 0.0 for h, _, _, lab, c in rows if lab for _ in range(c)])
    f_lab = np.array([1.0 if j else 0.0 for _, j, _, lab, c in rows if lab for _ in range(c)])
    f_unl = np.array([1.0 if j else 0.0 for _, j, _, lab, c in rows if not lab for _ in range(c)])
    return y, f_lab, f_unl


def test_the_page_shows_ppi_beside_human_only_and_rogan_gladen_with_the_records_each_uses(
    client, lead, project, production_run
):
    client.force_login(lead)
    page = client.get(reverse("judges:run_production", args=[project.slug, production_run.pk])).content.decode()
    y, f_lab, f_unl = _arrays(DESIGN)
    assert (y.size, f_unl.size) == (64, 80)
    ppi, human = estimates.ppi_mean(y, f_lab, f_unl), estimates.human_mean(y)
    assert "64 human-labeled + 80 judged only" in page
    assert str(estimate_tag(ppi)) in page
    assert str(estimate_tag(human)) in page
    assert "Rogan–Gladen" in page and "144</strong> production records" in page
    # The five imported items are not counted anywhere.
    assert "149" not in page


def test_comparing_two_releases_shows_the_corrected_difference(client, lead, project, production_run):
    client.force_login(lead)
    url = reverse("judges:run_production", args=[project.slug, production_run.pk])
    response = client.get(url, {"field": "release", "a": "v1", "b": "v2"}, headers=HX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="compare">') and "<html" not in body
    sides = [_arrays([r for r in DESIGN if r[2] == release]) for release in ("v1", "v2")]
    a, b = (estimates.ppi_mean(*side) for side in sides)
    assert a.value is not None and b.value is not None
    assert str(estimate_tag(estimates.difference(a, b), True)) in body
    assert "33 human-labeled + 42 judged only" in body and "31 human-labeled + 38 judged only" in body


def test_a_bad_comparison_is_a_clear_error_and_the_page_still_shows(client, lead, project, production_run):
    client.force_login(lead)
    url = reverse("judges:run_production", args=[project.slug, production_run.pk])
    page = client.get(url, {"field": "nope", "a": "v1", "b": "v2"}).content.decode()
    assert "Choose a metadata field" in page and "64 human-labeled" in page
    same = client.get(url, {"field": "release", "a": "v1", "b": "v1"}, headers=HX).content.decode()
    assert "two different values" in same


def test_user_text_in_the_comparison_is_escaped(client, lead, project, production_run):
    client.force_login(lead)
    url = reverse("judges:run_production", args=[project.slug, production_run.pk])
    page = client.get(url, {"field": "release", "a": "<script>x</script>", "b": "v2"}).content.decode()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def test_annotators_and_outsiders_get_404(client, annotator, outsider, project, production_run):
    url = reverse("judges:run_production", args=[project.slug, production_run.pk])
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(url).status_code == 404


def test_the_run_page_shows_the_bias_probe_with_its_n_and_a_sentence(client, lead, project, production_run):
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, production_run.pk])).content.decode()
    assert "Judge bias probe" in page
    # Every item with a verdict and a gold label: 64 sample items and 5 imported ones.
    assert "over the 69 items of this run with both" in page
    assert "output length (+1 SD)" in page
    assert "Production quality" in page
    probed = client.get(
        reverse("judges:run_detail", args=[project.slug, production_run.pk]), {"probe_field": "release"}
    ).content.decode()
    assert "release = v1" in probed or "release = v2" in probed


def test_a_pairwise_project_is_told_the_page_is_for_pass_fail_criteria(client, standin):
    from judges.models import Judge
    from tests.factories import ProjectFactory, UserFactory, membership
    from tests.judges.conftest import make_version

    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    boss = UserFactory(username="pair-lead")
    membership(boss, pairwise, "lead")
    make_item(pairwise, 1)
    judge = judge_versions.judge_create(project=pairwise, criterion_key="acceptable", actor=boss)
    run = _run(pairwise, make_version(Judge.objects.get(pk=judge.pk)))
    client.force_login(boss)
    page = client.get(reverse("judges:run_production", args=[pairwise.slug, run.pk])).content.decode()
    assert "for pass/fail criteria" in page and "production-rates" not in page
    run_page = client.get(reverse("judges:run_detail", args=[pairwise.slug, run.pk])).content.decode()
    assert "Judge vs humans" in run_page and "Judge bias probe" not in run_page


def test_the_bias_probe_on_the_page_is_fitted_on_the_items_with_a_verdict_and_a_reference(
    client, lead, project, production_run
):
    from judges.models import Verdict

    gold = dict(GoldLabel.objects.values_list("item_id", "value"))
    rows = Verdict.objects.filter(run=production_run, status="ok").values_list("item_id", "value", "item__output")
    picked = [(v == "pass", gold[i] == "pass", len(out)) for i, v, out in rows if i in gold]
    verdict, human, length = (np.array(col, dtype=float) for col in zip(*picked, strict=True))
    z = (length - length.mean()) / length.std()
    effect = estimates.bias_probe(verdict, human, {"length": z}).effects[0]
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, production_run.pk])).content.decode()
    assert len(picked) == 69
    assert str(estimate_tag(effect, True)) in page
