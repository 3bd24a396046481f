"""Personal API tokens: list, create (shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from annotate import (
    tokens,
)
from annotate.forms import TokenCreateForm
from annotate.http import AuthedRequest, wants_partial


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def token_list(request: AuthedRequest) -> HttpResponse:
    """The user's API tokens. A new token's full text is in this one response and nowhere else, ever."""
    form = TokenCreateForm(request.POST or None)
    created = ""
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                _token, created = tokens.token_create(user=request.user, name=form.cleaned_data["name"])
            except ValidationError as exc:
                form.add_error("name", exc)
            else:
                form, status = TokenCreateForm(), 201
    context = {"tokens": request.user.api_tokens.all(), "form": form, "created": created}
    if wants_partial(request):
        # htmx swaps only 2xx answers, and the form with its error must show.
        return render(request, "annotate/tokens.html#tokens", context)
    return render(request, "annotate/tokens.html", context, status=status)


@require_POST
@login_required
def token_revoke(request: AuthedRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens at once; another user's token id is a 404."""
    token = tokens.token_revoke(user=request.user, token_id=token_id)
    if token is None:
        raise Http404("No such token.")
    if wants_partial(request):
        context = {"tokens": request.user.api_tokens.all(), "form": TokenCreateForm(), "created": ""}
        return render(request, "annotate/tokens.html#tokens", context)
    messages.success(request, f"Token “{token.name}” is revoked: it no longer opens the API.")
    return redirect("token_list")
