"""A model served by the stand-in costs $0, whatever its name (issue 16: a stand-in version named gpt-4o was shown
at gpt-4o's prices)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from judges import llm, selectors
from judges.models import JudgeRun, RunChunk
from judges.services import judge_runs, run_chunks
from tests.judges.conftest import make_item, make_version

pytestmark = pytest.mark.django_db

PRICED_MODEL = "gpt-4o-2024-08-06"  # in the default JUDGE_PRICES


def _run_here(version) -> JudgeRun:
    run = judge_runs.judge_run_start(version=version, scope="dev")
    for chunk in RunChunk.objects.filter(run=run).order_by("number"):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


def test_a_stand_in_version_named_like_a_priced_model_costs_nothing(client, lead, project, judge, standin, settings):
    assert PRICED_MODEL in settings.JUDGE_PRICES
    make_item(project, 1)
    version = make_version(judge, model=PRICED_MODEL)
    assert version.uses_standin
    run = _run_here(version)
    assert Decimal(run.estimate["cost_max"]) == 0 and run.price_in == run.price_out == 0
    totals = selectors.run_totals(run=run)
    assert totals.tokens_in > 0 and totals.cost == 0
    client.force_login(lead)
    for url in (
        reverse("judges:version_detail", args=[project.slug, version.pk]),
        reverse("judges:run_detail", args=[project.slug, run.pk]),
        reverse("judges:judge_detail", args=[project.slug, judge.pk]),
    ):
        page = client.get(url).content.decode()
        assert "$0 (stand-in)" in page, url
        assert "$0.0" not in page and "$0.00" not in page, url


def test_an_old_stand_in_run_stored_at_a_model_price_counts_as_free(project, judge, standin):
    make_item(project, 1)
    run = _run_here(make_version(judge, model=PRICED_MODEL))
    JudgeRun.objects.filter(pk=run.pk).update(price_in=Decimal("2.5"), price_out=Decimal("10"))
    run.refresh_from_db()
    assert selectors.run_totals(run=run).cost == 0


def test_an_endpoint_configured_at_the_stand_in_url_is_the_stand_in(project, judge, standin, settings):
    settings.JUDGE_ENDPOINTS = [
        {"name": "local", "base_url": f"http://localhost:{standin.port}/v1"},
        {"name": "elsewhere", "base_url": f"http://127.0.0.1:{standin.port + 1}/v1"},
    ]
    assert llm.is_standin("standin") and llm.is_standin("local")
    assert not llm.is_standin("elsewhere") and not llm.is_standin("missing")
    assert selectors.price_for(PRICED_MODEL, endpoint="local") == (0, 0)
    assert selectors.price_for(PRICED_MODEL, endpoint="elsewhere") == (Decimal("2.5"), Decimal("10.0"))
    assert make_version(judge, endpoint="local").uses_standin


def test_the_same_model_on_a_real_endpoint_keeps_its_price(project, judge, priced):
    make_item(project, 1)
    version = make_version(judge, endpoint=priced, model=PRICED_MODEL)
    assert not version.uses_standin
    run = _run_here(version)
    assert (run.price_in, run.price_out) == (Decimal("2.5"), Decimal("10"))
    assert selectors.run_totals(run=run).cost > 0
