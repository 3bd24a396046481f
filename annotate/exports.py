"""Getting data out: one project's current rubric version as JSON Lines, CSV, OpenAI evals samples or preference pairs.

The reference labels are computed once per criterion with numpy (gold where a lead set one, else the strict
majority, as in the agreement report); items, and labels when asked for, are then streamed from server-side cursors
in item id order, so memory stays flat however large the project. Same data and options give byte-identical output.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import tomllib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from annotate import reports
from annotate.models import Criterion, GoldLabel, Item, Label, Project
from judges import agreement

FORMATS = ("jsonl", "csv", "openai-evals", "preference")
CONTENT_TYPES = {
    "jsonl": "application/jsonl; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "openai-evals": "application/jsonl; charset=utf-8",
    "preference": "application/jsonl; charset=utf-8",
}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "openai-evals": "jsonl", "preference": "jsonl"}
CHUNK_SIZE = 2000
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
# agreement.Source by value: NONE, MAJORITY, GOLD.
_SOURCE_NAMES = (None, "majority", "gold")


class ExportRefused(ValueError):
    """The options cannot be honoured for this project; the message says why, for people."""


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "jsonl"
    split: str | None = None
    min_labels: int = 0
    consensus_only: bool = False
    adjudicated_only: bool = False
    # An allowlist of the current rubric's criterion keys (empty: all). openai-evals and preference use exactly one:
    # the one given, or the rubric's first.
    criteria: tuple[str, ...] = ()
    individual: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "min_labels": self.min_labels,
            "consensus_only": self.consensus_only,
            "adjudicated_only": self.adjudicated_only,
            "criteria": list(self.criteria),
            "individual": self.individual,
        }


@dataclass
class _Plan:
    """The items in scope (ids in id order) and, aligned with them as compact arrays, whether each becomes a row and
    its reference label per exported criterion. Arrays, not Python objects per item, keep memory small."""

    ids: npt.NDArray[np.int64]
    emit: npt.NDArray[np.bool_]
    label: list[npt.NDArray[np.int8]]  # per criterion: the reference's code, -1 for none
    source: list[npt.NDArray[np.int8]]  # per criterion: agreement.Source
    margin: list[npt.NDArray[np.int32]]
    n_labels: list[npt.NDArray[np.int32]]

    def blocks(self, size: int = 10_000) -> Iterator[tuple[int, list[Any]]]:
        """(id, (emit, ((label, source, margin, n_labels) per criterion))) in id order, converted a block at a time."""
        for start in range(0, self.ids.size, size):
            stop = start + size
            per_criterion = [
                zip(
                    label[start:stop].tolist(),
                    source[start:stop].tolist(),
                    margin[start:stop].tolist(),
                    n[start:stop].tolist(),
                    strict=True,
                )
                for label, source, margin, n in zip(self.label, self.source, self.margin, self.n_labels, strict=True)
            ]
            yield from zip(
                self.ids[start:stop].tolist(),
                zip(self.emit[start:stop].tolist(), zip(*per_criterion, strict=True), strict=True),
                strict=True,
            )


@dataclass
class Export:
    """A prepared export: its `manifest` (counts included) is final before the first line; iterate `lines()` once."""

    project: Project
    options: ExportOptions
    criteria: list[Criterion]
    plan: _Plan
    usernames: dict[int, str]
    names: dict[int, str]  # label code -> value
    manifest: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> Iterator[str]:
        """Each output line, newline included. A CSV export starts with its header line.

        Which items become rows was decided by export_prepare (and counted in the manifest); read inside the same
        snapshot (see `snapshot`), the items streamed here are exactly those.
        """
        fmt = self.options.fmt
        writer = _CsvLine(self._csv_header()) if fmt == "csv" else None
        if writer is not None:
            yield writer.line(writer.header)
        names = self.names
        plan = self.plan.blocks()
        planned_id, (emit, refs_raw) = next(plan, (None, (False, ())))
        for item, labels in self._items():
            # Both streams are in id order: catch the plan up with this item (in a snapshot they hold the same ids).
            while planned_id is not None and planned_id < item["id"]:
                planned_id, (emit, refs_raw) = next(plan, (None, (False, ())))
            if planned_id != item["id"] or not emit:
                continue
            refs = [
                {
                    "reference": names.get(label),
                    "source": _SOURCE_NAMES[source],
                    "margin": margin if n else None,
                    "n_labels": n,
                }
                for label, source, margin, n in refs_raw
            ]
            if fmt in ("jsonl", "csv"):
                row = self._row(item, refs, labels)
                yield _json_line(row) if writer is None else writer.line(self._csv_cells(row))
                continue
            ref = refs[0]
            if fmt == "openai-evals":
                line = {"input": _messages(item["input"]), "ideal": ref["reference"], "completion": item["output"]}
            else:
                better, worse = ("output_a", "output_b") if ref["reference"] == "a" else ("output_b", "output_a")
                line = {"prompt": item["input"], "chosen": item[better], "rejected": item[worse]}
            yield _json_line(line)

    def _items(self) -> Iterator[tuple[dict[str, Any], list[tuple[int, int, str, str]]]]:
        """Items in id order, each with its labels (criterion_id, annotator_id, value, note) when asked for."""
        fields = ("id", "external_id", "input", "output", "output_a", "output_b", "metadata", "split")
        items = Item.objects.filter(project=self.project).order_by("id")
        if self.options.split:
            items = items.filter(split=self.options.split)
        rows = (dict(zip(fields, row, strict=True)) for row in items.values_list(*fields).iterator(CHUNK_SIZE))
        if not self.options.individual:
            for item in rows:
                yield item, []
            return
        labels = Label.objects.filter(
            rubric_version_id=self.project.current_rubric_id, criterion__in=[c.pk for c in self.criteria]
        )
        if self.options.split:
            labels = labels.filter(item__split=self.options.split)
        label_rows = labels.order_by("item_id").values_list("item_id", "criterion_id", "annotator_id", "value", "note")
        # A merge join of two streams sorted by item id: never more than one item's labels in memory.
        stream = iter(label_rows.iterator(CHUNK_SIZE))
        pending = next(stream, None)
        for item in rows:
            mine = []
            while pending is not None and pending[0] <= item["id"]:
                if pending[0] == item["id"]:
                    mine.append(pending[1:])
                pending = next(stream, None)
            yield item, mine

    def _row(self, item: dict[str, Any], refs: list[dict[str, Any]], labels: list[Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"external_id": item["external_id"], "input": item["input"]}
        if self.project.is_pairwise:
            row |= {"output_a": item["output_a"], "output_b": item["output_b"]}
        else:
            row["output"] = item["output"]
        row |= {"metadata": item["metadata"], "split": item["split"], "rubric_version": self.manifest["rubric_version"]}
        row["labels"] = {}
        individual: dict[int, list[dict[str, str]]] = {}
        if self.options.individual:
            usernames = self.usernames
            for criterion_id, annotator_id, value, note in labels:
                individual.setdefault(criterion_id, []).append(
                    {"annotator": usernames.get(annotator_id, "?"), "value": value, "note": note}
                )
        for criterion, ref in zip(self.criteria, refs, strict=True):
            if self.options.individual:
                ref["individual"] = sorted(
                    individual.get(criterion.pk, ()), key=lambda e: (e["annotator"], e["value"], e["note"])
                )
            row["labels"][criterion.key] = ref
        return row

    def _csv_header(self) -> list[str]:
        head = ["external_id", "input"]
        head += ["output_a", "output_b"] if self.project.is_pairwise else ["output"]
        head += ["metadata", "split", "rubric_version"]
        for criterion in self.criteria:
            head += [f"{criterion.key}.{name}" for name in ("reference", "source", "margin", "n_labels")]
            if self.options.individual:
                head.append(f"{criterion.key}.individual")
        return head

    def _csv_cells(self, row: dict[str, Any]) -> list[Any]:
        cells: list[Any] = [row["external_id"], row["input"]]
        cells += [row["output_a"], row["output_b"]] if self.project.is_pairwise else [row["output"]]
        cells += [json.dumps(row["metadata"], ensure_ascii=False), row["split"], row["rubric_version"]]
        for criterion in self.criteria:
            entry = row["labels"][criterion.key]
            cells += [entry["reference"], entry["source"], entry["margin"], entry["n_labels"]]
            if self.options.individual:
                cells.append(json.dumps(entry["individual"], ensure_ascii=False))
        return cells


class _CsvLine:
    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def line(self, cells: list[Any]) -> str:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerow([csv_cell(c) for c in cells])
        return self.buffer.getvalue()


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a leading apostrophe on strings it would otherwise run as a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _messages(text: str) -> list[dict[str, Any]]:
    """An item's input as chat messages: a stored transcript as it is, plain text as one user message."""
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return [{"role": "user", "content": text}]


@cache
def app_version() -> str | None:
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _criteria(project: Project, options: ExportOptions) -> list[Criterion]:
    current = list(Criterion.objects.filter(rubric_version_id=project.current_rubric_id).order_by("position"))
    by_key = {c.key: c for c in current}
    unknown = sorted(set(options.criteria) - by_key.keys())
    if unknown:
        raise ExportRefused(
            f"Unknown criterion {', '.join(unknown)}: the current rubric has {', '.join(by_key) or 'none'}."
        )
    chosen = [by_key[key] for key in dict.fromkeys(options.criteria)] if options.criteria else current
    if options.fmt in ("openai-evals", "preference"):
        if len(options.criteria) > 1:
            raise ExportRefused(f"The {options.fmt} format uses one criterion: choose one.")
        chosen = chosen[:1]
    if not chosen:
        raise ExportRefused("The current rubric has no criteria.")
    return chosen


def _plan(
    project: Project,
    options: ExportOptions,
    item_ids: npt.NDArray[np.int64],
    found: list[agreement.Consensus],
    n_annotators: npt.NDArray[np.int64],
) -> tuple[_Plan, dict[str, int]]:
    """Which items become rows, and the manifest's counts, decided before the first line is written.

    `item_ids` are the items with labels or gold labels, which `found` (one consensus per exported criterion) and
    `n_annotators` are aligned with; every other item in scope has no reference and no labels.
    """
    items = Item.objects.filter(project=project)
    if options.split:
        items = items.filter(split=options.split)
    ids = np.fromiter(items.values_list("id", flat=True).iterator(CHUNK_SIZE * 5), dtype=np.int64)
    n = ids.size
    pos = np.searchsorted(item_ids, ids)
    known = pos < item_ids.size
    known[known] = item_ids[pos[known]] == ids[known]
    at = np.where(known, pos, 0)

    def aligned(values: npt.NDArray[Any], missing: int) -> npt.NDArray[np.int64]:
        return np.where(known, values[at], missing) if item_ids.size else np.full(n, missing, dtype=np.int64)

    labels = [aligned(f.label, -1) for f in found]
    sources = [aligned(f.source, int(agreement.Source.NONE)) for f in found]
    n_labels = [aligned(f.n_ratings, 0) for f in found]
    wanted = np.ones(n, dtype=bool)
    if options.consensus_only:
        wanted &= np.logical_and.reduce([label >= 0 for label in labels])
    if options.adjudicated_only:
        wanted &= np.logical_or.reduce([source == agreement.Source.GOLD for source in sources])
    if options.min_labels > 0:
        wanted &= aligned(n_annotators, 0) >= options.min_labels
    counts = dict.fromkeys(
        ("rows", "labels", "individual_labels", "items_filtered_out", "items_without_consensus", "ties"), 0
    )
    counts["items_filtered_out"] = int(n - wanted.sum())
    if options.fmt in ("openai-evals", "preference"):
        has_reference = labels[0] >= 0
        counts["items_without_consensus"] = int((wanted & ~has_reference).sum())
        wanted &= has_reference
        if options.fmt == "preference":
            tie = labels[0] == reports.PAIRWISE_CODES["tie"]
            counts["ties"] = int((wanted & tie).sum())
            wanted &= ~tie
        counts["labels"] = int(n_labels[0][wanted].sum())
    else:
        counts["labels"] = int(sum(int(nl[wanted].sum()) for nl in n_labels))
        if options.individual:
            # Every label of an exported criterion on a row is listed with it (a consensus counts them all).
            counts["individual_labels"] = counts["labels"]
    counts["rows"] = int(wanted.sum())
    plan = _Plan(
        ids=ids,
        emit=wanted,
        label=[label.astype(np.int8) for label in labels],
        source=[source.astype(np.int8) for source in sources],
        margin=[aligned(f.margin, 0).astype(np.int32) for f in found],
        n_labels=[n.astype(np.int32) for n in n_labels],
    )
    return plan, counts


def export_prepare(*, project: Project, options: ExportOptions, now: dt.datetime | None = None) -> Export:
    """Check the options and compute the reference labels; the rows are produced when `lines()` is iterated.

    Raises ExportRefused with a message for people when the options do not fit the project.
    """
    if options.fmt not in FORMATS:
        raise ExportRefused(f"Unknown format {options.fmt!r}: choose one of {', '.join(FORMATS)}.")
    if options.split and options.split not in Item.Split.values:
        raise ExportRefused(f"Unknown split {options.split!r}: choose one of {', '.join(Item.Split.values)}.")
    if options.min_labels < 0:
        raise ExportRefused("The minimum number of labels cannot be negative.")
    if options.fmt == "preference" and not project.is_pairwise:
        raise ExportRefused("Preference pairs need a pairwise project: this one is binary.")
    if options.fmt == "openai-evals" and project.is_pairwise:
        raise ExportRefused(
            "OpenAI evals samples have one ideal answer, which a pairwise project does not give: "
            "export preference pairs instead."
        )
    version = project.current_rubric
    if version is None:
        raise ExportRefused("This project has no rubric yet, so there is nothing to export.")
    criteria = _criteria(project, options)

    arrays = reports.labels_load(project=project, rubric_version=version)
    codes = reports.PAIRWISE_CODES if project.is_pairwise else reports.BINARY_CODES
    names = {code: value for value, code in codes.items()}
    k = len(codes)
    # Items with a gold label but no labels still have a reference: they join the labeled items.
    gold_ids = GoldLabel.objects.filter(criterion__in=criteria).values_list("item_id", flat=True)
    item_ids = np.union1d(arrays.item_ids, np.fromiter(gold_ids, dtype=np.int64))
    item_pos = np.searchsorted(item_ids, arrays.item_ids)[arrays.item] if arrays.item.size else arrays.item
    all_positions = {
        c.pk: n for n, c in enumerate(Criterion.objects.filter(rubric_version=version).order_by("position"))
    }
    found_arrays: list[agreement.Consensus] = []
    for criterion in criteria:
        mask = arrays.criterion == all_positions[criterion.pk]
        found_arrays.append(
            agreement.consensus(
                item_pos[mask],
                arrays.value[mask],
                k,
                gold=reports.gold_codes(criterion, item_ids, codes),
                n_items=item_ids.size,
            )
        )
    # Annotators per item, over the exported criteria: what --min-labels counts. One (item, annotator) pair is one
    # integer, so a 1-D unique does it (far faster than unique rows of a 2-D array).
    chosen = np.isin(arrays.criterion, [all_positions[c.pk] for c in criteria])
    n_raters = max(int(arrays.rater_ids.size), 1)
    pairs = np.unique(item_pos[chosen] * n_raters + arrays.rater[chosen])
    n_annotators = np.bincount(pairs // n_raters, minlength=item_ids.size)
    usernames: dict[int, str] = {}
    if options.individual:
        usernames = dict(
            get_user_model().objects.filter(pk__in=arrays.rater_ids.tolist()).values_list("pk", "username")
        )
    del arrays, item_pos, chosen, pairs  # the labels' arrays are not needed any more: free them before streaming
    plan, counts = _plan(project, options, item_ids, found_arrays, n_annotators)
    export = Export(project=project, options=options, criteria=criteria, plan=plan, usernames=usernames, names=names)
    export.manifest = {
        "project": project.slug,
        "kind": project.kind,
        "rubric_version": version.number,
        "format": options.fmt,
        "criteria": [c.key for c in criteria],
        "filters": options.as_dict(),
        "counts": counts,
        "app_version": app_version(),
        "generated_at": (now or timezone.now()).astimezone(dt.UTC).isoformat(),
    }
    return export


def chunks(lines: Iterator[str], size: int = 65_536) -> Iterator[bytes]:
    """Lines joined into blocks of about `size` bytes, for a streaming response (one write per line is slow)."""
    parts: list[str] = []
    n = 0
    for line in lines:
        parts.append(line)
        n += len(line)
        if n >= size:
            yield "".join(parts).encode()
            parts, n = [], 0
    if parts:
        yield "".join(parts).encode()


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """Run the reads inside in one REPEATABLE READ, READ ONLY transaction (PostgreSQL), so that an export's separate
    reads (labels, then items, then labels again for --individual) all see the same data: a label or item written
    meanwhile by someone else is in none of them, and the manifest's counts match the rows.

    Inside a transaction that is already open (a test's, or a caller's atomic block) the isolation level can no
    longer be set: that transaction's applies.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def export_stream(
    *, project: Project, options: ExportOptions, now: dt.datetime | None = None
) -> tuple[Export, Iterator[bytes]]:
    """A prepared export and its bytes, for a streaming response. The snapshot opens here and stays open until the
    stream is exhausted or closed (a streaming response closes it when the client goes away).

    Raises ExportRefused, like export_prepare, before anything is streamed.
    """

    def run() -> Generator[Export | bytes]:
        with snapshot():
            export = export_prepare(project=project, options=options, now=now)
            yield export
            yield from chunks(export.lines())

    stream = run()
    export = next(stream)
    assert isinstance(export, Export)
    return export, stream  # type: ignore[return-value]  # only bytes follow the export


MANIFEST_HEADER = "X-Export-Manifest"


def manifest_header(manifest: dict[str, Any]) -> str:
    """The manifest as one line of ASCII JSON, for the X-Export-Manifest response header."""
    return json.dumps(manifest, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def filename(export: Export) -> str:
    fmt = export.options.fmt
    return f"{export.project.slug}-v{export.manifest['rubric_version']}-{fmt}.{EXTENSIONS[fmt]}"
