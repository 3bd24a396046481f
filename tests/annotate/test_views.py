"""Login, roles and the object-level access rule: an outsider gets 404, exactly as for a missing project."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.models import Project
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_login_page_logs_a_user_in_and_a_wrong_password_is_refused(client, lead):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b"Log in" in page.content
    wrong = client.post(reverse("login"), {"username": lead.username, "password": "nope"})
    assert wrong.status_code == 200 and b"Please enter a correct username and password" in wrong.content
    ok = client.post(reverse("login"), {"username": lead.username, "password": PASSWORD})
    assert ok.status_code == 302 and ok.url == reverse("home")


def test_pages_need_a_login(client, project):
    for url in (reverse("home"), reverse("project_detail", args=[project.slug])):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_logout_is_a_post_and_ends_the_session(client, lead):
    client.force_login(lead)
    assert client.get(reverse("logout")).status_code == 405
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_the_home_page_lists_projects_by_role(client, project, lead, annotator, outsider):
    client.force_login(lead)
    page = client.get(reverse("home")).content.decode()
    assert "Projects you lead" in page and project.name in page and "Projects you label" not in page
    client.force_login(annotator)
    page = client.get(reverse("home")).content.decode()
    assert "Projects you label" in page and project.name in page and "Projects you lead" not in page
    client.force_login(outsider)
    assert project.name not in client.get(reverse("home")).content.decode()


def test_an_outsider_gets_404_for_a_project_as_for_one_that_does_not_exist(client, project, outsider):
    client.force_login(outsider)
    assert client.get(reverse("project_detail", args=[project.slug])).status_code == 404
    assert client.get(reverse("project_detail", args=["no-such-project"])).status_code == 404
    response = client.post(reverse("project_status", args=[project.slug]), {"status": "archived"})
    assert response.status_code == 404
    assert Project.objects.get(pk=project.pk).status == "draft"


def test_an_annotator_sees_the_project_but_not_the_leads_controls(client, project, annotator):
    client.force_login(annotator)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "How this project works" in page and "Save status" not in page and "Members" not in page
    response = client.post(reverse("project_status", args=[project.slug]), {"status": "archived"})
    assert response.status_code == 404
    assert Project.objects.get(pk=project.pk).status == "draft"


def test_a_lead_activates_a_project_and_is_told_why_when_it_cannot_be(client, lead):
    from tests.factories import DEFAULT_CRITERIA, ProjectFactory, membership

    small = ProjectFactory(slug="small", criteria=DEFAULT_CRITERIA[:2])
    membership(lead, small, "lead")
    client.force_login(lead)
    response = client.post(reverse("project_status", args=["small"]), {"status": "active"}, follow=True)
    assert "needs at least 3 measurable criteria" in response.content.decode()
    assert Project.objects.get(slug="small").status == "draft"
    response = client.post(reverse("project_status", args=["support-bot"]), {"status": "active"})
    assert response.status_code == 302
    assert Project.objects.get(slug="support-bot").status == "active"


def test_the_status_form_answers_htmx_with_just_its_card(client, lead, project):
    client.force_login(lead)
    response = client.post(
        reverse("project_status", args=[project.slug]), {"status": "active"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="status-card"') and "<html" not in body
    assert "Active" in body


def test_the_project_page_answers_htmx_and_plain_requests_alike(client, lead, project):
    client.force_login(lead)
    url = reverse("project_detail", args=[project.slug])
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 200
    assert client.get(url).status_code == 200


def test_user_text_is_escaped_and_markdown_is_sanitized(client, lead, project):
    project.name = '<script>alert("name")</script>'
    project.instructions = (
        "<img src=x onerror=alert(1)> [click](javascript:alert(2)) **bold** <script>alert(3)</script>"
    )
    project.save()
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in page
    assert "<img" not in page
    assert 'href="javascript' not in page
    assert "<strong>bold</strong>" in page


def test_every_page_carries_an_enforced_content_security_policy_without_inline_script(client, lead):
    client.force_login(lead)
    response = client.get(reverse("home"))
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_healthz_reports_the_database_and_redis_latency_and_breaker(client, db):
    health = client.get(reverse("healthz")).json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["redis"]["status"] == "ok" and health["redis"]["breaker"] == "closed"
    assert 0 <= health["redis"]["latency_ms"] < 1000


def test_logins_are_throttled_after_repeated_failures(client, lead, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        response = client.post(reverse("login"), {"username": lead.username, "password": "wrong"})
        assert response.status_code == 200
    # The third failure reaches the limit: from now on even the right password is refused for a while.
    assert client.post(reverse("login"), {"username": lead.username, "password": "wrong"}).status_code == 429
    locked = client.post(reverse("login"), {"username": lead.username, "password": PASSWORD})
    assert locked.status_code == 429
    assert client.get(reverse("home")).status_code == 302  # the right password did not get in while locked out
