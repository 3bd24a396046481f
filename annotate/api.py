"""The token API under /api/v1/: projects, item and label pushes, production records, progress.

Why django-ninja: typed request and response schemas are pydantic models (the project already validates specs with
pydantic), the OpenAPI document and its browsable docs come from those same types, and it is small. Every endpoint
authenticates a personal token (TokenAuth), is rate-limited per token, and finds its project only through
selectors.project_for_user, so a token reaches exactly what its user's pages reach, with the same 404 for the rest.

Other apps mount their routers on `api` and reuse `TokenAuth` (the default for every route) and `api_user`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Annotated, Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.log import log_response
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer
from ninja.throttling import BaseThrottle
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from annotate import (
    exports,
    guards,
    middleware,
    ratelimit,
    samples,
    selectors,
    skips,
    tokens,
    visibility,
)
from annotate.imports.items import items_import
from annotate.imports.labels import labels_import
from annotate.imports.parsing import api_rows
from annotate.imports.report import ImportInvalid, ImportRefused, ImportReport, counted
from annotate.models import Item, Membership, Project
from annotate.services.projects import project_apply_spec, project_set_sampling
from annotate.specs import ProjectSpec, SpecError

# --- Authentication and limits ---------------------------------------------------------------------------------


class TokenAuth(HttpBearer):
    """`Authorization: Bearer ann_<prefix>_<secret>`. The request then acts as the token's user, nothing more."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        api_token = tokens.token_authenticate(token)
        if api_token is None:
            return None
        request.api_token = api_token  # type: ignore[attr-defined]
        request.user = api_token.user
        return api_token.user


def api_user(request: HttpRequest) -> User:
    """The user the request's token belongs to (routes run only after TokenAuth accepted it)."""
    user = getattr(request, "auth", None)
    if not isinstance(user, User):
        raise AuthenticationError()
    return user


class TokenRateThrottle(BaseThrottle):
    """At most settings.API_RATE_LIMIT requests per token per clock minute, counted in the shared cache."""

    def allow_request(self, request: HttpRequest) -> bool:
        token = getattr(request, "api_token", None)
        if token is None:
            return True
        return not ratelimit.hit(f"api:{token.prefix}", limit=int(settings.API_RATE_LIMIT), per_seconds=60)

    def wait(self) -> float:
        return 60 - time.time() % 60


class ApiError(Exception):
    """An error answered as {"detail", "errors": [{"field", "message"}]} with its HTTP status."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []
        super().__init__(detail)


class BodyNotStorable(ValueError):
    """A JSON body with a part no text column can hold (a NUL, a lone surrogate) or nested absurdly deep."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# Bodies nest a few levels above the metadata they carry ({"items": [{"metadata": ...}]}).
MAX_BODY_DEPTH = guards.MAX_JSON_DEPTH + 8


class CheckedParser(Parser):
    """JSON bodies, refused whole when any part cannot be stored: text with a NUL character or a lone surrogate
    ("\\ud800" decodes to one, which no UTF-8 column takes), or nesting deeper than MAX_BODY_DEPTH (deep enough
    for any metadata; deeper would fail in the encoders, each with its own recursion limit, as a 500)."""

    def parse_body(self, request: HttpRequest) -> Any:
        body = request.body
        try:
            # Strict UTF-8 (json.loads on bytes would let encoded surrogates through), so that a body without a
            # \u escape is known to hold no NUL and no lone surrogate: then only its nesting is walked.
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if text and not text.startswith("\ufeff"):
            data = json.loads(text)
            texts = not guards.json_texts_storable(body)
        else:  # UTF-16 or UTF-32, a BOM: as json.loads reads them, and every text checked
            data = json.loads(body)
            texts = True
        found = guards.json_problem_at(data, max_depth=MAX_BODY_DEPTH, texts=texts)
        if found:
            raise BodyNotStorable(*found)
        return data


api = NinjaAPI(
    title="annotate API",
    version="1",
    description=(
        "Push items, labels and production records, and read projects and progress. Authenticate with a personal "
        "token from your settings page: `Authorization: Bearer ann_…`. A token reaches the projects its user "
        "is a member of, with the user's role; any other project answers 404. Errors are JSON: "
        '`{"detail": "...", "errors": [{"field": "...", "message": "..."}]}`.'
    ),
    urls_namespace="api",
    auth=TokenAuth(),
    throttle=TokenRateThrottle(),
    parser=CheckedParser(),
)


def _error(request: HttpRequest, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> HttpResponse:
    return api.create_response(request, {"detail": detail, "errors": errors or []}, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return _error(request, exc.status, exc.detail, exc.errors)


# pydantic names the branch of a union (`str`, `list[...]`) in an error's location; a client wants the field.
_UNION_BRANCH = re.compile(r"^(str|int|float|bool|dict|list|none|function-[a-z]+)(\[.*\])?$")


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    by_field: dict[str, list[str]] = {}
    for error in exc.errors:
        # ninja's location starts with where the value came from ("body") and the parameter's name ("payload").
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[2:] if len(loc) > 1 and loc[1] == "payload" else loc[1:]
        field = ".".join(part for part in loc if not _UNION_BRANCH.match(part))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        by_field.setdefault(field, []).append(message)
    errors = [
        {
            "field": field,
            "message": messages[0] + "".join(f" (or {m.removeprefix('Input should be ')})" for m in messages[1:]),
        }
        for field, messages in by_field.items()
    ]
    return _error(request, 400, "The request is not valid.", errors)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # django-ninja answers a body its parser refused with a generic 400: name the field when we know it.
    cause = exc.__cause__
    if isinstance(cause, BodyNotStorable):
        return _error(request, 400, "The request is not valid.", [{"field": cause.field, "message": cause.message}])
    return api.create_response(request, {"detail": str(exc.message)}, status=exc.status_code)  # django-ninja's own


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, 401, "Missing, unknown or revoked API token. Send `Authorization: Bearer ann_…`.")
    response["WWW-Authenticate"] = 'Bearer realm="annotate"'
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, str(exc) or "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _error(request, 403, str(exc) or "Not allowed.")


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    response = _error(request, 429, f"Too many requests: at most {settings.API_RATE_LIMIT} per minute per token.")
    response["Retry-After"] = str(max(1, int(60 - time.time() % 60)))
    return response


UNEXPECTED_ERROR = "Something went wrong on the server and the request did not complete. It has been logged."


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Anything the handlers above do not name. A client gets JSON, never a traceback (django-ninja's own handler
    answers one as text under DEBUG); the traceback goes to the log, as Django logs its own 500s. A database or Redis
    outage is the same 503 with its retry message as on every page."""
    outage = middleware.outage_response(request, exc)
    if outage is not None:
        return outage
    response = _error(request, 500, UNEXPECTED_ERROR)
    # As Django logs the 500s it handles itself (logger django.request, with the traceback), and once only.
    log_response("Internal Server Error: %s", request.path, response=response, request=request, exception=exc)
    return response


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = guards.body_limit(request.path_info)
    return _error(request, 413, f"The request body is too large: at most {limit:,} bytes. Send smaller batches.")


# --- Schemas ---------------------------------------------------------------------------------------------------


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldErrorOut] = []


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str


Text = str | list[ChatMessage]

ITEMS_EXAMPLE_BINARY: JsonDict = {
    "items": [
        {
            "external_id": "ticket-1042",
            "input": "Where is my order #1042?",
            "output": "It left our warehouse yesterday and should arrive on Friday.",
            "metadata": {"model": "support-bot-v3"},
        },
        {
            "input": [{"role": "user", "content": "Can I return shoes I wore once?"}],
            "output": "Yes, within 30 days, if they are clean.",
        },
    ]
}
ITEMS_EXAMPLE_PAIRWISE: JsonDict = {
    "items": [
        {
            "external_id": "prompt-7",
            "input": "Summarise our refund policy in one sentence.",
            "output_a": "Refunds within 30 days of delivery, no questions asked.",
            "output_b": "We refund things sometimes.",
            "split": "dev",
        }
    ],
    "update": False,
}


class ItemIn(BaseModel):
    """One item: input and output (binary projects) or input, output_a and output_b (pairwise)."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(None, description="Your id; default: a hash of the content.")
    input: Text
    output: Text | None = None
    output_a: Text | None = None
    output_b: Text | None = None
    split: Literal["train", "dev", "test"] | None = Field(None, description="Default: a stable hash of the id.")
    metadata: dict[str, Any] | None = None


def _wrap_single(data: Any, key: str) -> Any:
    # A single object is accepted as a batch of one.
    return {key: [data]} if isinstance(data, dict) and key not in data else data


class ItemBatchIn(BaseModel):
    """A batch of items (a single item object is accepted as a batch of one). All or nothing."""

    model_config = ConfigDict(json_schema_extra={"examples": [ITEMS_EXAMPLE_BINARY, ITEMS_EXAMPLE_PAIRWISE]})

    items: list[ItemIn] = Field(min_length=1)
    update: bool = Field(False, description="Give conflicting items (same id, other content) the new content.")

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        return _wrap_single(data, "items")


LABELS_EXAMPLE: JsonDict = {
    "labels": [
        {
            "external_id": "ticket-1042",
            "annotator": "imported-rater-1",
            "criterion": "acceptable",
            "value": "pass",
            "note": "Gives a date.",
            "created_at": "2025-05-19T13:11:45Z",
        }
    ]
}


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str
    annotator: str = Field(
        description=(
            "A member's username; any other name becomes this project's own inactive imported annotator "
            "(never an existing account outside the project)."
        )
    )
    criterion: str = Field(description="A criterion key of the project's current rubric.")
    value: str = Field(description="pass or fail (binary projects); a, b or tie (pairwise).")
    note: str | None = None
    created_at: dt.datetime | None = None


class LabelBatchIn(BaseModel):
    """Existing human labels (a single label object is accepted as a batch of one). All or nothing."""

    model_config = ConfigDict(json_schema_extra={"examples": [LABELS_EXAMPLE]})

    labels: list[LabelIn] = Field(min_length=1)
    update: bool = Field(False, description="Replace conflicting labels' value and note.")

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        return _wrap_single(data, "labels")


RECORDS_EXAMPLE: JsonDict = {
    "records": [
        {
            "external_id": "trace-5f2c",
            "input": "Do you ship to Norway?",
            "output": "Yes, in 3 to 5 working days.",
            "metadata": {"model": "support-bot-v3", "latency_ms": 812},
        }
    ]
}


class RecordBatchIn(BaseModel):
    """Production records, with the same fields as items (a single record object is accepted too)."""

    model_config = ConfigDict(json_schema_extra={"examples": [RECORDS_EXAMPLE]})

    records: list[ItemIn] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        return _wrap_single(data, "records")


class ImportOut(Schema):
    summary: str
    rows: int
    new: int
    unchanged: int
    conflicts: int
    updated: int
    labels_kept: int = Field(description="Labels on updated items, kept as they were.")
    users_created: list[str]
    conflict_details: list[dict[str, Any]]


class ReceiveOut(Schema):
    received: int
    duplicates: int = Field(description="Records whose content had already arrived today.")


class CriterionOut(Schema):
    key: str
    name: str
    description: str


class ProjectSummaryOut(Schema):
    slug: str
    name: str
    kind: str
    status: str
    role: str
    n_items: int


class ProjectOut(Schema):
    slug: str
    name: str
    kind: str
    status: str
    role: str
    instructions: str
    overlap: int
    allow_tie: bool
    rubric_version: int | None
    criteria: list[CriterionOut]
    sample_size: int
    sample_hour: int
    annotator_fields: list[str] = Field(
        description="What the labeling screens show besides item text: metadata keys, `external_id` for ids."
    )
    skip_return_minutes: int


class SampleOut(Schema):
    day: dt.date
    taken: bool
    n_items: int
    n_started: int
    n_complete: int
    n_records_today: int
    drift_flags: list[str]


class ProgressOut(Schema):
    n_items: int
    items_by_split: dict[str, int]
    n_complete: int
    n_labels: int
    n_labels_current: int
    n_annotators: int
    today_sample: SampleOut


PROJECT_EXAMPLE: JsonDict = {
    "slug": "support-bot-eval",
    "name": "Support bot answers",
    "kind": "binary",
    "instructions": "Judge the **answer** only.",
    "overlap": 2,
    "criteria": [
        {"key": "resolves", "name": "Resolves the issue", "description": "The customer needs nothing more."},
        {"key": "grounded", "name": "Grounded", "description": "Every claim is in the retrieved documents."},
        {"key": "tone", "name": "Tone", "description": "Polite and brief."},
    ],
}


class ProjectSettingsIn(Schema):
    """The settings a lead changes through the API; an omitted one stays as it is."""

    model_config = ConfigDict(extra="forbid")

    sample_size: Annotated[int, Field(ge=0, le=Project.MAX_SAMPLE_SIZE, strict=True)] | None = None
    sample_hour: Annotated[int, Field(ge=0, le=23, strict=True)] | None = None
    annotator_fields: Annotated[list[str], Field(max_length=visibility.MAX_FIELDS)] | None = None
    skip_return_minutes: Annotated[int, Field(ge=0, le=Project.MAX_SKIP_RETURN_MINUTES, strict=True)] | None = None


class ProjectIn(ProjectSpec):
    """The same spec as `manage.py create_project` reads."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PROJECT_EXAMPLE]})


# --- Helpers ---------------------------------------------------------------------------------------------------


def _project(request: HttpRequest, slug: str, *, role: str | None = None) -> tuple[Project, str]:
    return selectors.project_for_user(api_user(request), slug, role=role)


def _check_batch(entries: list[Any], noun: str) -> None:
    limit = int(settings.API_MAX_BATCH)
    if len(entries) > limit:
        raise ApiError(413, f"Too many {noun} in one request: {len(entries):,} (at most {limit:,}).")


def _import_errors(exc: ImportInvalid, noun: str) -> ApiError:
    errors = [
        {"field": ".".join(part for part in (noun, str(e.line), e.field) if part), "message": e.message}
        for e in exc.errors
    ]
    return ApiError(400, f"{counted(exc.n_errors, 'bad ' + noun.removesuffix('s'))}; nothing was written.", errors)


def _import_out(report: ImportReport) -> dict[str, Any]:
    return {
        "summary": report.summary(),
        "rows": report.n_rows,
        "new": report.n_new,
        "unchanged": report.n_unchanged,
        "conflicts": report.n_conflicts,
        "updated": report.n_updated,
        "labels_kept": report.n_labels_kept,
        "users_created": report.users_created,
        "conflict_details": report.conflicts,
    }


def _project_out(project: Project, role: str) -> dict[str, Any]:
    rubric = selectors.rubric_current(project=project)
    return {
        "slug": project.slug,
        "name": project.name,
        "kind": project.kind,
        "status": project.status,
        "role": role,
        "instructions": project.instructions,
        "overlap": project.overlap,
        "allow_tie": project.allow_tie,
        "rubric_version": rubric.number if rubric else None,
        "criteria": list(selectors.criteria_current(project=project).values("key", "name", "description")),
        "sample_size": project.sample_size,
        "sample_hour": project.sample_hour,
        "annotator_fields": list(project.annotator_fields or []),
        "skip_return_minutes": project.skip_return_minutes,
    }


_ERRORS: dict[int, Any] = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 413: ErrorOut, 429: ErrorOut}

# --- Endpoints -------------------------------------------------------------------------------------------------


@api.get("/projects", response={200: list[ProjectSummaryOut], **_ERRORS}, tags=["projects"])
def projects_list(request: HttpRequest) -> list[dict[str, Any]]:
    """The projects the token's user may open, with their role."""
    return [
        {
            "slug": row.project.slug,
            "name": row.project.name,
            "kind": row.project.kind,
            "status": row.project.status,
            "role": row.role,
            "n_items": row.n_items,
        }
        for row in selectors.projects_for_user(api_user(request))
    ]


@api.post("/projects", response={201: ProjectOut, 403: ErrorOut, 409: ErrorOut, **_ERRORS}, tags=["projects"])
def project_create(request: HttpRequest, payload: ProjectIn) -> Status:
    """Create a project from a spec (staff only, as in the admin). An existing slug is refused with 409."""
    user = api_user(request)
    if not user.is_staff:
        raise PermissionDenied("Only staff can create projects.")
    with transaction.atomic():
        if Project.objects.filter(slug=payload.slug).exists():
            raise ApiError(409, f"A project {payload.slug!r} already exists.", [{"field": "slug", "message": "taken"}])
        try:
            project, _created, _changed = project_apply_spec(spec=payload, actor=user)
        except SpecError as exc:
            errors = [{"field": e.split(":", 1)[0], "message": e.split(":", 1)[-1].strip()} for e in exc.errors]
            raise ApiError(400, "The spec was refused; nothing was written.", errors) from None
    return Status(201, _project_out(project, Membership.Role.LEAD))


@api.get("/projects/{slug}", response={200: ProjectOut, **_ERRORS}, tags=["projects"])
def project_read(request: HttpRequest, slug: str) -> dict[str, Any]:
    project, role = _project(request, slug)
    return _project_out(project, role)


@api.patch("/projects/{slug}", response={200: ProjectOut, **_ERRORS}, tags=["projects"])
def project_settings_update(request: HttpRequest, slug: str, payload: ProjectSettingsIn) -> dict[str, Any]:
    """Change settings (lead only): the daily production sample, `sample_size` (0 turns it off) and `sample_hour`
    (0-23); `annotator_fields`, the metadata keys (and `external_id`) annotators see on the labeling screens; and
    `skip_return_minutes`, after which a skipped item comes back to the end of that annotator's queue."""
    project, role = _project(request, slug, role=Membership.Role.LEAD)
    try:
        with transaction.atomic():
            project_set_sampling(project=project, sample_size=payload.sample_size, sample_hour=payload.sample_hour)
            if payload.annotator_fields is not None:
                visibility.project_set_annotator_fields(project=project, fields=payload.annotator_fields)
            if payload.skip_return_minutes is not None:
                skips.project_set_skip_return(project=project, minutes=payload.skip_return_minutes)
    except DjangoValidationError as exc:
        raise ApiError(400, " ".join(exc.messages)) from None
    return _project_out(project, role)


@api.get("/projects/{slug}/progress", response={200: ProgressOut, **_ERRORS}, tags=["projects"])
def project_progress(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Labeling progress and today's production sample."""
    project, _role = _project(request, slug)
    stats = selectors.project_stats(project=project)
    today = samples.sample_today(project=project)
    return {
        "n_items": stats.n_items,
        "items_by_split": stats.items_by_split,
        "n_complete": stats.n_complete,
        "n_labels": stats.n_labels,
        "n_labels_current": stats.n_labels_current,
        "n_annotators": stats.n_annotators,
        "today_sample": {
            "day": today.day,
            "taken": today.sample is not None,
            "n_items": today.n_items,
            "n_started": today.n_started,
            "n_complete": today.n_complete,
            "n_records_today": today.n_records_today,
            "drift_flags": (today.sample.drift.get("flags", []) if today.sample else []),
        },
    }


@api.post("/projects/{slug}/items", response={200: ImportOut, **_ERRORS}, tags=["data"])
def items_push(request: HttpRequest, slug: str, payload: ItemBatchIn) -> dict[str, Any]:
    """Add items (lead only), all or nothing. Pushing the same items again changes nothing."""
    project, _role = _project(request, slug, role=Membership.Role.LEAD)
    _check_batch(payload.items, "items")
    try:
        report = items_import(
            project=project,
            rows=list(api_rows(payload.items)),
            source=Item.Source.API,
            update=payload.update,
            look_up_first=True,
        )
    except ImportInvalid as exc:
        raise _import_errors(exc, "items") from None
    except ImportRefused as exc:
        raise ApiError(exc.status, exc.message) from None
    return _import_out(report)


@api.post("/projects/{slug}/labels", response={200: ImportOut, **_ERRORS}, tags=["data"])
def labels_push(request: HttpRequest, slug: str, payload: LabelBatchIn) -> dict[str, Any]:
    """Add existing human labels (lead only), all or nothing. They count like labels given in the browser."""
    project, _role = _project(request, slug, role=Membership.Role.LEAD)
    _check_batch(payload.labels, "labels")
    try:
        report = labels_import(project=project, rows=api_rows(payload.labels), update=payload.update)
    except ImportInvalid as exc:
        raise _import_errors(exc, "labels") from None
    except ImportRefused as exc:
        raise ApiError(exc.status, exc.message) from None
    return _import_out(report)


@api.post("/projects/{slug}/samples", response={200: ReceiveOut, **_ERRORS}, tags=["data"])
def samples_push(request: HttpRequest, slug: str, payload: RecordBatchIn) -> dict[str, Any]:
    """Send production records (lead only). Once a day a seeded sample of the day's records joins the queue."""
    project, _role = _project(request, slug, role=Membership.Role.LEAD)
    _check_batch(payload.records, "records")
    try:
        result = samples.records_receive(project=project, rows=api_rows(payload.records))
    except ImportInvalid as exc:
        raise _import_errors(exc, "records") from None
    return {"received": result.received, "duplicates": result.duplicates}


class ExportQuery(Schema):
    # export_formats.FORMATS, and the former id openai-evals (export_formats.ALIASES: now openai-evals-api).
    format: Literal["jsonl", "csv", "openai-evals-api", "inspect-ai", "hf-datasets", "preference", "openai-evals"] = (
        "jsonl"
    )
    bom: bool = Field(False, description="CSV only: start with a UTF-8 byte order mark, for spreadsheets.")
    split: Literal["train", "dev", "test"] | None = None
    min_labels: int = Field(0, ge=0, le=Project.MAX_OVERLAP)
    consensus_only: bool = False
    adjudicated_only: bool = False
    criterion: list[str] = Field(default_factory=list)
    individual: bool = False
    # The date range [since, until) on labels' creation, as exports.parse_bound reads it (a date alone: its whole
    # day); checked there, so a bad value is a 400 with the reason.
    since: str | None = Field(
        None, description="Only labels and gold labels created at or after this: YYYY-MM-DD or an ISO date and time."
    )
    until: str | None = Field(
        None, description="... and before this; a date alone includes its whole day. Without an offset, UTC."
    )
    # Only the manifest (counts included), as JSON; without it the rows stream and the manifest is in the
    # X-Export-Manifest header.
    manifest: bool = False


@api.get("/projects/{slug}/export", response=_ERRORS, tags=["data"])
def project_export(request: HttpRequest, slug: str, query: Query[ExportQuery]) -> HttpResponseBase:
    """Stream the current rubric version's items and reference labels (lead only), as the export page does.

    The manifest (project, rubric version, counts, filters, time, app version) is in the X-Export-Manifest header as
    one line of JSON, or alone with `manifest=true`.
    """
    project, _role = _project(request, slug, role=Membership.Role.LEAD)
    try:
        since = exports.parse_bound(query.since, end=False) if query.since else None
        until = exports.parse_bound(query.until, end=True) if query.until else None
    except exports.ExportRefused as exc:
        raise ApiError(400, str(exc)) from None
    options = exports.ExportOptions(
        fmt=query.format,
        split=query.split,
        min_labels=query.min_labels,
        consensus_only=query.consensus_only,
        adjudicated_only=query.adjudicated_only,
        criteria=tuple(query.criterion),
        individual=query.individual,
        since=since,
        until=until,
        bom=query.bom,
    )
    if query.manifest:
        try:
            with exports.snapshot():
                export = exports.export_prepare(project=project, options=options)
        except exports.ExportRefused as exc:
            raise ApiError(400, str(exc)) from None
        return JsonResponse(export.manifest)
    try:
        export, stream = exports.export_stream(project=project, options=options)
    except exports.ExportRefused as exc:
        raise ApiError(400, str(exc)) from None
    response = StreamingHttpResponse(stream, content_type=exports.CONTENT_TYPES[export.manifest["format"]])
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(export)}"'
    response[exports.MANIFEST_HEADER] = exports.manifest_header(export.manifest)
    response["X-Content-Type-Options"] = "nosniff"
    return response


api.add_router("/", "judges.api.router")  # judges: versions and runs (judges/api.py)
api.add_router("/", "annotate.review.api.router")  # error analysis: review notes, failure modes
