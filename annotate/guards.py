"""Requests refused before any view runs: bodies larger than their path allows, and form fields that are not text.

Django parses a multipart body (spooling its file parts to the temp folder) the first time anything reads
`request.POST`, which the CSRF check does for every unsafe request. So the size check reads only the declared
`Content-Length`, per path, before that: the import upload may be as large as IMPORT_MAX_FILE_BYTES, the API's
batch endpoints API_MAX_BODY_BYTES (read by annotate.api's parser, which holds them to that limit instead of
DATA_UPLOAD_MAX_MEMORY_SIZE), every other path at most DATA_UPLOAD_MAX_MEMORY_SIZE. (A body without a Content-Length
is not read by Django at all.)

Form fields are text: PostgreSQL cannot store a NUL character, and a lone surrogate is not Unicode text. Rather than
letting one reach a query and fail there as a 500, the request is answered 400 naming the field.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.template.loader import render_to_string
from django.utils.html import escape

from annotate.http import wants_partial

# Paths whose POST body may be as large as an import file (IMPORT_MAX_FILE_BYTES, plus the form's other fields).
LARGE_BODY_PATHS = (re.compile(r"^/p/[-\w]+/import/$"),)
# The API's batch endpoints: a batch of API_MAX_BATCH rows may be as large as API_MAX_BODY_BYTES.
API_BATCH_PATHS = (re.compile(r"^/api/v1/projects/[-\w]+/(items|labels|samples)$"),)
FORM_OVERHEAD_BYTES = 64 * 1024
# One lone surrogate, as a JSON decoder can produce from "\ud800"; Django's form decoder replaces them itself.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _large_body_path(path: str) -> bool:
    return any(pattern.match(path) for pattern in LARGE_BODY_PATHS)


def body_limit(path: str) -> int:
    """The largest request body, in bytes, that `path` accepts."""
    if _large_body_path(path):
        return int(settings.IMPORT_MAX_FILE_BYTES) + FORM_OVERHEAD_BYTES
    if any(pattern.match(path) for pattern in API_BATCH_PATHS):
        return int(settings.API_MAX_BODY_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as text (a NUL character, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character, which cannot be stored"
    if text.isascii():  # constant time in CPython (a flag of the string), and ASCII holds no surrogate
        return None
    found = _SURROGATE.search(text)
    if found:
        return f"contains a lone surrogate (U+{ord(found.group()):04X} at character {found.start() + 1}), not text"
    return None


# Deeper JSON than any metadata needs; Python's own JSON encoder and pydantic fail on a few hundred levels.
MAX_JSON_DEPTH = 32


def json_problem(value: object, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a JSON value (objects, lists, text, numbers) cannot be stored: nested deeper than `max_depth`, or a key
    or text with a NUL character or a lone surrogate; None when it can."""
    found = json_problem_at(value, max_depth=max_depth)
    return found[1] if found else None


def json_problem_at(value: object, *, max_depth: int = MAX_JSON_DEPTH, texts: bool = True) -> tuple[str, str] | None:
    """(dotted path, problem) of the first part of a JSON value that cannot be stored, or None. No recursion.

    `texts=False` checks the nesting only, for a value whose texts are known to be storable (`json_texts_storable`).
    Texts are checked where their container is, and a path is spelled out only for a problem: an API batch has
    a hundred thousand values, and this walk runs on every one of them.
    """
    # path: None at the top, else (parent's path, key or index), spelled out by _dotted only when needed.
    stack: list[tuple[dict[Any, Any] | list[Any], int, Any]] = []
    if isinstance(value, dict | list):
        stack.append((value, 1, None))
    elif texts and isinstance(value, str) and (problem := text_problem(value)):
        return "", problem
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            return _dotted(path), f"nested more than {max_depth} levels deep"
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if texts and isinstance(key, str) and (problem := text_problem(key)):
                return _dotted(path), f"has a key that {problem}"
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (path, key)))
            elif texts and isinstance(child, str) and (problem := text_problem(child)):
                return _dotted((path, key)), problem
    return None


def _dotted(path: Any) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(str(key))
    return ".".join(reversed(parts))


def json_texts_storable(body: bytes) -> bool:
    """Whether every key and text of the JSON document `body`, read as strict UTF-8 (which has no encoding for a
    surrogate), is storable without looking at them: a NUL or a lone surrogate can only come from a \\u escape."""
    return b"\\u" not in body


def refused_response(request: HttpRequest, status: int, title: str, message: str, field: str = "") -> HttpResponse:
    """JSON for the API, a fragment for htmx (label.js shows its text), else a small page."""
    response: HttpResponse
    if request.path.startswith("/api/"):
        errors = [{"field": field, "message": message}] if field else []
        detail = "The request is not valid." if field else message
        response = JsonResponse({"detail": detail, "errors": errors}, status=status)
    elif wants_partial(request):
        response = HttpResponse(f"<p>{escape(message)}</p>", status=status)
    else:
        response = HttpResponse(render_to_string("refused.html", {"title": title, "message": message}), status=status)
    response["Cache-Control"] = "no-store"
    # The inner middleware that sets the usual policy does not run for this response: a stricter one stands in.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'self'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class RequestGuardMiddleware:
    """Place right after SecurityMiddleware, above everything that may read the body (sessions, CSRF, views)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self._too_large(request) or self._not_text(request) or self._api_batch_read(request)
        return refused or self.get_response(request)

    def _api_batch_read(self, request: HttpRequest) -> HttpResponse | None:
        """Read an API batch's body here: `request.body` would hold it to DATA_UPLOAD_MAX_MEMORY_SIZE, as on every
        path, and refuse the documented batch of API_MAX_BATCH rows. Its size was held to its own limit
        (API_MAX_BODY_BYTES) by the Content-Length above, and Django's stream ends at the Content-Length."""
        if request.method != "POST" or not any(p.match(request.path_info) for p in API_BATCH_PATHS):
            return None
        if hasattr(request, "_body") or getattr(request, "_read_started", False):
            return None
        try:
            data = request.read()
        except UnreadablePostError:
            return None  # the client went away mid-body: the view meets it as before
        # What HttpRequest.body keeps after reading the stream, so that `request.body` and `request.read()` work on.
        request._body = data
        request._stream = io.BytesIO(data)
        return None

    def _too_large(self, request: HttpRequest) -> HttpResponse | None:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return refused_response(request, 400, "Bad request", "The Content-Length header is not a number.")
        limit = body_limit(request.path_info)
        if declared <= limit:
            return None
        message = f"The request body is too large: {declared:,} bytes, and this address takes at most {limit:,}."
        if request.path.startswith("/api/"):
            message += " Send smaller batches."
        if wants_partial(request) and _large_body_path(request.path_info):
            # The import form posts with htmx, which swaps only 2xx answers into its result area (as the import
            # view answers its own refusals): say it there. No other htmx form sends bodies this large.
            response = HttpResponse(f'<p class="error" role="alert">{escape(message)}</p>')
        else:
            response = refused_response(request, 413, "Too large", message)
        # The client may still be sending the body, which nothing here reads: close the connection after answering.
        response["Connection"] = "close"
        return response

    def _not_text(self, request: HttpRequest) -> HttpResponse | None:
        # request.POST is parsed only for form bodies (the API's JSON is checked by its own schemas).
        try:
            form = request.POST if request.method == "POST" else None
        except UnreadablePostError:
            return None  # the client went away mid-body: whatever reads the body next meets it as before
        for source in (request.GET, form):
            if not source:
                continue
            for name, values in source.lists():
                for text in (name, *values):
                    problem = text_problem(text) if isinstance(text, str) else None
                    if problem:
                        shown = name if not text_problem(name) else repr(name)
                        message = f"The field “{shown}” {problem}. Remove it and send the form again."
                        return refused_response(request, 400, "Not text", message, field=shown)
        return None
