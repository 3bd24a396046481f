"""Setting projects up in the browser: create a project, its settings and status, its criteria (members: see
annotate.people_views).

Who may do what:
- Creating a project (`project_new`): staff, or users granted `annotate.add_project` in the admin. Anyone else gets
  403: the page belongs to no project, so there is nothing to hide, and the refusal says who to ask.
- Every other page here is lead-only: it goes through `annotate.selectors.project_for_user(..., role="lead")`, so an
  annotator or an outsider gets the same 404 as for a project that does not exist.
Pages work without JavaScript (every button is a form submit); with htmx, the criteria editor and
the instructions preview swap in place.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate import carry, selectors
from annotate.forms import CriterionFormSet, ProjectNewForm, ProjectSettingsForm
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Membership, Project
from annotate.services.projects import (
    project_create,
    project_kind_locked,
    project_may_create,
    project_set_status,
    project_update,
)
from annotate.services.rubrics import CriterionData, RubricChange, rubric_diff, rubric_save_edit

LEAD = Membership.Role.LEAD
MIN_CRITERIA = Project.MIN_CRITERIA_TO_ACTIVATE


def _lead_project(request: AuthedRequest, slug: str) -> Project:
    project, _role = selectors.project_for_user(request.user, slug, role=LEAD)
    return project


def _status(request: AuthedRequest, *, failed: bool) -> int:
    """422 for a refused plain POST; 200 for htmx, which swaps only 2xx answers in and the error is in the swap."""
    return 422 if failed and not wants_partial(request) else 200


def _require_creator(request: AuthedRequest) -> None:
    if not project_may_create(request.user):
        raise PermissionDenied("Only staff and people with the “add project” permission can create projects.")


def _settings_values(form: ProjectSettingsForm, project: Project | None = None) -> dict[str, Any]:
    data = form.cleaned_data
    return {
        "name": data["name"],
        # A disabled field holds its initial value: the kind a project with items already has.
        "kind": data["kind"] if project is None or not form.fields["kind"].disabled else project.kind,
        "instructions": data["instructions"],
        "overlap": data["overlap"],
        "allow_tie": data["allow_tie"],
        "require_note_on_fail": data["require_note_on_fail"],
        "sample_size": data["sample_size"],
        "sample_hour": data["sample_hour"],
        "skip_return_minutes": data["skip_return_minutes"],
    }


# --- Creating a project ---------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def project_new(request: AuthedRequest) -> HttpResponse:
    _require_creator(request)
    form = ProjectNewForm(
        request.POST or None,
        initial={
            "kind": Project.Kind.BINARY,
            "overlap": 2,
            "allow_tie": True,
            "sample_size": 50,
            "sample_hour": 6,
            "skip_return_minutes": 60,
        },
    )
    if request.method == "POST" and "preview" in request.POST:
        # Without JavaScript, the Preview button posts the form here: show the preview, create nothing.
        return render(request, "annotate/setup/project_new.html", {"form": form, "preview_source": _posted(request)})
    if request.method == "POST" and form.is_valid():
        slug = form.cleaned_data["slug"] or slugify(form.cleaned_data["name"])[:64].strip("-")
        try:
            project = project_create(creator=request.user, slug=slug, **_settings_values(form))
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(
                request, f"Project created. Add its criteria next: at least {MIN_CRITERIA} are needed to activate it."
            )
            return redirect("project_criteria", slug=project.slug)
    context = {"form": form, "preview_source": _posted(request)}
    return render(request, "annotate/setup/project_new.html", context, status=422 if form.is_bound else 200)


@require_POST
@login_required
def project_new_preview(request: AuthedRequest) -> HttpResponse:
    _require_creator(request)
    return _preview(request)


# --- Settings and status --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def project_settings(request: AuthedRequest, slug: str) -> HttpResponse:
    project = _lead_project(request, slug)
    kind_locked = project_kind_locked(project=project)
    initial = {f: getattr(project, f) for f in ProjectSettingsForm.base_fields}
    form = ProjectSettingsForm(initial=initial, kind_locked=kind_locked)
    status_error = ""
    if request.method == "POST" and request.POST.get("form") == "status":
        try:
            project_set_status(project=project, status=request.POST.get("status", ""))
        except ValidationError as exc:
            status_error = " ".join(exc.messages)
        else:
            messages.success(request, f"The project is now {project.get_status_display().lower()}.")
            return redirect("project_settings", slug=project.slug)
    elif request.method == "POST":
        form = ProjectSettingsForm(request.POST, initial=initial, kind_locked=kind_locked)
        if form.is_valid() and "preview" not in request.POST:
            try:
                project_update(project=project, **_settings_values(form, project))
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, "Settings saved.")
                return redirect("project_settings", slug=project.slug)
    context = {
        "project": project,
        "form": form,
        "kind_locked": kind_locked,
        "status_error": status_error,
        "n_criteria": selectors.criteria_current(project=project).count(),
        "min_criteria": MIN_CRITERIA,
        # The preview shows what is in the form: after a refused save, or the Preview button without JavaScript.
        "preview_source": _posted(request) if request.POST.get("form") == "settings" else project.instructions,
    }
    refused = bool(status_error) or (form.is_bound and "preview" not in request.POST and not form.is_valid())
    return render(request, "annotate/setup/settings.html", context, status=422 if refused else 200)


@require_POST
@login_required
def project_preview(request: AuthedRequest, slug: str) -> HttpResponse:
    _lead_project(request, slug)
    return _preview(request)


def _posted(request: AuthedRequest) -> str:
    return str(request.POST.get("instructions", ""))[:50_000]


def _preview(request: AuthedRequest) -> HttpResponse:
    """The instructions rendered exactly as annotators will see them (the same sanitising Markdown filter)."""
    return render(request, "annotate/setup/_preview.html", {"text": _posted(request)})


# --- Criteria -------------------------------------------------------------------------------------------------

MAX_CRITERIA = 50


def _rows_from_post(post: Any) -> list[CriterionData]:
    """The editor's rows as submitted, in order, untrusted and unvalidated (a move or an add must not need them
    valid). Read from the formset's field names, at most MAX_CRITERIA rows."""
    try:
        total = min(int(post.get("form-TOTAL_FORMS", 0)), MAX_CRITERIA)
    except ValueError:
        total = 0
    return [
        CriterionData(
            key=post.get(f"form-{i}-key", "").strip(),
            name=post.get(f"form-{i}-name", "").strip(),
            description=post.get(f"form-{i}-description", "").strip(),
        )
        for i in range(max(total, 0))
    ]


def _apply_edit(rows: list[CriterionData], action: str) -> tuple[list[CriterionData], str]:
    """Add, remove or move a row: the editor's buttons. Nothing is saved. Also returns the id of the control that
    should have the focus afterwards (the new row's name, or the moved row's same button), for keyboard users."""
    verb, _, index = action.partition("-")
    if verb == "add" and len(rows) < MAX_CRITERIA:
        return [*rows, CriterionData(key="", name="", description="")], f"form-{len(rows)}-name"
    if not index.isdigit() or int(index) >= len(rows):
        return rows, ""
    i = int(index)
    rows = list(rows)
    if verb == "remove":
        del rows[i]
        return rows, "add-criterion"
    if verb == "up" and i > 0:
        rows[i - 1], rows[i] = rows[i], rows[i - 1]
        return rows, f"up-{i - 1}" if i > 1 else f"down-{i - 1}"
    if verb == "down" and i < len(rows) - 1:
        rows[i + 1], rows[i] = rows[i], rows[i + 1]
        return rows, f"down-{i + 1}" if i + 1 < len(rows) - 1 else f"up-{i + 1}"
    return rows, ""


def _checked(rows: list[CriterionData], project: Project) -> tuple[list[CriterionData], list[str]]:
    """The rows with keys filled in from names, and the problems that stop them becoming a rubric."""
    problems: list[str] = []
    formset = CriterionFormSet(data=_formset_data(rows))
    if not formset.is_valid():
        for n, form in enumerate(formset.forms, start=1):
            for field, field_errors in form.errors.items():
                label = form.fields[field].label or field if field in form.fields else field
                problems += [f"Criterion {n}, {str(label).lower()}: {m}" for m in field_errors]
        problems += [str(m) for m in formset.non_form_errors()]
    taken: set[str] = {r["key"] for r in rows if r["key"]}
    filled: list[CriterionData] = []
    for row in rows:
        key = row["key"]
        if not key:
            base = slugify(row["name"]).replace("-", "_")[:60] or "criterion"
            key, n = base, 2
            while key in taken:
                key, n = f"{base}_{n}", n + 1
            taken.add(key)
        filled.append(CriterionData(key=key, name=row["name"], description=row["description"]))
    keys = [r["key"] for r in filled]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    problems += [f"Two criteria have the key “{k}”: keys must differ." for k in twice]
    if not filled:
        problems.append("A rubric needs at least one criterion.")
    if project.status == Project.Status.ACTIVE and len(filled) < MIN_CRITERIA:
        problems.append(
            f"An active project needs at least {MIN_CRITERIA} criteria (this would leave {len(filled)}). "
            "Pause it in Settings first to use fewer."
        )
    return filled, problems


def _formset_data(rows: list[CriterionData]) -> dict[str, str]:
    data = {"form-TOTAL_FORMS": str(len(rows)), "form-INITIAL_FORMS": "0"}
    for i, row in enumerate(rows):
        for field in ("key", "name", "description"):
            data[f"form-{i}-{field}"] = row[field]
    return data


@require_http_methods(["GET", "POST"])
@login_required
def project_criteria(request: AuthedRequest, slug: str) -> HttpResponse:
    """The criteria editor. Buttons edit a draft carried in the form; "Review" shows the new version's changes;
    "Save" writes them through the rubric service (only if the rubric has not moved since the review)."""
    project = _lead_project(request, slug)
    current = selectors.rubric_current(project=project)
    saved = [
        CriterionData(key=c.key, name=c.name, description=c.description)
        for c in selectors.criteria_current(project=project)
    ]
    base = current.number if current else 0
    rows = saved
    problems: list[str] = []
    changes: list[RubricChange] = []
    reviewing = False
    stale = ""
    focus = ""
    action = request.POST.get("action", "")
    if request.method == "POST":
        rows = _rows_from_post(request.POST)
        try:
            posted_base = int(request.POST.get("base", base))
        except ValueError:
            posted_base = base
        if action == "save" and posted_base != base:
            # The summary the lead confirmed no longer describes what would be written: show the draft again.
            rows, problems = _checked(rows, project)
            problems.insert(0, f"Someone saved rubric v{base} while you were reviewing. Review your edits against it.")
        elif action in {"review", "save"}:
            rows, problems = _checked(rows, project)
            changes = [] if problems else rubric_diff(old=saved, new=rows)
            reviewing = not problems
            if posted_base != base:
                stale = (
                    f"Rubric v{base} was saved by someone else while you were editing: these changes are against it."
                )
        else:
            # Edits of the draft keep the version it started from, so its review can say when the rubric moved.
            rows, focus = _apply_edit(rows, action)
            base = posted_base
        if action == "save" and not problems:
            try:
                version = rubric_save_edit(
                    project=project,
                    criteria=rows,
                    base_number=posted_base,
                    actor=request.user,
                )
            except ValidationError as exc:
                problems, reviewing = list(exc.messages), False
            else:
                if version is None:
                    messages.info(request, "Nothing changed, so no new rubric version was made.")
                else:
                    messages.success(request, f"Saved rubric v{version.number}.")
                url = reverse("project_criteria", args=[project.slug])
                return HttpResponseClientRedirect(url) if wants_partial(request) else redirect(url)
    context = {
        "project": project,
        "current": current,
        "base": base,
        "next_number": base + 1,
        "formset": CriterionFormSet(initial=rows),
        "rows": rows,
        "saved_keys": {c["key"] for c in saved},
        "problems": problems,
        "changes": changes,
        "reviewing": reviewing,
        "stale": stale,
        "focus": focus,
        "min_criteria": MIN_CRITERIA,
        "consequence": (
            carry.rubric_consequence(current=current, new=[(r["key"], r["name"], r["description"]) for r in rows])
            if reviewing and changes and current is not None
            else None
        ),
        "versions": project.rubric_versions.order_by("-number").select_related("created_by")[:10],
    }
    template = "annotate/setup/criteria.html" + ("#editor" if wants_partial(request) else "")
    return render(request, template, context, status=_status(request, failed=bool(problems)))
