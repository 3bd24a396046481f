"""Human–human agreement reports: labels read into integer arrays, figures from annotate.stats.agreement.

Nothing here loops over labels in Python: labels are read as binary array chunks (PostgreSQL) and coded with numpy;
every figure comes from the pure functions in stats.agreement, which are tested against independent implementations.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import psycopg.sql
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format

from annotate import extensions
from annotate.models import AgreementReport, Criterion, GoldLabel, Label, Project, RubricVersion, shown_username
from annotate.stats import agreement
from annotate.stats import reference as refkind

BINARY_CODES = {"fail": agreement.FAIL, "pass": agreement.PASS}
PAIRWISE_CODES = {"a": agreement.A, "b": agreement.B, "tie": agreement.TIE}

# What each figure means, shown beside it on every page that prints it.
DEFINITIONS = {
    "percent_agreement": "Share of pairs of labels on the same item that agree, over items with two or more labels.",
    "fleiss_kappa": (
        "Agreement beyond chance among all annotators, over every item with two or more labels (Fleiss' κ; 1 = "
        "perfect, 0 = chance). Items may have different numbers of labels: κ = (p_a − p_e) / (1 − p_e), with p_a the "
        "mean over items of the share of agreeing label pairs, r_ic(r_ic − 1) / (r_i(r_i − 1)) summed over "
        "categories, and p_e = Σ π_c², π_c the mean over items of the share r_ic / r_i of an item's labels in category "
        "c: Fleiss' κ generalised to a varying number of raters per item as in Gwet, Handbook of Inter-Rater "
        "Reliability (4th ed., 2014). With the same number of labels on every item it is Fleiss' (1971) κ."
    ),
    "krippendorff_alpha": (
        "Agreement beyond chance over all items, missing labels allowed (Krippendorff's α, nominal; 1 = perfect, "
        "0 = chance). The headline figure when items have different numbers of labels: it was made for that case."
    ),
    "pairwise_cohen_kappa": "Agreement beyond chance between two annotators on the items both labeled (Cohen's κ).",
    "interval": (
        "95% intervals: bias-corrected and accelerated (BCa) bootstrap, items resampled 1,000 times with a fixed seed."
    ),
}


@dataclass(frozen=True)
class LabelArrays:
    """One rubric version's labels as parallel integer arrays (positions, not database ids)."""

    criterion_ids: list[int]
    criterion: npt.NDArray[np.int64]  # index into criterion_ids
    item: npt.NDArray[np.int64]  # 0..n_items-1
    item_ids: npt.NDArray[np.int64]  # database id of each item position
    rater: npt.NDArray[np.int64]  # 0..n_raters-1
    rater_ids: npt.NDArray[np.int64]
    value: npt.NDArray[np.int64]
    time_ms: npt.NDArray[np.int64]  # time_spent_ms, -1 where unknown
    hour: npt.NDArray[np.int64]  # hours since the epoch when the label was given
    # The latest time one of these labels was given or changed: with their number, what tells a report made from them
    # that it is stale (report_stale).
    last_label_at: dt.datetime | None


def _code_sql(kind: str) -> str:
    if kind == Project.Kind.PAIRWISE:
        return "CASE value WHEN 'a' THEN 0 WHEN 'b' THEN 1 ELSE 2 END"
    return "CASE value WHEN 'fail' THEN 0 ELSE 1 END"


# Labels per chunk: a chunk holds the labels whose ids share id // LABELS_CHUNK, so at most this many.
LABELS_CHUNK = 65_536
INT8_ARRAY_OID = 1016  # bigint[], one- or two-dimensional
# From ids this far apart on, a second connection reads half of the chunks (connecting costs a few milliseconds).
PARALLEL_MIN_IDS = 4 * LABELS_CHUNK
_NO_LABELS = np.zeros((0, 6), dtype=np.int64)


class _RawArray(Loader):
    """A bigint[] in PostgreSQL's binary format, kept as its bytes: numpy reads it, not Python, value by value."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


# An array's binary form: ndim, has-nulls flag and element type (int32 each), (size, lower bound) per dimension, then
# each element as its length (int32, 8) and its value (int64), all big-endian.
_ELEMENT = np.dtype([("length", ">i4"), ("value", ">i8")])


def _array_values(raw: bytes) -> npt.NDArray[np.int64]:
    ndim = int.from_bytes(raw[:4], "big")
    return np.frombuffer(raw, dtype=_ELEMENT, offset=12 + 8 * ndim)["value"].astype(np.int64)


# What one connection read: its chunks in order, each rows × 6, and the latest change among them.
_Chunks = tuple[list[npt.NDArray[np.int64]], dt.datetime | None]


def _read_chunks(raw: Any, sql: str, params: list[Any]) -> _Chunks:
    """Run the chunk query on the psycopg connection `raw`: each chunk's labels as an array of rows × 6, and the
    latest change among them. A named (server-side) cursor hands over a few chunks per round trip."""
    tables: list[npt.NDArray[np.int64]] = []
    latest: dt.datetime | None = None
    with raw.cursor(name=f"labels_{uuid.uuid4().hex}", binary=True) as cursor:
        cursor.adapters.register_loader(INT8_ARRAY_OID, _RawArray)
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(4):
            for data, changed in rows:
                if data is not None:  # a range without labels of this version
                    tables.append(_array_values(data).reshape(-1, 6))
                    latest = changed if latest is None else max(latest, changed)
    return tables, latest


def _read_chunks_in_snapshot(snapshot: str, sql: str, params: list[Any]) -> _Chunks:
    """_read_chunks on a connection of its own that sees what the transaction which exported `snapshot` sees."""
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        other.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(snapshot)))
        return _read_chunks(other, sql, params)


def _labels_binary_chunks(kind: str, rubric_version_id: int) -> tuple[list[npt.NDArray[np.int64]], dt.datetime | None]:
    """The labels as six columns (criterion id, item id, annotator id, code, time ms, hour), read in chunks from a
    server-side cursor as binary bigint arrays, and the latest time one of them was given or changed.

    Each chunk is one two-dimensional array of up to LABELS_CHUNK labels × 6 (one numpy read, no Python object per
    label: a row-by-row COPY spent most of its time in per-row overhead), and no text to format or parse. A chunk is
    the labels of one id range, read through label_version_id_idx: no GROUP BY over the labels (its sort spilled 57
    MB to disk at a million labels), and only this version's labels however thin they are spread among other
    projects'. The ranges span this version's smallest to largest id, which that index gives at once; the labels are
    not counted first (a pass over them: a tenth of the report's time), so memory holds the chunks and the columns
    once each. The hour comes from date_part (a double), not extract (a numeric, several times slower here).

    PostgreSQL runs a query on one core, and building the arrays is most of the report's time, so unless the caller
    holds a transaction open, the later half of the ranges is read on a second connection at the same time, in the
    same snapshot (REPEATABLE READ, pg_export_snapshot). The labels come in the order one connection reads them.
    """
    values = (
        f"ARRAY[criterion_id, item_id, annotator_id, {_code_sql(kind)}, COALESCE(time_spent_ms, -1), "
        "floor(date_part('epoch', created_at) / 3600)]::bigint[]"
    )
    sql = (
        f"SELECT chunk.labels, chunk.latest FROM unnest(%s::bigint[]) AS c, LATERAL (SELECT array_agg({values}) AS "  # noqa: S608 - constant SQL
        f"labels, max(updated_at) AS latest FROM annotate_label WHERE rubric_version_id = %s "
        f"AND id >= c * {LABELS_CHUNK} AND id < (c + 1) * {LABELS_CHUNK}) AS chunk"
    )
    # Inside a caller's transaction the isolation level is set already, and a second connection would not see
    # what that transaction wrote.
    own_snapshot = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if own_snapshot:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(
                "SELECT min(id), max(id) FROM annotate_label WHERE rubric_version_id = %s", [rubric_version_id]
            )
            low, high = cursor.fetchone()
        chunks = list(range(low // LABELS_CHUNK, high // LABELS_CHUNK + 1)) if low is not None else []
        raw = connection.connection
        assert raw is not None
        half = len(chunks) // 2 if own_snapshot and chunks and high - low >= PARALLEL_MIN_IDS else 0
        if not half:
            parts = [_read_chunks(raw, sql, [chunks, rubric_version_id])]
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_export_snapshot()")
                (snapshot,) = cursor.fetchone()
            later: list[_Chunks] = []
            failed: list[BaseException] = []

            def read_later() -> None:
                try:
                    later.append(_read_chunks_in_snapshot(snapshot, sql, [chunks[half:], rubric_version_id]))
                except BaseException as error:  # raised again below, in the caller's thread
                    failed.append(error)

            reader = threading.Thread(target=read_later, name="report-labels")
            reader.start()
            try:
                parts = [_read_chunks(raw, sql, [chunks[:half], rubric_version_id])]
            finally:
                reader.join()
            if failed:
                raise failed[0]
            parts += later
    tables = [table for part_tables, _ in parts for table in part_tables]
    latest = max((part_latest for _, part_latest in parts if part_latest is not None), default=None)
    size = sum(table.shape[0] for table in tables)
    out = [np.empty(size, dtype=np.int64) for _ in range(6)]
    filled = 0
    for n in range(len(tables)):
        table, tables[n] = tables[n], _NO_LABELS  # each chunk freed once copied
        for column, column_values in zip(out, table.T, strict=True):
            column[filled : filled + table.shape[0]] = column_values
        filled += table.shape[0]
    return out, latest


def dense_codes(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """np.unique(values, return_inverse=True), by a lookup table over the values' range when that range is not much
    wider than the values are many (database ids, positions): no sort, several times faster at a million labels."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low = int(values.min())
    span = int(values.max()) - low + 1
    if span > 4 * values.size + (1 << 20):
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct.astype(np.int64, copy=False), inverse.astype(np.int64, copy=False)
    shifted = values - low
    present = np.zeros(span, dtype=np.bool_)
    present[shifted] = True
    code = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present).astype(np.int64) + low, code[shifted]


def labels_load(*, project: Project, rubric_version: RubricVersion) -> LabelArrays:
    """Every label of one rubric version, coded (binary: fail 0, pass 1; pairwise: a 0, b 1, tie 2)."""
    criteria = list(Criterion.objects.filter(rubric_version=rubric_version).order_by("position"))
    criterion_ids = [c.pk for c in criteria]
    if connection.vendor == "postgresql":
        columns, last_label_at = _labels_binary_chunks(project.kind, rubric_version.pk)
    else:
        codes = PAIRWISE_CODES if project.is_pairwise else BINARY_CODES
        rows = Label.objects.filter(rubric_version=rubric_version).values_list(
            "criterion_id", "item_id", "annotator_id", "value", "time_spent_ms", "created_at", "updated_at"
        )
        last_label_at = max((row[-1] for row in rows), default=None)
        table = np.array(
            [
                (c, i, a, codes[v], -1 if t is None else t, int(created.timestamp() // 3600))
                for c, i, a, v, t, created, _ in rows
            ],
            dtype=np.int64,
        ).reshape(-1, 6)
        columns = [table[:, n].copy() for n in range(6)]
        del table
    criterion_col, item_col, rater_col, value, time_ms, hour = columns
    del columns
    # Each column is replaced as soon as it is coded, so at most one temporary copy exists at a time.
    item_ids, item = dense_codes(item_col)
    del item_col
    rater_ids, rater = dense_codes(rater_col)
    del rater_col
    lookup = np.full(max(criterion_ids, default=0) + 1, -1, dtype=np.int64)
    for n, cid in enumerate(criterion_ids):
        lookup[cid] = n
    criterion = lookup[criterion_col] if criterion_col.size else np.zeros(0, dtype=np.int64)
    del criterion_col
    return LabelArrays(
        criterion_ids=criterion_ids,
        criterion=criterion,
        item=item.astype(np.int64, copy=False),
        item_ids=item_ids.astype(np.int64, copy=False),
        rater=rater.astype(np.int64, copy=False),
        rater_ids=rater_ids.astype(np.int64, copy=False),
        value=value,
        time_ms=time_ms,
        hour=hour,
        last_label_at=last_label_at,
    )


def figure_json(figure: agreement.Figure) -> dict[str, Any]:
    """A figure as stored and printed: value and interval, n, and why it is not defined when it is not."""
    out: dict[str, Any] = {"value": figure.value, "ci_low": figure.ci_low, "ci_high": figure.ci_high, "n": figure.n}
    if figure.reason:
        out["reason"] = figure.reason
    return out


def _usernames(ids: Iterable[int]) -> dict[int, str]:
    """Annotators as people see them: an imported identity under its readable name."""
    found = get_user_model().objects.filter(pk__in=list(ids)).values_list("pk", "username")
    return {pk: shown_username(username) for pk, username in found}


MAX_ADJUDICATION_IDS = 5000


def gold_codes(criterion: Criterion, item_ids: npt.NDArray[np.int64], codes: dict[str, int]) -> npt.NDArray[np.int64]:
    """Gold label codes aligned with `item_ids` (-1 where a lead has set none)."""
    gold = np.full(item_ids.size, -1, dtype=np.int64)
    rows = GoldLabel.objects.filter(criterion=criterion).values_list("item_id", "value")
    # No labeled item (a version nobody has labeled yet, while leads have set gold labels): nothing to align.
    if rows and item_ids.size:
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vals = np.array([codes[r[1]] for r in rows], dtype=np.int64)
        pos = np.searchsorted(item_ids, ids)
        found = (pos < item_ids.size) & (item_ids[np.minimum(pos, item_ids.size - 1)] == ids)
        gold[pos[found]] = vals[found]
    return gold


def _median_per_rater(
    rater: npt.NDArray[np.int64], times: npt.NDArray[np.float64], n_raters: int
) -> npt.NDArray[np.float64]:
    """np.median of each rater's known times (NaN where none), from one sort instead of a pass per rater."""
    known = ~np.isnan(times)
    who, when = rater[known], times[known]
    order = np.lexsort((when, who))
    who, when = who[order], when[order]
    count = np.bincount(who, minlength=n_raters)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.full(n_raters, np.nan)
    has = count > 0
    low = when[start[has] + (count[has] - 1) // 2]
    high = when[start[has] + count[has] // 2]
    out[has] = (low + high) / 2  # np.median's middle value, or the mean of the two middle ones
    return out


def _annotators(
    rater: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    value: npt.NDArray[np.int64],
    label_: npt.NDArray[np.int64],
    comparable: npt.NDArray[np.bool_],
    names: dict[int, str],
    rater_ids: npt.NDArray[np.int64],
    times: npt.NDArray[np.float64],
    hours: npt.NDArray[np.int64],
) -> list[dict[str, Any]]:
    """Per annotator: labels, agreement with the consensus label, median seconds per item.

    Only items where the consensus is more than the annotator's own label count: gold labels, or items that two or
    more annotators labeled (a lone label always "agrees" with itself).
    """
    reference = label_[item]
    has_reference = (reference >= 0) & comparable[item]
    agree = (value == reference) & has_reference
    n_labels = np.bincount(rater, minlength=rater_ids.size)
    n_ref = np.bincount(rater, weights=has_reference, minlength=rater_ids.size)
    n_agree = np.bincount(rater, weights=agree, minlength=rater_ids.size)
    # Labels per hour of work: labels over the number of distinct clock hours in which the annotator labeled. One
    # integer key per (annotator, hour): np.unique on it is what np.unique(..., axis=0) on the pairs did, 30× faster.
    n_hours = np.zeros(rater_ids.size, dtype=np.int64)
    if rater.size:
        first_hour = int(hours.min())
        span = int(hours.max()) - first_hour + 1
        active = np.unique(rater * span + (hours - first_hour)) // span
        n_hours = np.bincount(active, minlength=rater_ids.size)
    medians = _median_per_rater(rater, times, rater_ids.size)
    out = []
    for r in np.flatnonzero(n_labels):
        median_ms = medians[r]
        out.append(
            {
                "annotator": names.get(int(rater_ids[r]), "?"),
                "n_labels": int(n_labels[r]),
                "n_with_consensus": int(n_ref[r]),
                "agreement_with_consensus": float(n_agree[r] / n_ref[r]) if n_ref[r] else None,
                "median_seconds_per_item": round(float(median_ms) / 1000, 1) if not np.isnan(median_ms) else None,
                "labels_per_active_hour": round(float(n_labels[r] / n_hours[r]), 1) if n_hours[r] else None,
            }
        )
    return sorted(out, key=lambda a: a["annotator"])


def human_report(
    *,
    project: Project,
    rubric_version: RubricVersion,
    n_boot: int = agreement.N_BOOT,
    min_shared: int = 10,
    arrays: LabelArrays | None = None,
) -> dict[str, Any]:
    """The human–human section of the report for every criterion of one rubric version, from its labels as
    labels_load reads them (read here unless given)."""
    if arrays is None:
        arrays = labels_load(project=project, rubric_version=rubric_version)
    k = 3 if project.is_pairwise else 2
    codes = PAIRWISE_CODES if project.is_pairwise else BINARY_CODES
    names = _usernames(arrays.rater_ids.tolist())
    times = np.where(arrays.time_ms >= 0, arrays.time_ms, np.nan).astype(np.float64)
    criteria = list(Criterion.objects.filter(rubric_version=rubric_version).order_by("position"))
    out: dict[str, Any] = {}
    for n, criterion in enumerate(criteria):
        mask = arrays.criterion == n
        item, rater, value = arrays.item[mask], arrays.rater[mask], arrays.value[mask]
        # Compact item positions to this criterion's items, as the maths expects 0..n_items-1 without gaps.
        positions, item = dense_codes(item)
        item_ids = arrays.item_ids[positions]
        gold = gold_codes(criterion, item_ids, codes)
        found = agreement.consensus(item, value, k, gold=gold, n_items=item_ids.size)
        needs = item_ids[found.needs_adjudication]
        kinds = refkind.counts(refkind.kinds(found))
        # A gold label on an item nobody labeled is a reference too (judges and exports use it): counted, in no figure.
        n_gold_only = GoldLabel.objects.filter(criterion=criterion).count() - int((gold >= 0).sum())
        kinds["gold"] += n_gold_only
        pairs = agreement.pairwise_cohen_kappas(item, rater, value, k, min_shared=min_shared, n_boot=n_boot)
        per_item = np.bincount(np.bincount(item)) if item.size else np.zeros(0, dtype=np.int64)
        ratings_per_item = {str(m): int(per_item[m]) for m in range(2, per_item.size) if per_item[m]}
        out[criterion.key] = {
            "human": {
                "n_items": int(positions.size),
                "n_labels": int(mask.sum()),
                "n_annotators": int(np.count_nonzero(np.bincount(rater))) if rater.size else 0,
                # How many items have 2, 3, ... labels (those with one count in no figure), and the figure to lead
                # with: α when those numbers differ, as α was made for missing labels.
                "ratings_per_item": ratings_per_item,
                "headline": "krippendorff_alpha" if len(ratings_per_item) > 1 else "fleiss_kappa",
                "percent_agreement": figure_json(agreement.percent_agreement(item, rater, value, k, n_boot=n_boot)),
                "fleiss_kappa": figure_json(agreement.fleiss_kappa(item, rater, value, k, n_boot=n_boot)),
                "krippendorff_alpha": figure_json(
                    agreement.krippendorff_alpha_nominal(item, rater, value, k, n_boot=n_boot)
                ),
                "pairwise_cohen_kappa": [
                    {
                        "annotators": [
                            names.get(int(arrays.rater_ids[p.rater_i]), "?"),
                            names.get(int(arrays.rater_ids[p.rater_j]), "?"),
                        ],
                        "n": p.n,
                        "kappa": figure_json(p.kappa),
                    }
                    for p in pairs
                ],
            },
            "consensus": {
                "n_items": int(item_ids.size) + n_gold_only,
                # Items by reference kind (annotate.stats.reference: gold, majority, single, unsettled), as judges and
                # exports count them; n_majority counts strict majorities of two or more labels only.
                **{f"n_{name}": count for name, count in kinds.items()},
                "n_needs_adjudication": int(needs.size),
                "needs_adjudication": needs[:MAX_ADJUDICATION_IDS].tolist(),
                "reference": refkind.description(),
            },
            "annotators": _annotators(
                rater,
                item,
                value,
                found.label,
                (found.n_ratings >= 2) | (found.source == agreement.Source.GOLD),
                names,
                arrays.rater_ids,
                times[mask],
                arrays.hour[mask],
            ),
            "judge": {},
        }
    return out


def report_build(
    *,
    project: Project,
    n_boot: int = agreement.N_BOOT,
    rubric_version: RubricVersion | None = None,
    arrays: LabelArrays | None = None,
) -> dict[str, Any]:
    """The whole report for a rubric version (the project's current one unless given), in the shape
    `agreement_report --json` prints; `arrays`, when given, are that version's labels as labels_load reads them."""
    version = rubric_version or project.current_rubric
    if version is None:
        return {"project": project.slug, "rubric_version": None, "criteria": {}, "computed_at": _now()}
    return {
        "project": project.slug,
        "rubric_version": version.number,
        "computed_at": _now(),
        "definitions": DEFINITIONS,
        "criteria": human_report(project=project, rubric_version=version, n_boot=n_boot, arrays=arrays),
    }


def _now() -> str:
    return timezone.now().astimezone(dt.UTC).isoformat()


def report_stale(*, project: Project) -> bool:
    """Whether the stored report of the current rubric version misses labels or gold labels given since."""
    version_id = project.current_rubric_id
    if version_id is None:
        return False
    stored = AgreementReport.objects.filter(project=project, rubric_version_id=version_id).first()
    if stored is None:
        return True
    # One pass over the version's labels for both numbers (a count, then a sort for the latest, was two).
    found = Label.objects.filter(rubric_version_id=version_id).aggregate(n=Count("id"), latest=Max("updated_at"))
    n_gold = GoldLabel.objects.filter(criterion__rubric_version_id=version_id).count()
    return stored.n_labels != found["n"] or stored.last_label_at != found["latest"] or stored.n_gold != n_gold


def report_refresh(*, project: Project, force: bool = False, n_boot: int = agreement.N_BOOT) -> AgreementReport | None:
    """Compute and store the current rubric version's report when labels changed since the stored one."""
    version = project.current_rubric
    if version is None or not (force or report_stale(project=project)):
        return AgreementReport.objects.filter(project=project, rubric_version=version).first() if version else None
    return report_store(project=project, rubric_version=version, n_boot=n_boot)


def report_store(*, project: Project, rubric_version: RubricVersion, n_boot: int = agreement.N_BOOT) -> AgreementReport:
    """Compute and store the report of one rubric version of the project (the current one or an older one), with
    the label and gold counts that tell later whether it is stale: the labels' number and latest change are those of
    the labels the figures come from (on PostgreSQL one snapshot holds both; counting them apart cost a pass over the
    labels)."""
    n_gold = GoldLabel.objects.filter(criterion__rubric_version=rubric_version).count()
    started = time.perf_counter()
    arrays = labels_load(project=project, rubric_version=rubric_version)
    n_labels, latest = int(arrays.value.size), arrays.last_label_at
    data = report_build(project=project, n_boot=n_boot, rubric_version=rubric_version, arrays=arrays)
    del arrays
    report, _ = AgreementReport.objects.update_or_create(
        project=project,
        rubric_version=rubric_version,
        defaults={
            "data": data,
            "n_labels": n_labels,
            "last_label_at": latest,
            "n_gold": n_gold,
            "computed_at": timezone.now(),
            "seconds": time.perf_counter() - started,
        },
    )
    return report


def figure_text(figure: dict[str, Any]) -> str:
    """A stored figure for people: "0.71 [0.64, 0.78] (n=120)", or "not defined: <reason>"."""
    if figure.get("value") is None:
        return f"not defined: {figure.get('reason', 'no data')}"
    text = f"{figure['value']:.3f}"
    if figure.get("ci_low") is not None:
        text += f" [{figure['ci_low']:.3f}, {figure['ci_high']:.3f}]"
    return text + f" (n={figure['n']})"


def report_with_judges(report: AgreementReport) -> dict[str, Any]:
    """The stored report with the judge–human figures of every finished judge run on this rubric version, its
    criteria in the rubric's order, each with its `name`."""
    data = dict(report.data)
    stored = data.get("criteria", {})
    # In the rubric's order and with each criterion's name: the stored JSON keeps neither (PostgreSQL's jsonb orders
    # object keys by length, then bytes).
    rubric = list(
        Criterion.objects.filter(rubric_version_id=report.rubric_version_id)
        .select_related("defined_in")
        .order_by("position")
    )
    names = {c.key: c.name for c in rubric if c.key in stored}
    # The version each criterion's definition dates from: its labels since then all count (annotate.carry).
    since = {c.key: c.defined_in.number for c in rubric}
    order = [*names, *sorted(k for k in stored if k not in names)]
    criteria = {key: dict(stored[key]) | {"name": names.get(key, key), "defined_in": since.get(key)} for key in order}
    found = extensions.judges().run_reports(project_id=report.project_id, rubric_version_id=report.rubric_version_id)
    for key, run_id, run_report in found:
        if key in criteria:
            criteria[key]["judge"] = {**criteria[key].get("judge", {}), str(run_id): run_report}
    data["criteria"] = criteria
    return data
