"""Getting data out: the export page and the streamed download."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotate import (
    export_formats,
    exports,
    selectors,
)
from annotate.forms import ExportForm
from annotate.http import AuthedRequest
from annotate.models import Membership, Project


def _export_form(project: Project, data: QueryDict | None = None) -> ExportForm:
    keys = list(selectors.criteria_current(project=project).values_list("key", flat=True))
    return ExportForm(data, criterion_keys=keys, pairwise=project.is_pairwise)


def _export_page(
    request: AuthedRequest, project: Project, form: ExportForm, *, status: int = 200, error: str = "", empty: str = ""
) -> HttpResponse:
    formats = export_formats.for_kind(pairwise=project.is_pairwise)
    context = {"project": project, "form": form, "error": error, "empty": empty, "formats": formats}
    return render(request, "annotate/export.html", context, status=status)


@require_GET
@login_required
def export_page(request: AuthedRequest, slug: str) -> HttpResponse:
    """The export options; the form asks export_download for the file."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    return _export_page(request, project, _export_form(project))


@require_GET
@login_required
def export_download(request: AuthedRequest, slug: str) -> HttpResponseBase:
    """The export as a download, streamed row by row from the database."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    form = _export_form(project, request.GET)
    if not form.is_valid():
        return _export_page(request, project, form, status=400)
    data = form.cleaned_data
    options = exports.ExportOptions(
        fmt=data["format"],
        split=data["split"] or None,
        min_labels=data["min_labels"] or 0,
        consensus_only=data["consensus_only"],
        adjudicated_only=data["adjudicated_only"],
        criteria=tuple(data["criterion"]),
        individual=data["individual"],
        since=data["since"],
        until=data["until"],
        bom=data["bom"],
    )
    if request.GET.get("manifest") == "1":
        # The manifest alone, as JSON: what the download would hold (counts included), without the rows.
        try:
            with exports.snapshot():
                export = exports.export_prepare(project=project, options=options)
        except exports.ExportRefused as exc:
            return _export_page(request, project, form, status=400, error=str(exc))
        return JsonResponse(export.manifest, json_dumps_params={"indent": 2})
    try:
        export, stream = exports.export_stream(project=project, options=options)
    except exports.ExportRefused as exc:
        return _export_page(request, project, form, status=400, error=str(exc))
    if not export.manifest["counts"]["rows"]:
        for _chunk in stream:  # at most a CSV header: reading it to the end ends the snapshot
            pass
        return _export_page(request, project, form, empty=exports.empty_reason(export.manifest))
    response = StreamingHttpResponse(stream, content_type=exports.CONTENT_TYPES[options.fmt])
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(export)}"'
    response[exports.MANIFEST_HEADER] = exports.manifest_header(export.manifest)
    response["X-Content-Type-Options"] = "nosniff"
    return response
