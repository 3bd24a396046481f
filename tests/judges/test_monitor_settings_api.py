"""The daily monitor's settings through the token API: GET/PUT /api/v1/projects/<slug>/monitor/settings, checked by
the same service as the monitor page (judges.monitor.monitor_check), all or nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from annotate import tokens
from judges import monitor
from judges.models import Monitor, MonitorDay
from judges.services import judge_versions
from tests.judges.conftest import make_version
from tests.judges.monitor_data import calibrated_version, seed_day

URL = "/api/v1/projects/support-bot/monitor/settings"
DAY = dt.date(2026, 11, 10)


@pytest.fixture
def calibrated(project, standin):
    standin.configure(rule="keyword")
    return calibrated_version(project)


def _auth(user) -> dict[str, str]:
    _row, raw = tokens.token_create(user=user, name="settings")
    return {"Authorization": f"Bearer {raw}"}


def _put(client, user, *criteria):
    return client.put(URL, {"criteria": list(criteria)}, content_type="application/json", headers=_auth(user))


def _snapshot() -> list[tuple]:
    return list(
        Monitor.objects.order_by("pk").values_list(
            "version_id", "daily_budget_usd", "threshold", "daily_sample_cap", "enabled"
        )
    )


@pytest.mark.django_db
def test_a_lead_sets_and_reads_the_monitor_through_the_api(client, project, lead, calibrated):
    assert client.get(URL, headers=_auth(lead)).json() == {"criteria": []}
    entry = {
        "criterion_key": "acceptable",
        "version_id": calibrated.pk,
        "daily_budget_usd": "1.25",
        "threshold": 0.8,
        "daily_sample_cap": 25,
        "enabled": True,
    }
    response = _put(client, lead, entry)
    assert response.status_code == 200, response.content
    (got,) = response.json()["criteria"]
    assert got["criterion_key"] == "acceptable" and got["version_id"] == calibrated.pk and got["version"] == 1
    assert (got["daily_budget_usd"], got["threshold"], got["daily_sample_cap"], got["enabled"]) == (
        "1.2500",
        0.8,
        25,
        True,
    )
    m = Monitor.objects.get()
    assert (m.daily_budget_usd, m.threshold, m.daily_sample_cap, m.enabled, m.updated_by) == (
        Decimal("1.25"),
        0.8,
        25,
        True,
        lead,
    )
    assert client.get(URL, headers=_auth(lead)).json()["criteria"] == [got]
    (shown,) = client.get("/api/v1/projects/support-bot/monitor", headers=_auth(lead)).json()["criteria"]
    assert (shown["daily_budget_usd"], shown["daily_sample_cap"], shown["threshold"]) == ("1.2500", 25, 0.8)
    # Off, and back to every record with no alert: empty values clear.
    off = _put(client, lead, {"criterion_key": "acceptable", "version_id": calibrated.pk, "enabled": False})
    assert off.status_code == 200
    m.refresh_from_db()
    assert (m.daily_budget_usd, m.threshold, m.daily_sample_cap, m.enabled) == (None, None, None, False)


@pytest.mark.django_db
def test_the_sample_cap_limits_the_day_to_a_seeded_random_sample(project, lead, calibrated):
    seed_day(project, DAY, wrong_share=0.5)
    m = monitor.monitor_set(
        judge=calibrated.judge, version=calibrated, daily_budget_usd=None, threshold=None, daily_sample_cap=12
    )
    row = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert isinstance(row, MonitorDay)
    assert (row.n_records, row.n_sampled, row.n_called) == (40, 12, 12)
    assert row.sample_note == "a random 12 of 40 records (the daily sample cap)"


@pytest.mark.django_db
def test_annotators_and_other_projects_tokens_get_404_and_no_token_401(
    client, project, lead, annotator, outsider, calibrated
):
    # An annotator gets the same 404 as on every lead page and lead API call (README, Security): the monitor's
    # settings are a lead's. `outsider` leads another project: their token reaches only that one.
    entry = {"criterion_key": "acceptable", "version_id": calibrated.pk, "threshold": 0.5}
    for user in (annotator, outsider):
        assert client.get(URL, headers=_auth(user)).status_code == 404
        response = _put(client, user, entry)
        assert response.status_code == 404
        assert response.json()["detail"] == "No such project."
    assert client.get(URL).status_code == 401
    assert client.put(URL, {"criteria": [entry]}, content_type="application/json").status_code == 401
    assert not Monitor.objects.exists()


@pytest.mark.django_db
def test_bad_values_answer_400_naming_each_one_and_write_nothing(client, project, lead, calibrated, standin):
    assert _put(client, lead, {"criterion_key": "acceptable", "version_id": calibrated.pk}).status_code == 200
    before = _snapshot()
    uncalibrated = make_version(calibrated.judge)
    other_judge = make_version(judge_versions.judge_create(project=project, criterion_key="factually_correct"))
    response = _put(
        client,
        lead,
        {
            "criterion_key": "acceptable",
            "version_id": calibrated.pk,
            "threshold": 1.5,
            "daily_budget_usd": "-1",
            "daily_sample_cap": 0,
        },
        {"criterion_key": "follows_instructions", "version_id": calibrated.pk},
        {"criterion_key": "acceptable", "version_id": uncalibrated.pk},
        {"criterion_key": "factually_correct", "version_id": other_judge.pk, "daily_budget_usd": "0.12345"},
        {"criterion_key": "nope", "version_id": 999_999},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "8 problems; nothing was written."
    errors = {(e["field"], e["message"]) for e in body["errors"]}
    assert errors == {
        ("criteria.0.threshold", "The threshold is a pass rate between 0 and 1."),
        ("criteria.0.daily_budget_usd", "The daily budget cannot be negative."),
        (
            "criteria.0.daily_sample_cap",
            "The daily sample cap is a number of records from 1 to 2000 (MONITOR_MAX_RECORDS); leave it empty for "
            "no cap of its own.",
        ),
        ("criteria.1.version_id", f"Version {calibrated.pk} judges 'acceptable', not 'follows_instructions'."),
        ("criteria.2.criterion_key", "This criterion is listed twice."),
        ("criteria.3.daily_budget_usd", "The daily budget has at most 4 decimal places."),
        (
            "criteria.3.version_id",
            f"Version {other_judge.number} has no finished run that compared it with items humans passed and failed: "
            "run it on dev or test items first, so that its TPR and TNR can correct its pass rate.",
        ),
        ("criteria.4.version_id", "No judge version 999999 here."),
    }
    assert _snapshot() == before


@pytest.mark.django_db
def test_an_uncalibrated_version_or_a_mistyped_value_is_refused_like_on_the_page(
    client, project, lead, calibrated, standin
):
    uncalibrated = make_version(calibrated.judge)
    response = _put(client, lead, {"criterion_key": "acceptable", "version_id": uncalibrated.pk})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "criteria.0.version_id",
            "message": f"Version {uncalibrated.number} has no finished run that compared it with items humans passed "
            "and failed: run it on dev or test items first, so that its TPR and TNR can correct its pass rate.",
        }
    ]
    typed = _put(client, lead, {"criterion_key": "acceptable", "version_id": calibrated.pk, "threshold": "high"})
    assert typed.status_code == 400
    assert [e["field"] for e in typed.json()["errors"]] == ["criteria.0.threshold"]
    missing = client.put(URL, {}, content_type="application/json", headers=_auth(lead))
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "criteria"
    assert not Monitor.objects.exists()
    # The page refuses the same values with the same messages (one service).
    page = client.post(
        f"/p/support-bot/judges/{calibrated.judge_id}/monitor/",
        {"version": calibrated.pk, "threshold": "1.5", "daily_budget_usd": "-1", "daily_sample_cap": "0"},
    )
    assert page.status_code == 302  # not logged in: the page asks for a login first
    client.force_login(lead)
    page = client.post(
        f"/p/support-bot/judges/{calibrated.judge_id}/monitor/",
        {"version": calibrated.pk, "threshold": "1.5", "daily_budget_usd": "-1", "daily_sample_cap": "0"},
    )
    assert page.status_code == 422
    text = page.content.decode()
    for message in (
        "The threshold is a pass rate between 0 and 1.",
        "The daily budget cannot be negative.",
        "The daily sample cap is a number of records from 1 to 2000",
    ):
        assert message in text
    assert not Monitor.objects.exists()
