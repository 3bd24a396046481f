"""What a request asks for, read in one place for the views of both apps."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails


class HtmxRequest(HttpRequest):
    """A request after HtmxMiddleware: what views that render fragments annotate `request` with."""

    htmx: HtmxDetails


class AuthedRequest(HtmxRequest):
    """A request of a signed-in user: for views behind `login_required` (or an access helper that implies it), so
    `request.user` is a `User` for the type checker, not `User | AnonymousUser`."""

    user: User


# The request headers wants_partial reads: a response depends on them.
HTMX_HEADERS = ("HX-Request", "HX-History-Restore-Request", "HX-Target")


def wants_partial(request: HttpRequest) -> bool:
    """True when htmx sent the request and will swap the answer into the page: render the fragment, not the page.

    After a history-cache miss (the Back button) htmx 2 asks for the URL again with `HX-Request` and
    `HX-History-Restore-Request` and puts the answer in place of the whole page, so that request gets the whole page.
    Works before HtmxMiddleware has run too (the outage middleware answers from above it).
    """
    details = getattr(request, "htmx", None)
    if not isinstance(details, HtmxDetails):
        details = HtmxDetails(request)
    return bool(details) and not details.history_restore_request


def partial_target(request: HttpRequest) -> str | None:
    """The id of the element an htmx request will swap its answer into (None for a page request)."""
    if not wants_partial(request):
        return None
    details = getattr(request, "htmx", None)
    if not isinstance(details, HtmxDetails):
        details = HtmxDetails(request)
    return details.target


class VaryOnHtmxMiddleware:
    """Say that responses depend on the htmx headers (`Vary`), so that no cache, the browser's included, hands a
    fragment it kept for an htmx request to a request for the page (a Back button after htmx swapped a fragment in),
    or the reverse. Place it after HtmxMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        patch_vary_headers(response, HTMX_HEADERS)
        return response
