"""A real browser: the lead imports a file (upload, htmx preview, confirm), creates an API token, and the API docs
render from local files under the enforced Content-Security-Policy."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotate import ratelimit, samples
from annotate.models import ApiToken, Item, ProductionRecord
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_lead_uploads_items_sees_the_preview_and_confirms_by_click(page: Page, live_server, project, lead, tmp_path):
    ratelimit.reset(f"import:{lead.pk}", per_seconds=3600)
    rows = [{"external_id": f"t-{i}", "input": f"Where is order {i}?", "output": "On its way."} for i in range(3)]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"input": "no output"}\n')
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.goto(live_server.url + reverse("project_detail", args=[project.slug]))
    page.get_by_role("link", name="Import items").click()
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#job")).to_contain_text("1 bad row: nothing was imported")
    expect(page.locator("#job")).to_contain_text("missing field")
    screenshot(page, "import-refused")

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page.goto(live_server.url + reverse("import_start", args=[project.slug]))
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#job")).to_contain_text("3 new items would be added")
    expect(page).to_have_url(re.compile(rf"/p/{project.slug}/import/\d+/$"))  # htmx pushed the job's own URL
    expect(page.locator("#import-jobs")).to_contain_text("items.jsonl")  # the card lists the upload, no reload
    screenshot(page, "import-preview")
    assert not Item.objects.exists()
    page.get_by_role("button", name="Import 3 new items").click()
    expect(page.locator("#job")).to_contain_text("3 new items added")
    expect(page.locator("#import-jobs li").first).to_contain_text("Imported")
    screenshot(page, "import-done")
    assert Item.objects.filter(project=project).count() == 3
    assert csp_problems(page) == [] and console_errors(page) == []

    # Yesterday's production records become today's sample, shown on the lead's dashboard with its drift check.
    samples.records_receive(
        project=project, rows=enumerate({"input": f"Production question {i} " * 8, "output": "ok"} for i in range(30))
    )
    ProductionRecord.objects.update(received_on=timezone.localdate() - dt.timedelta(days=1))
    samples.sample_take(project=project, day=timezone.localdate())
    page.goto(live_server.url + reverse("project_detail", args=[project.slug]))
    expect(page.get_by_role("heading", name="Today's sample")).to_be_visible()
    expect(page.locator("#sample-progress")).to_have_attribute("max", "30")
    screenshot(page, "project-today-sample")


def test_a_user_creates_a_token_shown_once_and_the_api_docs_render_under_the_csp(page: Page, live_server, lead):
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("nightly pipeline")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token")
    expect(token).to_contain_text("ann_")
    assert ApiToken.objects.get(user=lead).name == "nightly pipeline"
    screenshot(page, "tokens")
    page.goto(live_server.url + "/api/v1/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("annotate API")
    expect(page.get_by_text("/api/v1/projects/{slug}/items")).to_be_visible()
    screenshot(page, "api-docs")
    assert csp_problems(page) == []
