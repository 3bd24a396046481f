"""The production-quality page of a judge run: the criterion's pass rate on production records three ways (PPI++,
human labels only, Rogan–Gladen), and the corrected difference between two groups of records such as two releases.

Leads only, like every judge page: `annotate.selectors.project_for_user(..., role="lead")`, then the run inside it.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotate import selectors as annotate_selectors
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Membership
from judges import production, selectors


@require_GET
@login_required
def run_production(request: AuthedRequest, slug: str, run_id: int) -> HttpResponse:
    """?field=&a=&b= compares the records whose metadata `field` is `a` with those where it is `b`; the form
    re-renders only its result (htmx) or the whole page (without JavaScript)."""
    project, _role = annotate_selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    run = selectors.run_for_project(project=project, run_id=run_id)
    found = production.production(
        run=run,
        compare_field=request.GET.get("field", "").strip(),
        first=request.GET.get("a", "").strip(),
        second=request.GET.get("b", "").strip(),
    )
    context = {"project": project, "run": run, "judge": run.version.judge, "version": run.version, "p": found}
    if wants_partial(request):
        return render(request, "judges/run_production.html#compare", context)
    return render(request, "judges/run_production.html", context)
