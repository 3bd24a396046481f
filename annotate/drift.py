"""Criteria drift: how the rubric changed over its versions, what the labels of each version say, and the items that
were labeled under an older version but not yet under the current one (with the service that queues them again).

Selectors and the one service live here together because they share one definition: an item is *outdated* when it
has labels under some older rubric version of its project and none under the current version on the criteria that
version added or redefined (the labels of the criteria it kept were carried over: annotate.carry). Items that
already have such a label are in progress; the queue serves them first anyway (n_submitted DESC).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate import enqueue, reports
from annotate.models import (
    AgreementReport,
    Criterion,
    Item,
    Label,
    Project,
    RelabelRequest,
    RubricVersion,
)

# --- The timeline of rubric versions --------------------------------------------------------------------------


@dataclass(frozen=True)
class CriterionChange:
    key: str
    name: str
    what: str  # "added", "removed", "renamed", "definition changed", "renamed, definition changed"
    before: str = ""  # the previous definition, when it changed
    after: str = ""


@dataclass(frozen=True)
class RubricDiff:
    added: list[CriterionChange] = field(default_factory=list)
    removed: list[CriterionChange] = field(default_factory=list)
    changed: list[CriterionChange] = field(default_factory=list)
    reordered: bool = False

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.reordered)

    @property
    def changes(self) -> list[CriterionChange]:
        return [*self.added, *self.changed, *self.removed]


def rubric_diff(before: list[Criterion], after: list[Criterion]) -> RubricDiff:
    """What changed from one version's criteria to the next one's, matched by key (a pure function of the rows)."""
    old = {c.key: c for c in before}
    new = {c.key: c for c in after}
    added = [
        CriterionChange(key=c.key, name=c.name, what="added", after=c.description) for c in after if c.key not in old
    ]
    removed = [
        CriterionChange(key=c.key, name=c.name, what="removed", before=c.description)
        for c in before
        if c.key not in new
    ]
    changed = []
    for c in after:
        prev = old.get(c.key)
        if prev is None:
            continue
        what = []
        if prev.name.strip() != c.name.strip():
            what.append("renamed")
        if prev.description.strip() != c.description.strip():
            what.append("definition changed")
        if what:
            changed.append(
                CriterionChange(
                    key=c.key, name=c.name, what=", ".join(what), before=prev.description, after=c.description
                )
            )
    kept_old = [c.key for c in before if c.key in new]
    kept_new = [c.key for c in after if c.key in old]
    return RubricDiff(added=added, removed=removed, changed=changed, reordered=kept_old != kept_new)


@dataclass(frozen=True)
class CriterionAgreement:
    key: str
    name: str
    alpha: dict[str, Any]  # a stored figure: value, ci_low, ci_high, n (reports.figure_json)
    kappa: dict[str, Any]
    n_labels: int


@dataclass(frozen=True)
class VersionRow:
    version: RubricVersion
    criteria: list[Criterion]
    diff: RubricDiff | None  # None for the first version
    n_labels: int
    report: AgreementReport | None
    report_stale: bool  # labels were added under this version since its report was computed
    agreement: list[CriterionAgreement]
    is_current: bool


def rubric_timeline(*, project: Project) -> list[VersionRow]:
    """Every rubric version of the project, newest first, with its changes, label count and stored agreement.

    Four queries whatever the number of versions: versions, criteria, label counts, stored reports. Agreement comes
    from the stored reports (one per version; see version_report_store); nothing is computed here.
    """
    versions = list(project.rubric_versions.select_related("created_by").order_by("number"))
    criteria: dict[int, list[Criterion]] = {v.pk: [] for v in versions}
    for c in Criterion.objects.filter(rubric_version__project=project).order_by("rubric_version_id", "position"):
        criteria[c.rubric_version_id].append(c)
    counts = dict(
        Label.objects.filter(rubric_version__project=project)
        .values_list("rubric_version_id")
        .annotate(n=Count("id"))
        .values_list("rubric_version_id", "n")
    )
    stored = {r.rubric_version_id: r for r in AgreementReport.objects.filter(project=project)}
    rows: list[VersionRow] = []
    previous: list[Criterion] | None = None
    for version in versions:
        report = stored.get(version.pk)
        sections = report.data.get("criteria", {}) if report is not None else {}
        agreement = [
            CriterionAgreement(
                key=c.key,
                name=c.name,
                alpha=sections[c.key]["human"].get("krippendorff_alpha", {}),
                kappa=sections[c.key]["human"].get("fleiss_kappa", {}),
                n_labels=sections[c.key]["human"].get("n_labels", 0),
            )
            for c in criteria[version.pk]
            if c.key in sections
        ]
        n_labels = counts.get(version.pk, 0)
        rows.append(
            VersionRow(
                version=version,
                criteria=criteria[version.pk],
                diff=None if previous is None else rubric_diff(previous, criteria[version.pk]),
                n_labels=n_labels,
                report=report,
                report_stale=report is not None and report.n_labels != n_labels,
                agreement=agreement,
                is_current=version.pk == project.current_rubric_id,
            )
        )
        previous = criteria[version.pk]
    return rows[::-1]


def versions_needing_report(rows: list[VersionRow]) -> list[RubricVersion]:
    """Versions with labels whose agreement is not stored, or was stored before some of their labels."""
    return [r.version for r in rows if r.n_labels and (r.report is None or r.report_stale)]


def version_report_store(*, rubric_version: RubricVersion) -> AgreementReport:
    """Compute and store the human–human report of one rubric version (any version, not only the current one).

    Same figures and shape as the current version's report (reports.human_report); labels under an older version
    rarely change, so its stored report stays valid until one is added (rubric_timeline then marks it stale).
    """
    return reports.report_store(project=rubric_version.project, rubric_version=rubric_version)


# --- Items labeled under an older version ---------------------------------------------------------------------


@contextmanager
def hash_joins() -> Iterator[None]:
    """A transaction in which PostgreSQL may not plan nested loops: run the outdated-item queries inside it.

    Right after a rubric change the planner's statistics say the new version has no labels; until the next ANALYZE
    it then prefers, for "no label under the current version", a nested loop that rescans every current-version
    label for each item: minutes on a project with 100,000 items. Hash joins cost one pass over the labels whatever
    the statistics say (0.4-0.7 s at 1,000,000 labels, measured).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_nestloop = off")
        yield


def items_outdated(*, project: Project) -> QuerySet[Item]:
    """Items with labels under an older rubric version of the project and none under the current one on its added or
    redefined criteria, oldest first.

    Evaluate inside hash_joins(). With no current version nothing can be outdated.
    """
    if project.current_rubric_id is None:
        return Item.objects.none()
    current = project.current_rubric_id
    labels = Label.objects.filter(item=OuterRef("pk"))
    # Labels of the criteria the current version kept were carried into it; the ones it added or redefined are
    # what an item labeled before lacks. With none of those (a reorder, a removal), any current label will do.
    redefined = [c.pk for c in Criterion.objects.filter(rubric_version_id=current, defined_in_id=current)]
    wanted = labels.filter(rubric_version_id=current)
    if redefined:
        wanted = wanted.filter(criterion_id__in=redefined)
    return (
        Item.objects.filter(project=project)
        .filter(Exists(labels.exclude(rubric_version_id=current)))
        .exclude(Exists(wanted))
        .order_by("id")
    )


@dataclass(frozen=True)
class OutdatedItem:
    item: Item
    versions: list[int]  # rubric version numbers the item has labels under
    n_labels: int


def outdated_page_rows(*, project: Project, items: list[Item]) -> list[OutdatedItem]:
    """The older versions and label counts of one page of outdated items, in one grouped query."""
    found: dict[int, dict[int, int]] = {}
    for item_id, number, n in (
        # Copies carried into a later version are the same labels: counted once, under the version they were given.
        Label.objects.filter(item_id__in=[i.pk for i in items], carried=False)
        .values_list("item_id", "rubric_version__number")
        .annotate(n=Count("id"))
        .values_list("item_id", "rubric_version__number", "n")
    ):
        found.setdefault(item_id, {})[number] = n
    return [
        OutdatedItem(
            item=item,
            versions=sorted(found.get(item.pk, {})),
            n_labels=sum(found.get(item.pk, {}).values()),
        )
        for item in items
    ]


@dataclass(frozen=True)
class RelabelOutcome:
    n_queued: int  # items raised to the re-labeling priority by this call
    n_outdated: int  # items labeled under an older version only, after this call (all of them queued)
    n_released: int  # items that had the re-labeling priority but are no longer outdated


def relabel_queue(*, project: Project, actor: AbstractBaseUser | AnonymousUser | None = None) -> RelabelOutcome:
    """Queue every outdated item for re-labeling under the current rubric version. Idempotent.

    The queue already offers outdated items (no one has submitted them under the current version), but among items
    equally far from complete it orders by priority: raising them to Item.PRIORITY_RELABEL makes it serve them before
    items nobody has labeled yet, so an annotator who labeled an item under an older version meets it again first.
    Items that carry the re-labeling priority but are no longer outdated (someone labeled them under the current
    version since) go back to the normal priority. Running it twice changes nothing the second time.
    """
    with hash_joins():
        outdated = items_outdated(project=project)
        n_queued = (
            Item.objects.filter(pk__in=outdated.values("pk"))
            .exclude(priority=Item.PRIORITY_RELABEL)
            .update(priority=Item.PRIORITY_RELABEL)
        )
        n_released = (
            Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL)
            .exclude(pk__in=outdated.values("pk"))
            .update(priority=Item.PRIORITY_NORMAL)
        )
        n_outdated = outdated.count()
    return RelabelOutcome(n_queued=n_queued, n_outdated=n_outdated, n_released=n_released)


def relabel_request(*, project: Project, actor: AbstractBaseUser | AnonymousUser | None = None) -> RelabelRequest:
    """Record a lead's wish to queue the outdated items (or return the one already waiting) and hand it to the worker
    once the transaction commits: queueing reads every label of the project, seconds on a large one, so the request
    does not wait for it. Asking twice before the worker ran asks once (one open request per project)."""
    user = actor if isinstance(actor, User) else None
    with transaction.atomic():
        request, _ = RelabelRequest.objects.get_or_create(
            project=project, status=RelabelRequest.Status.QUEUED, defaults={"requested_by": user}
        )
    # Enqueued again for a waiting request too: a lost message then costs one more press, and a second run of the
    # task finds nothing open.
    enqueue.after_commit("annotate.tasks.relabel_request_run", project.pk)
    return request


def relabel_request_run(*, project: Project) -> RelabelRequest | None:
    """Carry out the project's open re-labeling request, if any: queue the outdated items and mark it done, in one
    transaction that holds the request row, so a redelivered or concurrent task finds nothing to do and a worker that
    dies leaves the request open for the next one."""
    with transaction.atomic():
        request = (
            RelabelRequest.objects.select_for_update(skip_locked=True)
            .filter(project=project, status=RelabelRequest.Status.QUEUED)
            .first()
        )
        if request is None:
            return None
        outcome = relabel_queue(project=project, actor=request.requested_by)
        request.status = RelabelRequest.Status.DONE
        request.finished_at = timezone.now()
        request.rubric_version_id = project.current_rubric_id
        request.n_queued, request.n_outdated, request.n_released = (
            outcome.n_queued,
            outcome.n_outdated,
            outcome.n_released,
        )
        request.save()
    return request


RELABEL_WAIT_SECONDS = 60


@dataclass(frozen=True)
class RelabelState:
    open: RelabelRequest | None  # waiting for the worker
    last_done: RelabelRequest | None

    @property
    def overdue(self) -> bool:
        """The open request has waited longer than the work takes: the page offers to ask again (which enqueues the
        task again, in case its message was lost, and still asks once)."""
        return (
            self.open is not None and (timezone.now() - self.open.requested_at).total_seconds() > RELABEL_WAIT_SECONDS
        )


def relabel_state(*, project: Project) -> RelabelState:
    """The project's waiting re-labeling request and its latest finished one, for the drift page.

    No request is made while one is open, so the open one is always the newest and the latest done is among the two.
    """
    newest = list(RelabelRequest.objects.filter(project=project).select_related("rubric_version").order_by("-id")[:2])
    return RelabelState(
        open=next((r for r in newest if r.status == RelabelRequest.Status.QUEUED), None),
        last_done=next((r for r in newest if r.status == RelabelRequest.Status.DONE), None),
    )


@dataclass(frozen=True)
class OutdatedCounts:
    n_outdated: int
    n_queued: int  # of which already carry the re-labeling priority


def outdated_counts(*, project: Project) -> OutdatedCounts:
    """How many items are outdated and how many of them are queued for re-labeling, in one pass."""
    with hash_joins():
        found = items_outdated(project=project).aggregate(
            n=Count("id"), queued=Count("id", filter=Q(priority=Item.PRIORITY_RELABEL))
        )
    return OutdatedCounts(n_outdated=found["n"], n_queued=found["queued"])
