"""The labeling queue: claiming, renewing and skipping leased items."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User as AuthUser
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from annotate import selectors, skips
from annotate.models import Assignment, Item, Label, Project, RubricVersion
from annotate.rawsql import columns
from annotate.services.errors import QueueError

# --- The labeling queue ---------------------------------------------------------------------------------------
#
# Invariants, kept in the same transaction as the rows they count:
#   item.n_submitted = annotators who submitted every criterion of the current rubric version for the item;
#   item.n_leased    = assignments in state "leased" on the item (expired ones count until the sweep removes them).
# An item wants labels while n_submitted + n_leased < project.overlap. Every write that changes either count locks
# the item row first, so claims, submits, skips and the sweep serialise per item and never push it past its overlap.


def _lease_seconds() -> int:
    return int(settings.ASSIGNMENT_LEASE_SECONDS)


# Which of the project's items this annotator could be given now (the claim takes the first, in queue order);
# `/*unless*/` stands for a condition that stops the claim.
_CANDIDATE_WHERE = """
    WHERE i.project_id = %(project)s
      AND i.n_submitted < %(overlap)s  -- a bound on item_queue_idx: complete items are never scanned
      AND i.n_submitted + i.n_leased < %(overlap)s
      -- Items this annotator has not labeled on every criterion: none yet, or only the criteria carried over. A scalar
      -- subquery stays a per-candidate probe: PostgreSQL cannot turn it into an anti join. Only the item is an index
      -- condition (annotator and version are a FILTER): statistics taken before this annotator or this rubric version
      -- had labels (a new project's labels are too few to trigger autovacuum's ANALYZE on a large table) would
      -- otherwise have each probe read every label of the annotator or of the version, a cost that grows with them.
      AND (SELECT count(*) FILTER (WHERE l.annotator_id = %(user)s AND l.rubric_version_id = %(version)s)
           FROM annotate_label l WHERE l.item_id = i.id) < %(n_criteria)s
      AND NOT EXISTS (
          SELECT 1 FROM annotate_assignment a WHERE a.item_id = i.id AND a.annotator_id = %(user)s)
      /*unless*/
"""
# The claim's steps, shared by queue_claim and queue_next.
_CLAIM_STEPS = """
cand AS (
    SELECT i.id FROM annotate_item i
{candidate_where}
    ORDER BY i.n_submitted DESC, i.priority DESC, i.order_key
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
), bumped AS (
    UPDATE annotate_item i SET n_leased = i.n_leased + 1 FROM cand WHERE i.id = cand.id RETURNING {item_columns}
), leased AS (
    INSERT INTO annotate_assignment (item_id, annotator_id, rubric_version_id, state, expires_at, created_at)
    SELECT id, %(user)s, %(version)s, 'leased', %(expires)s, %(now)s FROM bumped
    RETURNING item_id
)""".replace("{item_columns}", columns(Item, "i")).replace("{candidate_where}", _CANDIDATE_WHERE.strip("\n"))
_CLAIM_SQL = "\n".join(
    (
        "WITH",
        _CLAIM_STEPS.replace("/*unless*/", ""),
        "SELECT bumped.* FROM bumped JOIN leased ON leased.item_id = bumped.id",
    )
)
# Whether an item waits for this annotator, locked or not. A claim skips the rows other claims and submits hold for a
# moment (SKIP LOCKED), so it can find nothing while items still want labels: that must not read as an empty queue.
_WANTED_SQL = "SELECT EXISTS (SELECT 1 FROM annotate_item i{where})".replace(
    "{where}", _CANDIDATE_WHERE.replace("/*unless*/", "")
)
_CLAIM_ATTEMPTS = 4


def _claim_pg(sql: str, params: dict[str, Any]) -> Item | None:
    """Run a claim statement; when it finds nothing but an item still waits behind another transaction's row lock
    (held for a few milliseconds), try again shortly, a few times, rather than tell the annotator the queue is empty."""
    for attempt in range(_CLAIM_ATTEMPTS):
        found = next(iter(Item.objects.raw(sql, params)), None)
        if found is not None:
            return found
        with connection.cursor() as cursor:
            cursor.execute(_WANTED_SQL, params)
            (waiting,) = cursor.fetchone()
        if not waiting or attempt == _CLAIM_ATTEMPTS - 1:
            return None
        time.sleep(0.005 * (attempt + 1))
    return None


# queue_next in one statement (one round trip on the hottest path): the annotator's oldest live lease that the page
# does not hold, else a fresh claim, which the found lease stops (all CTEs share one snapshot; at most one row).
_NEXT_MINE = """WITH mine AS (
    SELECT a.item_id AS id FROM annotate_assignment a JOIN annotate_item i ON i.id = a.item_id
    WHERE i.project_id = %(project)s AND a.annotator_id = %(user)s AND a.state = 'leased'
      AND a.rubric_version_id = %(version)s AND a.expires_at > %(now)s
      AND NOT (a.item_id = ANY(%(held)s::bigint[]))
    ORDER BY a.created_at, a.id
    LIMIT 1
),"""
_NEXT_SQL = "\n".join(
    (
        _NEXT_MINE,
        _CLAIM_STEPS.replace("/*unless*/", "AND NOT EXISTS (SELECT 1 FROM mine)"),
        "SELECT {item_columns} FROM mine JOIN annotate_item i ON i.id = mine.id",
        "UNION ALL",
        "SELECT bumped.* FROM bumped JOIN leased ON leased.item_id = bumped.id",
    )
).replace("{item_columns}", columns(Item, "i"))


def queue_claim(*, project: Project, annotator: AuthUser, rubric_version_id: int) -> Item | None:
    """Lease the next item this annotator should label, or None when the queue has nothing for them.

    Order: items closest to complete, then higher priority (today's production sample), then the stable shuffled
    order; only when no fresh item is left, the annotator's skipped items whose delay has passed, oldest skip first
    (annotate.skips: skipped items come back at the end of the queue). On PostgreSQL a fresh claim is one
    statement: the candidate row is locked with SKIP LOCKED, so concurrent claims never wait on each other, and the
    lease count lives on that row, so a claim that meets a row another claim just filled re-checks it against the
    new count (READ COMMITTED re-evaluation) instead of over-assigning it.
    """
    now = timezone.now()
    expires = now + dt.timedelta(seconds=_lease_seconds())
    params = {
        "project": project.pk,
        "overlap": project.overlap,
        "user": annotator.pk,
        "version": rubric_version_id,
        "n_criteria": len(selectors.criteria_of_version(rubric_version_id)),
        "now": now,
        "expires": expires,
    }
    if connection.vendor == "postgresql":
        # One statement, so atomic on its own: no transaction block needed around it.
        fresh = _claim_pg(_CLAIM_SQL, params)
        if fresh is not None:
            return fresh
        return skips.skip_claim_due(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
    # SQLite (the embedded demo): transactions take the write lock when they begin, so these steps are serialised.
    with transaction.atomic():
        item = (
            Item.objects.filter(project=project, n_submitted__lt=project.overlap - F("n_leased"))
            .annotate(
                mine=Subquery(
                    Label.objects.filter(item=OuterRef("pk"), annotator=annotator, rubric_version_id=rubric_version_id)
                    .order_by()
                    .values("item_id")
                    .annotate(n=Count("id"))
                    .values("n")[:1]
                )
            )
            .filter(Q(mine__isnull=True) | Q(mine__lt=params["n_criteria"]))
            .exclude(Exists(Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator)))
            .order_by("-n_submitted", "-priority", "order_key")
            .first()
        )
        if item is None:
            return skips.skip_claim_due(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
        Item.objects.filter(pk=item.pk).update(n_leased=F("n_leased") + 1)
        Assignment.objects.create(
            item=item, annotator=annotator, rubric_version_id=rubric_version_id, expires_at=expires
        )
        item.n_leased += 1
        return item


def queue_leased_items(*, project: Project, annotator: AuthUser, rubric_version_id: int) -> list[Item]:
    """The items this annotator holds live leases on in the project, oldest lease first."""
    return list(
        Item.objects.filter(
            project=project,
            assignments__annotator=annotator,
            assignments__state=Assignment.State.LEASED,
            assignments__rubric_version_id=rubric_version_id,
            assignments__expires_at__gt=timezone.now(),
        ).order_by("assignments__created_at", "assignments__id")
    )


def queue_fill(*, project: Project, annotator: AuthUser, rubric_version_id: int, want: int = 2) -> list[Item]:
    """The annotator's current item and the prefetched next one: their live leases, topped up to `want`."""
    items = queue_leased_items(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
    while len(items) < want:
        item = queue_claim(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
        if item is None:
            break
        items.append(item)
    return items


def queue_next(
    *, project: Project, annotator: AuthUser, rubric_version_id: int, holding: Collection[int] | None
) -> Item | None:
    """The next item for a labeling page that already holds the items `holding` (shown, prefetched, being submitted).

    One of this annotator's live leases that the page does not hold comes first, oldest first; only when there is
    none is a fresh item claimed. So a page that submits quickly, or hears its answers out of order, is handed back
    the items leased for it instead of collecting leases on items it never shows. `holding=None` (the client does
    not say) takes the page to hold all its leases: a fresh claim, as before pages said what they hold.
    """
    if holding is None:
        return queue_claim(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
    if connection.vendor == "postgresql":
        now = timezone.now()
        params = {
            "project": project.pk,
            "overlap": project.overlap,
            "user": annotator.pk,
            "version": rubric_version_id,
            "now": now,
            "expires": now + dt.timedelta(seconds=_lease_seconds()),
            "held": sorted(set(holding)),
            "n_criteria": len(selectors.criteria_of_version(rubric_version_id)),
        }
        found = _claim_pg(_NEXT_SQL, params)
        if found is not None:
            return found
        # No lease and no fresh item: the annotator's skipped items whose delay has passed (annotate.skips).
        return skips.skip_claim_due(project=project, annotator=annotator, rubric_version_id=rubric_version_id)
    held = set(holding)
    for item in queue_leased_items(project=project, annotator=annotator, rubric_version_id=rubric_version_id):
        if item.pk not in held:
            return item
    return queue_claim(project=project, annotator=annotator, rubric_version_id=rubric_version_id)


def queue_renew(*, project: Project, annotator: AuthUser) -> int:
    """Extend this annotator's live leases in the project (the page's heartbeat while they work)."""
    now = timezone.now()
    return Assignment.objects.filter(
        item__project=project, annotator=annotator, state=Assignment.State.LEASED, expires_at__gt=now
    ).update(expires_at=now + dt.timedelta(seconds=_lease_seconds()))


@transaction.atomic
def queue_skip(*, project: Project, annotator: AuthUser, item_id: int) -> None:
    """Release the item: others can have it at once. It stays out of this annotator's queue for the project's
    `skip_return_minutes`, then comes back at its end (annotate.skips). Skipping an item skipped already keeps the
    time of the first skip."""
    item = Item.objects.select_for_update().filter(project=project, pk=item_id).first()
    if item is None:
        raise QueueError("That item is not in this project.")
    now = timezone.now()
    changed = Assignment.objects.filter(item=item, annotator=annotator, state=Assignment.State.LEASED).update(
        state=Assignment.State.SKIPPED, skipped_at=now
    )
    if changed:
        Item.objects.filter(pk=item.pk).update(n_leased=F("n_leased") - changed)
    elif not Assignment.objects.filter(item=item, annotator=annotator).exists():
        Assignment.objects.create(
            item=item,
            annotator=annotator,
            rubric_version_id=RubricVersion.objects.filter(project=project)
            .order_by("-number")
            .values_list("pk", flat=True)[0],
            state=Assignment.State.SKIPPED,
            skipped_at=now,
            expires_at=now + dt.timedelta(seconds=_lease_seconds()),
        )
