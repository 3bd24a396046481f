"""A database outage answers 503 with a plain retry message, never a traceback or a bare 500 (so does the rare
request that cannot do without Redis while it is down: logging out).

While PostgreSQL restarts (or a failover runs) every query raises OperationalError or InterfaceError. Django turns an
uncaught exception into a 500 inside whichever layer raised it, so this middleware does not rely on seeing the
exception itself: a `got_request_exception` receiver marks the request when the exception was a database connection
error, and the middleware, placed near the top of the stack, replaces that 500 with a 503 whose body suits the
caller: for htmx requests the error partial with the message in the `label-refused` event (label.js shows it next to
the form it keeps filled in, and never reads the body), JSON for the API, a small page otherwise. Once the database
is back, CONN_HEALTH_CHECKS makes the next request reconnect: nothing has to be restarted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis.exceptions
from django.core.signals import got_request_exception
from django.db import InterfaceError, NotSupportedError, OperationalError, connection
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django_htmx.http import trigger_client_event

from annotate.http import wants_partial

log = logging.getLogger(__name__)

RETRY_MESSAGE = "The database is unavailable for a moment. Nothing was saved; please try again in a few seconds."
CACHE_RETRY_MESSAGE = "A service this needs is unavailable for a moment; please try again in a few seconds."
RETRY_AFTER_SECONDS = 5
_MARK = "_annotate_unavailable"


def is_database_outage(exc: BaseException | None) -> bool:
    """True for the errors a lost or refused database connection raises (not for bad SQL or constraint errors), and
    for a statement this connection prepared before a migration changed what it returns: the connection is closed,
    so the next request prepares it afresh."""
    if isinstance(exc, NotSupportedError) and "cached plan must not change result type" in str(exc):
        connection.close()
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def outage_message(exc: BaseException | None) -> str | None:
    """The retry message for an outage of the database or of Redis, or None for any other error."""
    if is_database_outage(exc):
        return RETRY_MESSAGE
    # Redis itself, or the broker through kombu (a task sent from a request: a lead's "Compute now").
    if isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | kombu.exceptions.OperationalError
    ):
        return CACHE_RETRY_MESSAGE
    return None


@receiver(got_request_exception, dispatch_uid="annotate.middleware.mark_database_outage")
def _mark_database_outage(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Sent from inside Django's `except` block, so the exception is the one being handled.
    exc = sys.exc_info()[1]
    message = outage_message(exc)
    if request is not None and message:
        setattr(request, _MARK, message)
        log.warning("service unavailable during %s %s: %s", request.method, request.path, exc)


def unavailable_response(request: HttpRequest, message: str = RETRY_MESSAGE) -> HttpResponse:
    """The 503 for a request that met an outage: JSON for the API, a fragment for htmx, else a page."""
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=503)
    elif wants_partial(request):
        # The labeling page's error partial; label.js shows the event's message and puts the still-filled form back.
        response = HttpResponse(render_to_string("annotate/label.html#error", {"error": message}), status=503)
        trigger_client_event(response, "label-refused", {"message": message})
    else:
        response = HttpResponse(render_to_string("unavailable.html", {"message": message}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # This response skips the inner middleware that would have set the usual policy: a stricter one stands in.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'self'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class DatabaseUnavailableMiddleware:
    """Place right after SecurityMiddleware: every layer below it may hit the database (sessions, auth, views)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        message = getattr(request, _MARK, None)
        if message:
            return unavailable_response(request, message)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A view's exception: answer before the 500 page is even rendered (it would query the database again).
        return outage_response(request, exception)


def outage_response(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """The 503 for `exc` when it is an outage (logged as a warning, no traceback), else None. For code that handles
    a view's exceptions itself before they reach this middleware (the API's handlers)."""
    message = outage_message(exc)
    if not message:
        return None
    setattr(request, _MARK, message)
    log.warning("service unavailable during %s %s: %s", request.method, request.path, exc)
    return unavailable_response(request, message)
