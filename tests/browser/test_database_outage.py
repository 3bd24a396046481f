"""The database goes down while an annotator submits, in a real browser: a real outage, not a mocked response.

The app runs under gunicorn on a throwaway PostgreSQL cluster (tests/faults/harness.py), never the shared one. The
submit meets the stopped cluster and gets the 503 retry message; the form stays on screen with every choice and the
note, with the message next to it; once the cluster is back, the same form is submitted again and saved exactly once.
"""

from __future__ import annotations

import psycopg
from playwright.sync_api import Page, expect

from annotate.middleware import RETRY_MESSAGE
from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD
from tests.faults import conftest as faults

# The fault tests' fixtures: a throwaway cluster, static files, the app under gunicorn on that cluster.
throwaway_postgres = faults.throwaway_postgres
collected_static = faults.collected_static
app_on_throwaway_postgres = faults.app_on_throwaway_postgres


def _labels(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
        return conn.execute(
            "SELECT c.key, l.value, l.note FROM annotate_label l JOIN annotate_criterion c ON c.id = l.criterion_id "
            "ORDER BY c.position"
        ).fetchall()


def test_a_submit_during_a_database_outage_keeps_the_form_filled_and_succeeds_on_retry(
    page: Page, app_on_throwaway_postgres
):
    cluster, server, seeded = app_on_throwaway_postgres
    page.set_default_timeout(30_000)  # a gunicorn under a loaded machine, not live_server
    page.goto(server.url + "/login/")
    page.fill("#id_username", "ada-annotator")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(server.url + f"/p/{seeded['project']}/label/")
    form = page.locator("#current form.item-form")
    expect(form).to_be_visible()
    item = form.get_attribute("data-item")
    # Choose by keyboard as annotators do: pass, fail, pass; then a note.
    for key in ("1", "2", "1"):
        page.keyboard.press(key)
    page.locator("#current textarea[name=note]").fill("The date is wrong.")
    chosen = {"acceptable": "pass", "follows_instructions": "fail", "factually_correct": "pass"}

    cluster.stop()
    page.locator("#current button.submit").click()

    message = page.locator("#current form.item-form .form-error")
    expect(message).to_have_text(RETRY_MESSAGE, timeout=20_000)
    expect(message).to_be_in_viewport()
    # The same item's form is back, filled in as it was.
    form = page.locator("#current form.item-form")
    expect(form).to_have_attribute("data-item", item or "")
    for key, value in chosen.items():
        expect(form.locator(f"input[name='c-{key}'][value='{value}']")).to_be_checked()
    expect(form.locator("textarea[name=note]")).to_have_value("The date is wrong.")
    screenshot(page, "label-database-outage")

    cluster.start()
    page.locator("#current button.submit").click()
    # Saved once, with the values chosen before the outage; the next item comes up and the message goes.
    page.wait_for_function(
        "(item) => document.querySelector('#current form.item-form')?.dataset.item !== item", arg=item
    )
    expect(page.locator("#current form.item-form .form-error")).to_be_hidden()
    deadline = 50
    while len(_labels(cluster.url)) < 3 and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    stored = _labels(cluster.url)
    assert sorted((k, v) for k, v, _ in stored) == sorted(chosen.items())
    assert {note for _, _, note in stored} == {"The date is wrong."}
