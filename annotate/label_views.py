"""The labeling page: the cards, submit (where a key press ends up), next, skip, undo, edit, heartbeat, progress."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from annotate import (
    carry,
    history,
    selectors,
    skips,
)
from annotate.http import AuthedRequest, wants_partial
from annotate.keymap import keymap
from annotate.models import Criterion, Item, Project
from annotate.services import labels as label_services
from annotate.services.errors import ItemNotNeeded, QueueError
from annotate.services.labels import label_values_from_form
from annotate.services.queue import queue_fill, queue_next, queue_renew, queue_skip
from annotate.splits import shown_order
from annotate.visibility import ItemShown, item_shown


@dataclass(frozen=True)
class ItemCard:
    """What the labeling form shows for one item: pairwise outputs already in the annotator's left/right order."""

    item: Item
    form_key: str
    shown_order: str | None
    left: str
    right: str
    # The external id and metadata the project lets labelers see (annotate.visibility): templates read these,
    # never item.external_id or item.metadata.
    shown: ItemShown
    # The criteria this annotator still owes on the item: all of them, or (labels carried over a rubric change) only
    # the added or redefined ones. `carried` says the others are kept from an earlier rubric version.
    criteria: tuple[Criterion, ...] = ()
    carried: bool = False


def _card(
    project: Project,
    item: Item | None,
    user_id: int | None,
    criteria: tuple[Criterion, ...] = (),
    carried: bool = False,
) -> ItemCard | None:
    if item is None:
        return None
    shown = shown_order(user_id, item.pk) if item.output_a or item.output_b else None
    left, right = (item.output_a, item.output_b) if shown != "ba" else (item.output_b, item.output_a)
    return ItemCard(
        item=item,
        form_key=uuid.uuid4().hex,
        shown_order=shown,
        left=left,
        right=right,
        shown=item_shown(project, item),
        criteria=criteria,
        carried=carried,
    )


def _cards(request: AuthedRequest, project: Project, items: list[Item]) -> list[ItemCard]:
    """The labeling forms of `items`, each asking only for the criteria this annotator still owes on it."""
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    missing = carry.criteria_missing(criteria=criteria, annotator=request.user, item_ids=[i.pk for i in items])
    cards = []
    for item in items:
        owed = missing.get(item.pk, criteria) or criteria
        card = _card(project, item, request.user.pk, owed, len(owed) < len(criteria))
        if card is not None:
            cards.append(card)
    return cards


def _keys(project: Project, page: str) -> dict[str, object]:
    """The page's keyboard map: the `?` overlay is rendered from `keymap`, label.js reads `keymap_data`."""
    bindings = keymap(page=page, kind=project.kind, allow_tie=project.allow_tie)
    return {"keymap": bindings, "keymap_data": [binding.as_data() for binding in bindings]}


def _label_context(request: AuthedRequest, project: Project, items: list[Item], **extra: object) -> dict[str, object]:
    """The labeling screen: the first item is shown, the others wait hidden (prefetched), in order."""
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    cards = _cards(request, project, items)
    return {
        "project": project,
        "criteria": criteria,
        "current": cards[0] if cards else None,
        "upcoming": cards[1:],
        "values": {},
        "note": "",
        "error": "",
        **extra,
    }


def _page_items(request: AuthedRequest) -> set[int] | None:
    """The items the labeling page says it holds (shown, prefetched, being submitted): its `page_items` fields.

    None when it does not say (a page from before it did, a scripted client): it is then taken to hold every lease.
    """
    if "page_items" not in request.POST:
        return None
    held = set()
    for raw in request.POST.getlist("page_items")[:100]:
        try:
            held.add(int(raw))
        except ValueError:
            continue
    return held


def _next_for_page(request: AuthedRequest, project: Project) -> HttpResponse:
    """The htmx answer to a skip or a refill: the page's next item, to wait hidden until it is shown.

    It is an item leased to this annotator that the page does not hold yet, or a fresh claim only when there is
    none, so answers that cross on a slow link never leave an item leased to someone whose page does not have it.
    """
    item = queue_next(
        project=project,
        annotator=request.user,
        rubric_version_id=project.current_rubric_id,  # type: ignore[arg-type]
        holding=_page_items(request),
    )
    return _render_next(request, project, item)


def _render_next(request: AuthedRequest, project: Project, item: Item | None) -> HttpResponse:
    upcoming = _cards(request, project, [item]) if item else []
    context = _label_context(request, project, [], upcoming=upcoming)
    if item is None:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)
    return render(request, "annotate/label.html#prefetched", context)


@require_GET
@login_required
def label_queue(request: AuthedRequest, slug: str) -> HttpResponse:
    """The labeling screen: the current item, with the next one already claimed and rendered (hidden)."""
    project, _role = selectors.project_for_user(request.user, slug)
    if project.status != Project.Status.ACTIVE or project.current_rubric_id is None:
        return render(request, "annotate/label.html", {"project": project, "inactive": True})
    items = queue_fill(project=project, annotator=request.user, rubric_version_id=project.current_rubric_id)
    # ?item=ID (a reopened skip, annotate.skip_views): that lease is shown first, the others wait behind it.
    first = request.GET.get("item", "")
    items.sort(key=lambda item: str(item.pk) != first)
    context = _label_context(request, project, items, **_keys(project, "queue"))
    if not items:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)
    return render(request, "annotate/label.html", context)


@require_POST
@login_required
def label_submit(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """Save every criterion of one item. htmx gets the page's next item back; a plain POST is redirected."""
    project, _role = selectors.project_for_user(request.user, slug)
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    if project.status != Project.Status.ACTIVE or not criteria:
        return _label_refused(request, project, item_id, "This project is not open for labeling right now.", 409)
    # Only the criteria the annotator still owes on the item (all of them when nothing was carried over); when they
    # owe none, the service recognises a repeated submit or says the item is already labeled.
    owed = carry.criteria_missing(criteria=criteria, annotator=request.user, item_ids=[item_id])[item_id]
    criteria = owed or tuple(c for c in criteria if f"c-{c.key}" in request.POST) or criteria
    shown = shown_order(request.user.pk, item_id) if project.is_pairwise else None
    values, problems = label_values_from_form(project=project, criteria=criteria, data=request.POST, shown=shown)
    note = request.POST.get("note", "")
    time_spent, key = _time_spent(request.POST.get("time_spent_ms")), request.POST.get("form_key", "")
    try:
        if problems:
            raise QueueError(" ".join(problems))
        # The page's next item is leased in the labels' own transaction (one commit). A plain POST is redirected to
        # the queue, which shows that lease next, as it would have leased it itself.
        _outcome, item = label_services.label_submit_then_next(
            project=project,
            annotator=request.user,
            item_id=item_id,
            criteria=criteria,
            values=values,
            note=note,
            time_spent_ms=time_spent,
            submission_key=key,
            holding=_page_items(request),
        )
    except ItemNotNeeded as exc:
        if not wants_partial(request):
            messages.warning(request, exc.message)
            return redirect("label_queue", slug=project.slug)
        return _label_refused(request, project, item_id, exc.message, exc.status)
    except QueueError as exc:
        return _label_refused(request, project, item_id, exc.message, exc.status, values=request.POST, note=note)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    return _render_next(request, project, item)


@require_POST
@login_required
def label_next(request: AuthedRequest, slug: str) -> HttpResponse:
    """The page has no item waiting and nothing on its way: send it the next one (htmx). Without htmx: the queue."""
    project, _role = selectors.project_for_user(request.user, slug)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    if project.status != Project.Status.ACTIVE or project.current_rubric_id is None:
        return _label_refused(request, project, 0, "This project is not open for labeling right now.", 409)
    return _next_for_page(request, project)


def _label_refused(
    request: AuthedRequest,
    project: Project,
    item_id: int,
    message: str,
    status: int,
    *,
    values: object = None,
    note: str = "",
) -> HttpResponse:
    """The reason, for the annotator. htmx: a short message in the `label-refused` event (HX-Trigger), which the
    page shows next to the form it keeps; it never reads the body. Without JavaScript: the form again, filled in."""
    if wants_partial(request):
        response = render(request, "annotate/label.html#error", {"error": message}, status=status)
        return trigger_client_event(response, "label-refused", {"message": message[:300]})
    item = Item.objects.filter(project=project, pk=item_id).first()
    context = _label_context(request, project, [item] if item else [], error=message, note=note)
    context.update(_keys(project, "queue"))
    if item is None:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)
    context["values"] = _display_values(project, values, shown_order(request.user.pk, item_id))
    return render(request, "annotate/label.html", context, status=status)


def _display_values(project: Project, data: object, shown: str) -> dict[str, str]:
    if not hasattr(data, "items"):
        return {}
    return {key[2:]: str(value) for key, value in data.items() if key.startswith("c-")}


def _time_spent(raw: str | None) -> int | None:
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return value if 0 <= value <= 24 * 3600 * 1000 else None


@require_POST
@login_required
def label_skip(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    project, _role = selectors.project_for_user(request.user, slug)
    try:
        queue_skip(project=project, annotator=request.user, item_id=item_id)
    except QueueError as exc:
        return _label_refused(request, project, item_id, exc.message, exc.status)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    return _next_for_page(request, project)


@require_POST
@login_required
def label_heartbeat(request: AuthedRequest, slug: str) -> HttpResponse:
    """Keeps this annotator's leases alive while the labeling page is open."""
    project, _role = selectors.project_for_user(request.user, slug)
    queue_renew(project=project, annotator=request.user)
    return HttpResponse(status=204)


@require_GET
@login_required
def label_undo(request: AuthedRequest, slug: str) -> HttpResponse:
    """Reopen the annotator's most recently submitted item in this project for correction."""
    project, _role = selectors.project_for_user(request.user, slug)
    last = selectors.labels_last_item(project=project, annotator=request.user)
    if last is None:
        messages.info(request, "Nothing to undo yet: you have not submitted an item in this project.")
        return redirect("label_queue", slug=project.slug)
    return redirect("label_edit", slug=project.slug, item_id=last)


@require_http_methods(["GET", "POST"])
@login_required
def label_edit(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """Change one's own labels on an item (Undo and history). Never shows anyone else's labels."""
    project, _role = selectors.project_for_user(request.user, slug)
    mine = selectors.labels_of_annotator(project=project, annotator=request.user, item_id=item_id)
    if not mine:
        raise Http404("You have no labels on that item.")
    item = mine[0].item
    # The criteria the annotator has labels on (an item whose labels were carried over a rubric change may still
    # owe the redefined ones: those are answered from the queue, not here).
    labeled = {label.criterion_id for label in mine}
    criteria = tuple(c for c in selectors.criteria_of_version(project.current_rubric_id) if c.pk in labeled)
    shown = shown_order(request.user.pk, item.pk) if project.is_pairwise else None
    error = ""
    if request.method == "POST":
        try:
            history.label_edit_from_form(
                project=project,
                annotator=request.user,
                item_id=item.pk,
                data=request.POST,
            )
        except QueueError as exc:
            error = exc.message
        else:
            messages.success(request, "Your labels were updated.")
            return redirect((request.POST.get("next") == "history" and "label_history") or "label_queue", slug=slug)
    by_key = {label.criterion.key: label for label in mine}
    display = {}
    for key, label in by_key.items():
        value = label.value
        if project.is_pairwise and value in {"a", "b"}:
            value = "left" if (value == "a") == (shown == "ab") else "right"
        display[key] = value
    back = request.GET.get("next", request.POST.get("next", ""))
    return render(
        request,
        "annotate/label_edit.html",
        {
            "project": project,
            "criteria": criteria,
            "card": _card(project, item, request.user.pk),
            "values": display,
            "revisions": {key: label.revision for key, label in by_key.items()},
            "note": mine[0].note,
            "error": error,
            "next": back,
            "cancel_url": reverse("label_history" if back == "history" else "label_queue", args=[project.slug]),
            **_keys(project, "edit"),
        },
        status=409 if error else 200,
    )


@require_GET
@login_required
def label_progress(request: AuthedRequest, slug: str) -> HttpResponse:
    """Labeled today, left for this annotator, project completion: loaded beside the labeling form."""
    project, _role = selectors.project_for_user(request.user, slug)
    progress = selectors.annotator_progress(project=project, annotator=request.user)
    return render(request, "annotate/label.html#progress", {"project": project, "progress": progress})
