"""Small answers that belong to the site rather than to a project: the favicon at the address browsers ask for, and
the liveness check."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from annotate.cache import redis_health


@cache
def _favicon() -> bytes:
    return (settings.BASE_DIR / "static" / "favicon.ico").read_bytes()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for whatever the page links (the pages link static/favicon.svg)."""
    response = HttpResponse(_favicon(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the process answers and the database is reachable (else 503). Redis
    is reported (PING latency, circuit breaker) but does not fail the check: the app works on without it."""
    redis = redis_health()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable", "redis": redis}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": redis})
