"""Reads that views, commands and the API share, and the one access helper for projects."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from annotate.models import Assignment, Criterion, GoldLabel, Item, Label, Membership, Project, RubricVersion


def project_role(user: User | AnonymousUser, project: Project) -> str | None:
    """The user's role in the project (staff act as leads everywhere), or None for an outsider."""
    if not user.is_authenticated or not user.is_active:
        return None
    if getattr(user, "is_staff", False):
        return Membership.Role.LEAD
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


_PROJECT_FOR_USER_SQL = """
SELECT p.*, m.role AS my_role FROM annotate_project p
LEFT JOIN annotate_membership m ON m.project_id = p.id AND m.user_id = %s
WHERE p.slug = %s
"""


def project_for_user(user: User | AnonymousUser, slug: str, *, role: str | None = None) -> tuple[Project, str]:
    """The project `slug` and the user's role in it, or 404.

    Every view and API call that touches a project goes through here. A user who is not a member, or an annotator
    asking for a lead's page, gets the same 404 as for a project that does not exist: nobody learns that a project
    exists by guessing its slug.
    """
    # One query for the project and the caller's membership: every page and API call starts here.
    project = next(iter(Project.objects.raw(_PROJECT_FOR_USER_SQL, [user.pk or 0, slug])), None)
    if project is None:
        raise Http404("No such project.")
    if not user.is_authenticated or not user.is_active:
        user_role = None
    elif getattr(user, "is_staff", False):
        user_role = Membership.Role.LEAD
    else:
        user_role = project.my_role  # type: ignore[attr-defined]
    if user_role is None or (role == Membership.Role.LEAD and user_role != Membership.Role.LEAD):
        raise Http404("No such project.")
    return project, user_role


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    role: str
    n_items: int
    n_labels_mine: int


def projects_for_user(user: User) -> list[ProjectRow]:
    """The projects a user may open with their role and counts, in one query. Archived projects come last."""
    if getattr(user, "is_staff", False):
        projects: QuerySet[Project] = Project.objects.all()
    else:
        projects = Project.objects.filter(memberships__user=user)
    projects = projects.annotate(
        n_items=Count("items", distinct=True),
        n_labels_mine=Count("items__labels", filter=Q(items__labels__annotator=user), distinct=True),
    ).order_by("status", "name")
    roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    staff = getattr(user, "is_staff", False)
    return [
        ProjectRow(
            project=p,
            role=Membership.Role.LEAD if staff else roles[p.pk],
            n_items=p.n_items,  # type: ignore[attr-defined]
            n_labels_mine=p.n_labels_mine,  # type: ignore[attr-defined]
        )
        for p in projects
    ]


def rubric_current(*, project: Project) -> RubricVersion | None:
    return project.rubric_versions.order_by("-number").first()


def criteria_current(*, project: Project) -> QuerySet[Criterion]:
    """The criteria of the project's newest rubric version, in order."""
    return Criterion.objects.filter(
        rubric_version__project=project,
        rubric_version__number=project.rubric_versions.order_by("-number").values("number")[:1],
    ).order_by("position")


# Criteria of a rubric version never change (an edit makes a new version), so each process keeps them once.
_CRITERIA_CACHE: dict[int, tuple[Criterion, ...]] = {}


def criteria_of_version(rubric_version_id: int | None) -> tuple[Criterion, ...]:
    """The criteria of one rubric version, in order; served from memory after the first read."""
    if rubric_version_id is None:
        return ()
    cached = _CRITERIA_CACHE.get(rubric_version_id)
    if cached is None:
        cached = tuple(Criterion.objects.filter(rubric_version_id=rubric_version_id).order_by("position"))
        if len(_CRITERIA_CACHE) > 1000:
            _CRITERIA_CACHE.clear()
        _CRITERIA_CACHE[rubric_version_id] = cached
    return cached


@dataclass(frozen=True)
class ProjectStats:
    n_items: int
    items_by_split: dict[str, int]
    n_labels: int
    n_labels_current: int
    n_complete: int
    n_live_leases: int
    n_annotators: int


def project_stats(*, project: Project) -> ProjectStats:
    """Counts for the project page. An item is complete when `overlap` annotators submitted every criterion of the
    current rubric: the queue keeps that count on each item (n_submitted), so this reads an index, not the labels."""
    by_split = dict(
        Item.objects.filter(project=project).values_list("split").annotate(n=Count("id")).values_list("split", "n")
    )
    labels = Label.objects.filter(item__project=project)
    return ProjectStats(
        n_items=sum(by_split.values()),
        items_by_split={split: by_split.get(split, 0) for split in Item.Split.values},
        n_labels=labels.count(),
        n_labels_current=Label.objects.filter(rubric_version_id=project.current_rubric_id).count()
        if project.current_rubric_id
        else 0,
        n_complete=Item.objects.filter(project=project, n_submitted__gte=project.overlap).count(),
        n_live_leases=Assignment.objects.filter(
            item__project=project, state=Assignment.State.LEASED, expires_at__gt=timezone.now()
        ).count(),
        n_annotators=project.memberships.filter(role=Membership.Role.ANNOTATOR).count(),
    )


def labels_last_item(*, project: Project, annotator: User) -> int | None:
    """The item this annotator most recently submitted in the project (current rubric), for Undo."""
    return (
        Label.objects.filter(item__project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
        .order_by("-created_at", "-id")
        .values_list("item_id", flat=True)
        .first()
    )


def labels_of_annotator(*, project: Project, annotator: User, item_id: int) -> list[Label]:
    """One annotator's own labels on one item under the current rubric (never anyone else's)."""
    return list(
        Label.objects.filter(
            item__project=project, item_id=item_id, annotator=annotator, rubric_version_id=project.current_rubric_id
        )
        .select_related("item", "criterion")
        .order_by("criterion__position")
    )


def history_of_annotator(*, project: Project, annotator: User) -> QuerySet[Item]:
    """Items this annotator labeled in the project under the current rubric, newest first."""
    return (
        Item.objects.filter(
            project=project, labels__annotator=annotator, labels__rubric_version_id=project.current_rubric_id
        )
        .annotate(
            labeled_at=Max("labels__created_at"),
            n_fail=Count("labels", filter=Q(labels__value="fail", labels__annotator=annotator)),
        )
        .order_by("-labeled_at", "-id")
    )


@dataclass(frozen=True)
class AnnotatorProgress:
    labeled_today: int
    left_for_me: int
    n_items: int
    n_complete: int

    @property
    def completion_pct(self) -> int:
        return round(100 * self.n_complete / self.n_items) if self.n_items else 0


def annotator_progress(*, project: Project, annotator: User) -> AnnotatorProgress:
    """Counts for the labeling screen's progress panel (off the submit path: the page loads it separately)."""
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Label.objects.filter(item__project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
    counts = Item.objects.filter(project=project).aggregate(
        n_items=Count("id"),
        n_complete=Count("id", filter=Q(n_submitted__gte=project.overlap)),
        n_open=Count("id", filter=Q(n_submitted__lt=project.overlap)),
    )
    mine_open = mine.filter(item__n_submitted__lt=project.overlap).values("item_id").distinct().count()
    return AnnotatorProgress(
        labeled_today=mine.filter(created_at__gte=today).values("item_id").distinct().count(),
        left_for_me=max(0, counts["n_open"] - mine_open),
        n_items=counts["n_items"],
        n_complete=counts["n_complete"],
    )


@dataclass(frozen=True)
class AdjudicationItem:
    item: Item
    labels: list[Label]
    gold: GoldLabel | None


def items_for_adjudication(*, project: Project, criterion: Criterion, item_ids: list[int]) -> list[AdjudicationItem]:
    """Items with every annotator's label and note on one criterion, for a lead (never shown to annotators)."""
    items = {i.pk: i for i in Item.objects.filter(project=project, pk__in=item_ids)}
    labels: dict[int, list[Label]] = {}
    for label in (
        Label.objects.filter(item_id__in=items, criterion=criterion).select_related("annotator").order_by("created_at")
    ):
        labels.setdefault(label.item_id, []).append(label)
    gold = {g.item_id: g for g in GoldLabel.objects.filter(item_id__in=items, criterion=criterion)}
    return [
        AdjudicationItem(item=items[pk], labels=labels.get(pk, []), gold=gold.get(pk)) for pk in item_ids if pk in items
    ]
