"""Login throttling behind a reverse proxy: per client address (from the proxy's X-Forwarded-For when BEHIND_PROXY
says so) and per username from all addresses, where the owner is slowed down, never locked out by someone else."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory
from django.urls import reverse

from annotate import logins
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PROXY = "127.0.0.1"  # every request reaches the app from the proxy's address


@pytest.fixture
def behind_proxy(settings):
    settings.BEHIND_PROXY = True
    settings.PROXY_COUNT = 1


def _login(client, username: str, password: str, address: str):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        # What nginx's $proxy_add_x_forwarded_for sends: whatever the client claimed, then the address it saw.
        HTTP_X_FORWARDED_FOR=f"10.9.9.9, {address}",
    )


def _rewind(seconds: float) -> None:
    """As if the recorded failures happened `seconds` earlier."""
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= dt.timedelta(seconds=seconds)
        attempt.save(update_fields=["attempt_time"])


def test_the_client_address_is_taken_from_the_proxys_forwarded_for_only_behind_a_proxy(settings):
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    settings.BEHIND_PROXY, settings.PROXY_COUNT = False, 1
    assert logins.client_ip(request) == PROXY  # a client's header is never trusted without a proxy
    settings.BEHIND_PROXY = True
    assert logins.client_ip(request) == "203.0.113.9"  # the entry our proxy appended
    settings.PROXY_COUNT = 2
    assert logins.client_ip(request) == "6.6.6.6"  # two proxies: the one the outer proxy appended
    settings.PROXY_COUNT = 3
    assert logins.client_ip(request) == PROXY  # fewer entries than proxies: not a proxied request
    settings.PROXY_COUNT = 1
    forged = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="1.1.1.1, <script>")
    assert logins.client_ip(forged) == PROXY


def test_someone_elses_wrong_passwords_through_the_proxy_never_lock_the_owner_out(client, lead, behind_proxy):
    for _ in range(30):  # far past every limit, from one address, then from many
        _login(client, lead.username, "wrong", "203.0.113.66")
    for n in range(20):
        _login(client, lead.username, "wrong", f"198.18.0.{n}")
    # The owner, from their own address: slowed down for at most a minute, told so, and never checked meanwhile.
    slowed = _login(client, lead.username, PASSWORD, "198.51.100.7")
    assert slowed.status_code == 429
    wait = int(slowed["Retry-After"])
    assert 0 < wait <= 60 and f"Wait {wait} second" in slowed.content.decode()
    _rewind(wait)
    owner = _login(client, lead.username, PASSWORD, "198.51.100.7")
    assert owner.status_code == 302 and owner.url == reverse("home")


def test_a_browser_that_logged_in_before_skips_the_wait(client, lead, behind_proxy):
    assert _login(client, lead.username, PASSWORD, "198.51.100.7").status_code == 302
    client.post(reverse("logout"))
    for n in range(15):
        _login(client.__class__(), lead.username, "wrong", f"198.18.1.{n}")  # another browser each time
    assert _login(client.__class__(), lead.username, PASSWORD, "198.51.100.8").status_code == 429
    assert _login(client, lead.username, PASSWORD, "198.51.100.7").status_code == 302


def test_the_wait_doubles_with_each_failure(client, lead, behind_proxy, settings):
    settings.LOGIN_SLOWDOWN_AFTER, settings.LOGIN_SLOWDOWN_MAX_SECONDS = 2, 60
    waits = []
    for n in range(8):
        response = _login(client, lead.username, "wrong", f"198.18.2.{n}")
        if response.status_code == 429:
            waits.append(int(response["Retry-After"]))
            _rewind(waits[-1])  # the wait passes; the next attempt is checked, fails and counts
    assert waits == [1, 2, 4]


def test_one_address_is_refused_after_the_limit_whatever_the_usernames(client, lead, annotator, behind_proxy, settings):
    settings.AXES_FAILURE_LIMIT = 5
    for n in range(5):
        _login(client, f"nobody-{n}", "wrong", "203.0.113.66")
    refused = _login(client, annotator.username, PASSWORD, "203.0.113.66")
    assert refused.status_code == 429
    # Everyone else, behind the same proxy, logs in as usual.
    assert _login(client, lead.username, PASSWORD, "198.51.100.7").status_code == 302
