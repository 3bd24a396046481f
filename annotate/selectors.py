"""Reads that views, commands and the API share, and the one access helper for projects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Least
from django.http import Http404
from django.utils import timezone

from annotate import throughput as throughput_store
from annotate.models import (
    AgreementReport,
    Assignment,
    Criterion,
    GoldLabel,
    Item,
    Label,
    Membership,
    Project,
    RubricVersion,
    ThroughputCount,
    ThroughputWatermark,
    shown_username,
)
from annotate.rawsql import columns


def project_role(user: User | AnonymousUser, project: Project) -> str | None:
    """The user's role in the project (staff act as leads everywhere), or None for an outsider."""
    if not user.is_authenticated or not user.is_active:
        return None
    if getattr(user, "is_staff", False):
        return Membership.Role.LEAD
    return (
        Membership.objects.filter(user=user, project=project, deactivated_at__isnull=True)
        .values_list("role", flat=True)
        .first()
    )


_PROJECT_FOR_USER_SQL = """
SELECT {project_columns}, m.role AS my_role FROM annotate_project p
LEFT JOIN annotate_membership m ON m.project_id = p.id AND m.user_id = %s AND m.deactivated_at IS NULL
WHERE p.slug = %s
""".replace("{project_columns}", columns(Project, "p"))


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
        projects = Project.objects.filter(memberships__user=user, memberships__deactivated_at__isnull=True)
    projects = projects.annotate(
        n_items=Count("items", distinct=True),
        n_labels_mine=Count("items__labels", filter=Q(items__labels__annotator=user), distinct=True),
    ).order_by("status", "name")
    roles = dict(Membership.objects.filter(user=user, deactivated_at__isnull=True).values_list("project_id", "role"))
    staff = getattr(user, "is_staff", False)
    return [
        ProjectRow(
            project=p,
            role=Membership.Role.LEAD if staff else roles[p.pk],
            n_items=p.n_items,
            n_labels_mine=p.n_labels_mine,
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
        cached = tuple(
            Criterion.objects.filter(rubric_version_id=rubric_version_id)
            .select_related("defined_in")
            .order_by("position")
        )
        if len(_CRITERIA_CACHE) > 1000:
            _CRITERIA_CACHE.clear()
        _CRITERIA_CACHE[rubric_version_id] = cached
    return cached


@dataclass(frozen=True)
class ProjectStats:
    n_items: int
    items_by_split: dict[str, int]
    n_labels: int | None  # None when not counted (the dashboard reads label counts from the stored report)
    n_labels_current: int | None
    n_complete: int
    n_live_leases: int
    n_annotators: int
    # Annotators' complete submissions under the current rubric, each item counted up to its overlap: with
    # n_items * overlap it gives the share of the labeling work done.
    n_submissions: int = 0
    work_total: int = 0  # n_items * overlap

    @property
    def work_pct(self) -> int:
        """Share of the labeling work done (submissions over items x overlap), rounded down so 100 means done."""
        return (100 * self.n_submissions) // self.work_total if self.work_total else 0

    @property
    def complete_pct(self) -> int:
        return (100 * self.n_complete) // self.n_items if self.n_items else 0


def project_stats(*, project: Project, count_labels: bool = True) -> ProjectStats:
    """Counts for the project page. An item is complete when `overlap` annotators submitted every criterion of the
    current rubric: the queue keeps that count on each item (n_submitted), so this reads the items, not the labels.

    Labels are counted once, grouped by rubric version (an index-only scan of label_version_created_idx), which gives
    both the total and the current version's count; the join through items that this replaced read every label row.
    """
    items = Item.objects.filter(project=project).aggregate(
        n=Count("id"),
        train=Count("id", filter=Q(split=Item.Split.TRAIN)),
        dev=Count("id", filter=Q(split=Item.Split.DEV)),
        test=Count("id", filter=Q(split=Item.Split.TEST)),
        complete=Count("id", filter=Q(n_submitted__gte=project.overlap)),
        submissions=Sum(Least("n_submitted", Value(project.overlap)), default=0),
    )
    per_version = labels_per_version(project=project) if count_labels else None
    return ProjectStats(
        n_items=items["n"],
        items_by_split={split: items[split] for split in Item.Split.values},
        n_labels=sum(per_version.values()) if per_version is not None else None,
        n_labels_current=per_version.get(project.current_rubric_id or 0, 0) if per_version is not None else None,
        n_complete=items["complete"],
        n_live_leases=Assignment.objects.filter(
            item__project=project, state=Assignment.State.LEASED, expires_at__gt=timezone.now()
        ).count(),
        n_annotators=project.memberships.filter(role=Membership.Role.ANNOTATOR, deactivated_at__isnull=True).count(),
        n_submissions=items["submissions"],
        work_total=items["n"] * project.overlap,
    )


def labels_per_version(*, project: Project) -> dict[int, int]:
    """How many labels each rubric version of the project holds, by rubric version id, in one grouped count."""
    return dict(
        Label.objects.filter(rubric_version__project=project)
        .values_list("rubric_version_id")
        .annotate(n=Count("id"))
        .values_list("rubric_version_id", "n")
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
    # Items this annotator has answered on every criterion: one whose labels were only carried over a rubric change
    # still waits for them on the added or redefined criteria.
    n_criteria = len(criteria_of_version(project.current_rubric_id))
    mine_open = (
        mine.filter(item__n_submitted__lt=project.overlap)
        .values("item_id")
        .annotate(n=Count("id"))
        .filter(n__gte=n_criteria)
        .count()
    )
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


# --- The lead's dashboard -------------------------------------------------------------------------------------
#
# Everything here reads stored figures (the agreement report, judge run reports) or counts through an index, so the
# page stays fast whatever the number of labels: throughput reads the stored daily counts plus the labels given since
# the last beat pass (annotate.throughput).


@dataclass(frozen=True)
class AnnotatorThroughput:
    username: str
    per_day: list[int]  # labels per local day, oldest first, `days` long
    last_7: int
    last_14: int

    @property
    def active_days(self) -> int:
        return sum(1 for n in self.per_day if n)


@dataclass(frozen=True)
class Throughput:
    days: list[dt.date]  # oldest first
    annotators: list[AnnotatorThroughput]  # most labels in the window first
    per_day: list[int]  # the whole team, per day

    @property
    def total_7(self) -> int:
        return sum(a.last_7 for a in self.annotators)

    @property
    def total_14(self) -> int:
        return sum(a.last_14 for a in self.annotators)


def labels_since(*, project: Project, since: dt.datetime) -> int:
    """Labels given under the current rubric version after `since` (a range read of label_version_created_idx)."""
    if project.current_rubric_id is None:
        return 0
    return Label.objects.filter(rubric_version_id=project.current_rubric_id, created_at__gt=since).count()


def _counted_through(project: Project) -> int:
    found = ThroughputWatermark.objects.filter(project=project).values_list("counted_through", flat=True).first()
    return found or 0


def throughput(*, project: Project, days: int = 14, today: dt.date | None = None) -> Throughput:
    """Labels created per annotator per day (settings.TIME_ZONE) over the last `days` days, today included, under
    every rubric version, exact to the moment of the read.

    The stored counts (annotate.throughput, kept by a beat pass) cover the labels up to the project's watermark;
    the labels after it, a minute's worth when beat keeps up, are counted here through the primary key. Both are
    read in one statement, between two reads of the watermark: it only ever grows, and the counts move with it in
    one transaction, so equal reads mean the statement saw counts and watermark that agree.
    """
    today = today or timezone.localdate(timezone=timezone.get_default_timezone())
    first = today - dt.timedelta(days=days - 1)
    tz = timezone.get_default_timezone()
    since = dt.datetime.combine(first, dt.time.min, tzinfo=tz)
    window = [first + dt.timedelta(days=i) for i in range(days)]
    index = {day: i for i, day in enumerate(window)}
    counted = _counted_through(project)
    for _ in range(5):
        stored = (
            ThroughputCount.objects.filter(project=project, day__gte=first, day__lte=today)
            .order_by()
            .values_list("annotator_id", "day", "n")
        )
        recent = throughput_store.per_annotator_day(project=project, after=counted).filter(created_at__gte=since)
        rows = list(stored.union(recent, all=True))
        again = _counted_through(project)
        if again == counted:
            break
        counted = again  # a pass committed in between: read again (at most once a minute)
    counts: dict[int, list[int]] = {}
    for annotator_id, day, n in rows:
        if day in index:
            counts.setdefault(annotator_id, [0] * days)[index[day]] += n
    names = {
        pk: shown_username(username)
        for pk, username in User.objects.filter(pk__in=list(counts)).values_list("pk", "username")
    }
    annotators = sorted(
        (
            AnnotatorThroughput(
                username=names.get(uid, "?"), per_day=per_day, last_7=sum(per_day[-7:]), last_14=sum(per_day[-14:])
            )
            for uid, per_day in counts.items()
        ),
        key=lambda a: (-a.last_14, a.username),
    )
    return Throughput(
        days=window,
        annotators=annotators,
        per_day=[sum(a.per_day[i] for a in annotators) for i in range(days)],
    )


@dataclass(frozen=True)
class CriterionSummary:
    """One criterion of the stored agreement report, as the dashboard shows it."""

    key: str
    name: str
    n_items: int
    n_labels: int
    alpha: dict[str, Any]
    kappa: dict[str, Any]
    percent: dict[str, Any]
    n_needs_adjudication: int
    n_gold: int


def agreement_summary(*, report: AgreementReport | None, criteria: Sequence[Criterion]) -> list[CriterionSummary]:
    """Per criterion of the current rubric: the stored human–human figures and the adjudication queue's size."""
    sections = report.data.get("criteria", {}) if report is not None else {}
    out = []
    for criterion in criteria:
        section = sections.get(criterion.key)
        if section is None:
            continue
        human, consensus = section.get("human", {}), section.get("consensus", {})
        out.append(
            CriterionSummary(
                key=criterion.key,
                name=criterion.name,
                n_items=human.get("n_items", 0),
                n_labels=human.get("n_labels", 0),
                alpha=human.get("krippendorff_alpha", {}),
                kappa=human.get("fleiss_kappa", {}),
                percent=human.get("percent_agreement", {}),
                n_needs_adjudication=consensus.get("n_needs_adjudication", 0),
                n_gold=consensus.get("n_gold", 0),
            )
        )
    return out
