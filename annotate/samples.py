"""The daily look at real traffic: pipelines send production records; once a day a seeded random sample of the
previous day's records joins the labeling queue ahead of other items, with a structural drift check beside it.

Why a day's records and a seed from (project, day): the same day always yields the same sample, on any machine and
however often the job runs, so a lead can reproduce it, and the unique DailySample row makes the job idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.db.models.functions import Length
from django.utils import timezone

from annotate.imports.checking import RowError, item_checker, item_values
from annotate.imports.report import MAX_REPORTED_ERRORS, ImportInvalid
from annotate.imports.runs import lock_project_writes
from annotate.models import DailySample, Item, ProductionRecord, Project

log = logging.getLogger(__name__)

# How many rows of each side the drift check reads: enough for stable quantiles, cheap on a large project.
DRIFT_ROWS = 5000
# A length distribution has shifted when the two-sample Kolmogorov-Smirnov distance is at least this large, or the
# median length changed by more than this factor; a field is newly missing when this many more percent are empty.
DRIFT_KS = 0.3
DRIFT_MEDIAN_FACTOR = 2.0
DRIFT_EMPTY_POINTS = 10.0
DRIFT_MIN_ROWS = 20


@dataclass(frozen=True)
class ReceiveResult:
    received: int
    duplicates: int


def records_receive(*, project: Project, rows: Iterable[tuple[int, dict[str, Any] | RowError]]) -> ReceiveResult:
    """Store production records, all or nothing, with the same checks as item imports (imports.ImportInvalid).

    A record whose content already arrived today is a duplicate and is not stored twice.
    """
    checker = item_checker(project, source=Item.Source.SAMPLE)
    now = timezone.now()
    today = timezone.localdate(now)
    errors: list[RowError] = []
    records: dict[str, ProductionRecord] = {}
    n = 0
    for line, row in rows:
        n += 1
        checked = row if isinstance(row, RowError) else checker.check(line, row)
        if isinstance(checked, RowError):
            errors.append(checked)
        elif isinstance(checked, list):
            errors += checked
        elif not errors:
            records.setdefault(
                checked.content_hash,
                ProductionRecord(
                    project=project,
                    external_id=checked.external_id if checked.external_id != checked.content_hash else "",
                    metadata=checked.metadata,
                    content_hash=checked.content_hash,
                    received_at=now,
                    received_on=today,
                    **checked.content,
                ),
            )
    if errors:
        raise ImportInvalid(errors[:MAX_REPORTED_ERRORS], len(errors))
    with transaction.atomic():
        known = set(
            ProductionRecord.objects.filter(
                project=project, received_on=today, content_hash__in=list(records)
            ).values_list("content_hash", flat=True)
        )
        fresh = [record for digest, record in records.items() if digest not in known]
        # ignore_conflicts: a concurrent request with the same record wins the race; this one counts it as known.
        ProductionRecord.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
    return ReceiveResult(received=len(fresh), duplicates=n - len(fresh))


def sample_seed(*, project: Project, day: dt.date) -> str:
    return hashlib.sha256(f"{project.slug}\x1f{day.isoformat()}".encode()).hexdigest()


def _rank(seed: str, content_hash: str) -> bytes:
    # A seeded pseudo-random order: sorting records by this is a random permutation fixed by (project, day).
    return hashlib.sha256(f"{seed}\x1f{content_hash}".encode()).digest()


def sample_take(*, project: Project, day: dt.date) -> tuple[DailySample, bool]:
    """Take the project's sample for `day` from the records received the day before. Returns (sample, created).

    Running it again for the same day adds nothing. Sampled items get priority 1, so the queue offers them first
    among equally complete items; the earlier days' samples go back to priority 0.
    """
    existing = DailySample.objects.filter(project=project, day=day).first()
    if existing is not None:
        return existing, False
    records_day = day - dt.timedelta(days=1)
    seed = sample_seed(project=project, day=day)
    try:
        with transaction.atomic():
            lock_project_writes(project)
            existing = DailySample.objects.filter(project=project, day=day).first()
            if existing is not None:
                return existing, False
            records = ProductionRecord.objects.filter(project=project, received_on=records_day)
            # Content already in the project (an earlier sample, an import) is not labeled twice.
            fresh = records.exclude(content_hash__in=Item.objects.filter(project=project).values("content_hash"))
            chosen = heapq.nsmallest(
                project.sample_size,
                fresh.values_list("content_hash", flat=True).iterator(chunk_size=5000),
                key=lambda digest: _rank(seed, digest),
            )
            n_candidates = fresh.count()
            items = _sample_items(project, list(records.filter(content_hash__in=chosen)), day)
            Item.objects.filter(project=project, sampled_on__lt=day, priority=1).update(priority=0)
            Item.objects.bulk_create(items, batch_size=500)
            sample = DailySample.objects.create(
                project=project,
                day=day,
                records_day=records_day,
                seed=seed,
                n_records=records.count(),
                n_candidates=n_candidates,
                n_added=len(items),
                drift=drift_check(project=project, records_day=records_day),
            )
    except IntegrityError:
        # Another worker took the same day's sample first: the unique constraint kept it to one.
        existing = DailySample.objects.filter(project=project, day=day).first()
        if existing is None:
            raise
        return existing, False
    return sample, True


def _sample_items(project: Project, records: list[ProductionRecord], day: dt.date) -> list[Item]:
    taken = set(
        Item.objects.filter(
            project=project, external_id__in=[r.external_id for r in records if r.external_id]
        ).values_list("external_id", flat=True)
    )
    items = []
    for record in sorted(records, key=lambda r: r.content_hash):
        fields = {name: getattr(record, name) for name in ("input", "output", "output_a", "output_b")}
        external_id = record.external_id or None
        if external_id in taken:
            # The pipeline reused an id for other content: keep both, told apart by the content hash.
            external_id = f"{external_id}~{record.content_hash[:12]}"
        if external_id:
            taken.add(external_id)
        content, digest, external_id, split, key = item_values(
            project=project, fields=fields, external_id=external_id, split=None
        )
        items.append(
            Item(
                project=project,
                external_id=external_id,
                metadata={**record.metadata, "received_at": record.received_at.isoformat()},
                source=Item.Source.SAMPLE,
                split=split,
                order_key=key,
                content_hash=digest,
                priority=1,
                sampled_on=day,
                **content,
            )
        )
    return items


def samples_take_due(*, now: dt.datetime | None = None) -> int:
    """Take today's sample for every active project whose hour has come and that has none yet (beat, hourly)."""
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    due = (
        Project.objects.filter(status=Project.Status.ACTIVE, sample_size__gt=0, sample_hour__lte=now.hour)
        .exclude(daily_samples__day=today)
        .order_by("pk")
    )
    taken = 0
    for project in due:
        try:
            _sample, created = sample_take(project=project, day=today)
        except Exception:
            log.exception("daily sample of %s failed", project.slug)
            continue
        taken += created
    return taken


# --- Drift ----------------------------------------------------------------------------------------------------


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov distance: the largest gap between the two empirical distributions."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def drift_compare(
    *,
    fields: Sequence[str],
    item_lengths: dict[str, Sequence[int]],
    record_lengths: dict[str, Sequence[int]],
    item_keys: Counter[str],
    record_keys: Counter[str],
    n_items: int,
    n_records: int,
) -> dict[str, Any]:
    """Compare a day's records with the project's items: empty fields, metadata keys, and text lengths.

    Pure (numbers in, numbers out) so it is tested on its own; the dashboard only formats the result.
    """
    report: dict[str, Any] = {
        "n_items": n_items,
        "n_records": n_records,
        "fields": [],
        "flags": [],
        # Below DRIFT_MIN_ROWS on either side, length distributions are shown but never flagged.
        "comparable": n_items >= DRIFT_MIN_ROWS and n_records >= DRIFT_MIN_ROWS,
        "min_rows": DRIFT_MIN_ROWS,
    }
    if not n_records or not n_items:
        return report
    for name in fields:
        items = np.asarray(item_lengths.get(name, []), dtype=float)
        records = np.asarray(record_lengths.get(name, []), dtype=float)
        empty_items = 100 * float(np.mean(items == 0)) if len(items) else 0.0
        empty_records = 100 * float(np.mean(records == 0)) if len(records) else 0.0
        median_items = float(np.median(items)) if len(items) else 0.0
        median_records = float(np.median(records)) if len(records) else 0.0
        ks = _ks(items, records) if len(items) and len(records) else 0.0
        entry = {
            "field": name,
            "empty_items_pct": round(empty_items, 1),
            "empty_records_pct": round(empty_records, 1),
            "median_items": round(median_items),
            "median_records": round(median_records),
            "p90_items": round(float(np.percentile(items, 90))) if len(items) else 0,
            "p90_records": round(float(np.percentile(records, 90))) if len(records) else 0,
            "ks": round(ks, 3),
        }
        report["fields"].append(entry)
        if empty_records - empty_items >= DRIFT_EMPTY_POINTS:
            report["flags"].append(f"{name} is empty in {empty_records:.0f}% of records, {empty_items:.0f}% of items")
        enough = len(items) >= DRIFT_MIN_ROWS and len(records) >= DRIFT_MIN_ROWS
        ratio = (median_records + 1) / (median_items + 1)
        if enough and (ks >= DRIFT_KS or not 1 / DRIFT_MEDIAN_FACTOR <= ratio <= DRIFT_MEDIAN_FACTOR):
            report["flags"].append(
                f"{name} length shifted: median {median_records:.0f} characters in records, {median_items:.0f} in "
                f"items (KS distance {ks:.2f})"
            )
    usual = sorted(k for k, n in item_keys.items() if n >= n_items / 2)
    missing = [k for k in usual if record_keys.get(k, 0) < n_records / 2]
    new = sorted(k for k, n in record_keys.items() if n >= n_records / 2 and item_keys.get(k, 0) < n_items / 2)
    report["missing_metadata"] = missing
    report["new_metadata"] = new
    if missing:
        report["flags"].append("metadata keys usually present are missing: " + ", ".join(missing))
    return report


def drift_check(*, project: Project, records_day: dt.date) -> dict[str, Any]:
    """Read lengths and metadata keys of (a bounded slice of) the day's records and the project's items."""
    fields = ("input", "output_a", "output_b") if project.is_pairwise else ("input", "output")
    lengths = {f"n_{name}": Length(name) for name in fields}
    items = list(
        Item.objects.filter(project=project)
        .exclude(source=Item.Source.SAMPLE)
        .order_by("order_key")
        .annotate(**lengths)
        .values(*lengths, "metadata")[:DRIFT_ROWS]
    )
    records = list(
        ProductionRecord.objects.filter(project=project, received_on=records_day)
        .order_by("content_hash")
        .annotate(**lengths)
        .values(*lengths, "metadata")[:DRIFT_ROWS]
    )

    def keys(rows: list[dict[str, Any]]) -> Counter[str]:
        return Counter(k for row in rows if isinstance(row["metadata"], dict) for k in row["metadata"])

    return drift_compare(
        fields=fields,
        item_lengths={name: [row[f"n_{name}"] for row in items] for name in fields},
        record_lengths={name: [row[f"n_{name}"] for row in records] for name in fields},
        item_keys=keys(items),
        record_keys=keys(records),
        n_items=len(items),
        n_records=len(records),
    )


@dataclass(frozen=True)
class TodaySample:
    sample: DailySample | None
    day: dt.date
    n_items: int
    n_started: int
    n_complete: int
    n_records_today: int

    @property
    def percent(self) -> int:
        return round(100 * self.n_complete / self.n_items) if self.n_items else 0


def sample_today(*, project: Project) -> TodaySample:
    """Today's sample and its labeling progress, for the lead's dashboard and the API's progress."""
    day = timezone.localdate()
    counts = Item.objects.filter(project=project, sampled_on=day).aggregate(
        n=Count("id"),
        started=Count("id", filter=Q(n_submitted__gt=0)),
        complete=Count("id", filter=Q(n_submitted__gte=project.overlap)),
    )
    return TodaySample(
        sample=DailySample.objects.filter(project=project, day=day).first(),
        day=day,
        n_items=counts["n"],
        n_started=counts["started"],
        n_complete=counts["complete"],
        n_records_today=ProductionRecord.objects.filter(project=project, received_on=day).count(),
    )
