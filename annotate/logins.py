"""Logging in: the client's address behind a reverse proxy, and throttling that slows an account's owner down
instead of letting anyone lock them out.

Two throttles, kept apart:
- Per address (django-axes, AXES_LOCKOUT_PARAMETERS = ["ip_address"]): AXES_FAILURE_LIMIT failed logins from one
  client address, whatever the usernames, and that address is refused (429) for AXES_COOLOFF_MINUTES. The address is
  the proxy's X-Forwarded-For entry when BEHIND_PROXY is set (client_ip below), else REMOTE_ADDR: behind a proxy,
  REMOTE_ADDR is the proxy's own address for every client.
- Per username, from every address together: after LOGIN_SLOWDOWN_AFTER failures within the cool-off window, each
  further attempt must wait a delay that doubles with every failure, up to LOGIN_SLOWDOWN_MAX_SECONDS, after the last
  failure; attempts during the wait are answered 429 with the time left and never reach the password check. So a
  guesser spread over many addresses gets a handful of tries a minute, and the owner, whom someone else's wrong
  passwords slow down, waits at most that long and is never locked out. A browser that logged into the account
  before carries a signed cookie naming it (OWASP's "device cookie"), and skips the wait altogether.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core import signing
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

DEVICE_COOKIE = "annotate_device"
_DEVICE_SALT = "annotate.logins.device"


def client_ip(request: HttpRequest) -> str:
    """The client's address (AXES_CLIENT_IP_CALLABLE). Behind PROXY_COUNT proxies that each append the address they
    saw to X-Forwarded-For (nginx's $proxy_add_x_forwarded_for), the client is the PROXY_COUNT-th entry from the
    right; entries further left came from the client and can say anything. Without BEHIND_PROXY, REMOTE_ADDR."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    if not settings.BEHIND_PROXY:
        return remote
    hops = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",") if part.strip()]
    count = int(settings.PROXY_COUNT)
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote


def username_wait_seconds(username: str, *, now: dt.datetime | None = None) -> int:
    """Seconds the next login attempt for `username` must wait (0: none), from the failures axes recorded for it
    within the cool-off window, from any address."""
    if not username:
        return 0
    now = now or timezone.now()
    window = settings.AXES_COOLOFF_TIME
    found = AccessAttempt.objects.filter(username=username, attempt_time__gte=now - window).aggregate(
        failures=Sum("failures_since_start"), last=Max("attempt_time")
    )
    over = (found["failures"] or 0) - int(settings.LOGIN_SLOWDOWN_AFTER)
    if over < 0 or found["last"] is None:
        return 0
    delay = min(2**over, int(settings.LOGIN_SLOWDOWN_MAX_SECONDS))
    left = (found["last"] + dt.timedelta(seconds=delay) - now).total_seconds()
    return math.ceil(left) if left > 0 else 0


def known_device(request: HttpRequest, username: str) -> bool:
    """True when this browser logged into `username` before (its signed device cookie names that account)."""
    try:
        remembered = request.get_signed_cookie(
            DEVICE_COOKIE, salt=_DEVICE_SALT, max_age=dt.timedelta(days=int(settings.LOGIN_DEVICE_COOKIE_DAYS))
        )
    except (KeyError, signing.BadSignature):
        return False
    return bool(username) and remembered == username


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = str(request.POST.get("username") or "")[:150]
        wait = 0 if known_device(request, username) else username_wait_seconds(username)
        if not wait:
            return super().post(request, *args, **kwargs)
        # Not even checked: the password check is what the wait protects. An unbound form: a bound one would run it.
        form = self.get_form_class()(request, initial={"username": username})
        message = (
            f"Too many failed logins for this account. Wait {wait} second{'s' if wait != 1 else ''} and try again "
            "(each failure makes the wait longer, up to a minute or so; a browser that logged in here before "
            "does not wait)."
        )
        response = self.render_to_response(self.get_context_data(form=form, slowed=message), status=429)
        response["Retry-After"] = str(wait)
        return response

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        response.set_signed_cookie(
            DEVICE_COOKIE,
            form.get_user().get_username(),
            salt=_DEVICE_SALT,
            max_age=int(settings.LOGIN_DEVICE_COOKIE_DAYS) * 24 * 3600,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
        return response
