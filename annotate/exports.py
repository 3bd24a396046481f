"""Getting data out: one project's current rubric version in one of annotate.export_formats' formats.

Items are streamed from a server-side cursor in id order and decided a block at a time: the block's labels and gold
labels are read, and each criterion's reference label and its kind computed with annotate.stats.agreement.consensus and
stats.reference (gold where a lead set one, else the strict majority of two or more labels, else a single label; split
items have none), as the agreement report and the judges do. So memory stays flat however large the project, and the
first line follows at once. All reads run in one snapshot (`snapshot`), so the manifest's counts, decided before the
first line, match the lines. Same data and options give byte-identical output.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import json.encoder
import re
import tomllib
import unicodedata
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotate import export_formats, reports
from annotate.models import Criterion, GoldLabel, Item, Label, Project, shown_username
from annotate.stats import agreement
from annotate.stats import reference as refkind

FORMATS = export_formats.FORMATS
# Every id a caller may give: the formats and their former ids (export_formats.ALIASES).
ACCEPTED_FORMATS = export_formats.ACCEPTED
CONTENT_TYPES = {f.id: f.content_type for f in export_formats.REGISTRY.values()}
EXTENSIONS = {f.id: f.extension for f in export_formats.REGISTRY.values()}
BOM = "\ufeff"
CHUNK_SIZE = 2000
# CSV injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with one of these as a formula, and
# some also after blank or invisible characters (spaces, a no-break space, a zero-width space, a line feed) or in
# their full-width and small forms (＝, ﹦). "|" starts DDE payloads; U+2212 is the minus sign.
_FORMULA_CHARS = frozenset("=+-@|\u2212\uff1d\uff0b\uff0d\uff20\uff5c\ufe66\ufe62\ufe63\ufe6b")
# Skipped when looking for the first visible character: separators (Zs, Zl, Zp) and format characters (Cf: zero-width
# spaces and joiners, the BOM, bidi marks). A control character (Cc: tab, CR, LF, NUL) at the start is enough alone.
_BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cf"})
_COUNTS = ("rows", "labels", "individual_labels", "items_filtered_out", "items_without_consensus", "ties")


class ExportRefused(ValueError):
    """The options cannot be honoured for this project; the message says why, for people."""


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "jsonl"  # an id of export_formats.FORMATS; export_prepare resolves a former id (ALIASES)
    split: str | None = None
    min_labels: int = 0
    consensus_only: bool = False
    adjudicated_only: bool = False
    # An allowlist of the current rubric's criterion keys (empty: all). A one-criterion format (openai-evals-api,
    # inspect-ai, preference) uses exactly one: the one given, or the rubric's first.
    criteria: tuple[str, ...] = ()
    individual: bool = False
    # The date range, half-open [since, until), aware datetimes from `parse_bound`: only labels and gold labels
    # created in it count (consensus, margins, --min-labels and --individual see no other), and an item without one
    # on an exported criterion is left out.
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    # CSV only: start the file with a UTF-8 byte order mark, so that spreadsheets read it as UTF-8.
    bom: bool = False

    @property
    def dated(self) -> bool:
        return self.since is not None or self.until is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "min_labels": self.min_labels,
            "consensus_only": self.consensus_only,
            "adjudicated_only": self.adjudicated_only,
            "criteria": list(self.criteria),
            "individual": self.individual,
            "since": _iso(self.since),
            "until": _iso(self.until),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


# The only spellings accepted for a bound: a date, or a date and time with an optional UTC offset.
_BOUND = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?")
BOUND_HELP = "YYYY-MM-DD (a whole day) or YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]; without an offset, UTC"


def parse_bound(text: str, *, end: bool) -> dt.datetime:
    """One end of the date range as an aware UTC datetime; the range is [since, until).

    A date alone means its midnight (UTC) for `since`, and the midnight after it for `until` (`end=True`), so the
    day itself is included: since=2026-01-01 until=2026-01-31 is all of January. A date and time is that instant;
    without an offset it is UTC. Raises ExportRefused for anything else.
    """
    text = text.strip()
    refused = ExportRefused(f"Not a date or date and time: {text[:40]!r}. Use {BOUND_HELP}.")
    if not _BOUND.fullmatch(text):
        raise refused
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(text)
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise refused from None


def format_refusal(*, fmt: str, pairwise: bool) -> str:
    """Why a project of this kind cannot have `fmt` (a known format or former id), or "" when it can."""
    return export_formats.refusal(fmt=fmt, pairwise=pairwise)


def one_criterion(fmt: str) -> bool:
    spec = export_formats.REGISTRY.get(fmt)
    return spec is not None and spec.one_criterion


def check_range(since: dt.datetime | None, until: dt.datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ExportRefused(f"The range is empty: until ({_iso(until)}) must be after since ({_iso(since)}).")


ROW, FILTERED, NO_CONSENSUS, TIE = 0, 1, 2, 3
_COUNT_OF = {FILTERED: "items_filtered_out", NO_CONSENSUS: "items_without_consensus", TIE: "ties"}
ITEM_FIELDS = ("id", "external_id", "input", "output", "output_a", "output_b", "metadata", "split")
BLOCK = 5000  # items decided at once: memory holds one block's items and labels, whatever the project's size
FIRST_BLOCK = 500


# (item id, criterion id) -> [(annotator's username, value, note, the entry's JSON up to the note)], in no order.
_Individual = dict[tuple[int, int], list[tuple[str, str, str, str]]]


@dataclass
class _Block:
    """A block of items in id order, decided together: what becomes of each, its references and its labels."""

    ids: list[int]
    action: list[int]
    refs: list[tuple[tuple[int, int, int, int], ...]]  # per item, per criterion: (code, kind, margin, n_labels)
    labels: _Individual  # with --individual
    counts: dict[str, int]


@dataclass
class Export:
    """A prepared export: its `manifest` (counts included) is final before the first line; iterate `lines()` once.

    Items are read and decided a block at a time (BLOCK items, their labels and gold labels), so memory stays flat
    and the first line follows at once. Read inside `snapshot`, the counts decided up front match the lines.
    """

    project: Project
    options: ExportOptions
    criteria: list[Criterion]
    codes: dict[str, int]
    manifest: dict[str, Any] = field(default_factory=dict)
    usernames: dict[int, str] = field(default_factory=dict)
    _ref_text: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    _heads: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)

    def lines(self) -> Iterator[str]:
        """Each output line, newline included. A CSV export starts with its header line."""
        fmt = self.options.fmt
        if fmt == "jsonl":
            for items, block in self._blocks(full=True):
                yield from self._jsonl_lines(items, block)
            return
        writer = _CsvLine(self._csv_header()) if fmt == "csv" else None
        if writer is not None:
            yield (BOM if self.options.bom else "") + writer.line(writer.header)
        names = {code: value for value, code in self.codes.items()}
        for items, block in self._blocks(full=True):
            for raw, action, refs_raw in zip(items, block.action, block.refs, strict=True):
                if action != ROW:
                    continue
                item = dict(zip(ITEM_FIELDS, raw, strict=True))
                refs = [
                    {
                        "reference": names.get(code),
                        "source": refkind.NAMES[kind],
                        "margin": margin if n else None,
                        "n_labels": n,
                    }
                    for code, kind, margin, n in refs_raw
                ]
                if writer is not None:
                    item["metadata"] = json.loads(item["metadata"])
                    yield writer.line(self._csv_cells(self._row(item, refs, block.labels)))
                    continue
                yield _json_line(self._format_row(item, refs))

    def _format_row(self, item: dict[str, Any], refs: list[dict[str, Any]]) -> dict[str, Any]:
        """A row of a format written from whole dicts (all but jsonl and csv): export_formats writes it."""
        fmt = self.options.fmt
        ref = refs[0]
        if fmt == "preference":
            better, worse = ("output_a", "output_b") if ref["reference"] == "a" else ("output_b", "output_a")
            return {"prompt": item["input"], "chosen": item[better], "rejected": item[worse]}
        if fmt == "openai-evals-api":
            return export_formats.openai_evals_api_row(
                messages=_messages(item["input"]),
                external_id=item["external_id"],
                output=item["output"],
                reference=ref["reference"],
                criterion=self.criteria[0].key,
            )
        item["metadata"] = json.loads(item["metadata"])
        if fmt == "inspect-ai":
            return export_formats.inspect_row(
                messages=_messages(item["input"]),
                item=item,
                pairwise=self.project.is_pairwise,
                criterion=self.criteria[0].key,
                ref=ref,
            )
        return export_formats.hf_row(
            item=item,
            pairwise=self.project.is_pairwise,
            rubric_version=self.manifest["rubric_version"],
            refs={c.key: r for c, r in zip(self.criteria, refs, strict=True)},
        )

    def _jsonl_lines(self, items: list[tuple[Any, ...]], block: _Block) -> list[str]:
        """One block's JSON Lines, written as `json.dumps(self._row(...), ensure_ascii=False)` would write them, byte
        for byte, without building the dicts: the fields through json's own string encoder, each criterion's
        reference (a few distinct values) from a cache, the metadata from its stored text."""
        enc = _encode
        pairwise = self.project.is_pairwise
        tail = f', "rubric_version": {self.manifest["rubric_version"]}, "labels": {{'
        keys = [(enc(c.key) + ": ", c.pk) for c in self.criteria]
        ref_text = self._ref_text
        individual = self.options.individual
        labels = block.labels
        out: list[str] = []
        for item, action, refs in zip(items, block.action, block.refs, strict=True):
            if action != ROW:
                continue
            item_id, external_id, text_in, output, output_a, output_b, metadata, split = item
            outputs = (
                f', "output_a": {enc(output_a)}, "output_b": {enc(output_b)}'
                if pairwise
                else f', "output": {enc(output)}'
            )
            entries = []
            for (key, criterion_id), ref in zip(keys, refs, strict=True):
                text = ref_text.get(ref) or self._ref_prefix(ref)
                if individual:
                    chosen = labels.get((item_id, criterion_id))
                    text += ', "individual": [' + (_individual(chosen) if chosen else "") + "]}"
                else:
                    text += "}"
                entries.append(key + text)
            out.append(
                f'{{"external_id": {enc(external_id)}, "input": {enc(text_in)}{outputs}, '
                f'"metadata": {metadata if metadata == "{}" else _metadata(metadata)}, "split": {enc(split)}'
                f"{tail}{', '.join(entries)}}}}}\n"
            )
        return out

    def _ref_prefix(self, ref: tuple[int, int, int, int]) -> str:
        """A criterion's entry up to its closing brace: `{"reference": ..., "n_labels": N`."""
        code, kind, margin, n = ref
        name = next((value for value, c in self.codes.items() if c == code), None)
        source_name = refkind.NAMES[kind]
        text = (
            f'{{"reference": {_encode(name) if name is not None else "null"}, '
            f'"source": {_encode(source_name) if source_name is not None else "null"}, '
            f'"margin": {margin if n else "null"}, "n_labels": {n}'
        )
        self._ref_text[ref] = text
        return text

    def count(self) -> dict[str, int]:
        """The manifest's counts. Without a filter that depends on the labels, two counting queries; else a pass
        over the items' ids and labels that decides every item as `lines()` will (no row is built)."""
        options = self.options
        counts = dict.fromkeys(_COUNTS, 0)
        if options.fmt in ("jsonl", "csv", "hf-datasets") and not (
            options.consensus_only or options.adjudicated_only or options.min_labels > 0 or options.dated
        ):
            items = Item.objects.filter(project=self.project)
            # The rubric version is the project's own: its labels are on the project's items.
            labels = Label.objects.filter(
                rubric_version_id=self.project.current_rubric_id, criterion__in=[c.pk for c in self.criteria]
            )
            if options.split:
                items = items.filter(split=options.split)
                labels = labels.filter(item__split=options.split)
            counts["rows"] = items.count()
            counts["labels"] = labels.count()
            counts["individual_labels"] = counts["labels"] if options.individual and options.fmt != "hf-datasets" else 0
            return counts
        for _items, block in self._blocks(full=False):
            for key, value in block.counts.items():
                counts[key] += value
        return counts

    def _blocks(self, *, full: bool) -> Iterator[tuple[list[tuple[Any, ...]], _Block]]:
        """The items in id order (their ITEM_FIELDS when `full`, else only ids), BLOCK at a time, each decided.

        The metadata comes as its stored text: Django would decode it for every item, and most is `{}`.
        """
        items = Item.objects.filter(project=self.project).order_by("id")
        if self.options.split:
            items = items.filter(split=self.options.split)
        rows: QuerySet[Any, Any]
        if full:
            rows = items.annotate(metadata_text=Cast("metadata", TextField())).values_list(
                *ITEM_FIELDS[:6], "metadata_text", "split"
            )
        else:
            rows = items.values_list("id")
        batch: list[tuple[Any, ...]] = []
        # A small first block, so that a download's first bytes leave before a whole block is decided.
        size = min(FIRST_BLOCK, BLOCK)
        for row in rows.iterator(CHUNK_SIZE):
            batch.append(row)
            if len(batch) == size:
                yield batch, self._decide([item[0] for item in batch], labels=full)
                batch, size = [], BLOCK
        if batch:
            yield batch, self._decide([item[0] for item in batch], labels=full)

    def _decide(self, id_list: list[int], *, labels: bool) -> _Block:
        """Reference labels and their kinds (annotate.stats.reference), filters and counts for one block."""
        options = self.options
        ids = np.array(id_list, dtype=np.int64)
        n = ids.size
        lo, hi = id_list[0], id_list[-1]
        criteria = self.criteria
        index = {c.pk: position for position, c in enumerate(criteria)}
        fields: tuple[str, ...] = ("item_id", "criterion_id", "annotator_id", "value")
        if labels and options.individual:
            fields += ("note",)
        rows = list(
            _dated(
                Label.objects.filter(
                    rubric_version_id=self.project.current_rubric_id,
                    criterion__in=list(index),
                    item_id__gte=lo,
                    item_id__lte=hi,
                ),
                options,
            )
            .order_by()
            .values_list(*fields)
        )
        codes = self.codes
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
        item = np.array(columns[0], dtype=np.int64)
        annotator = np.array(columns[2], dtype=np.int64)
        # Few criteria and values: one vectorised comparison each instead of a dict look-up per label.
        criterion_ids = np.array(columns[1], dtype=np.int64)
        criterion = np.full(len(rows), -1, dtype=np.int64)
        for criterion_id, position in index.items():
            criterion[criterion_ids == criterion_id] = position
        values = np.array(columns[3], dtype=object)
        value = np.full(len(rows), -1, dtype=np.int64)
        for name, value_code in codes.items():
            value[values == name] = value_code
        if (value < 0).any():
            raise ValueError(f"a label value outside {sorted(codes)}")  # the check constraint and kind rule it out
        # Labels of items in the id range but outside the scope (another split) are not this export's.
        pos = np.minimum(np.searchsorted(ids, item), max(n - 1, 0))
        inside = ids[pos] == item if n else np.zeros(0, dtype=bool)
        gold = np.full((len(criteria), n), -1, dtype=np.int64)
        for criterion_id, item_id, gold_value in _dated(
            GoldLabel.objects.filter(criterion__in=list(index), item_id__gte=lo, item_id__lte=hi), options
        ).values_list("criterion_id", "item_id", "value"):
            at = int(np.searchsorted(ids, item_id))
            if at < n and ids[at] == item_id:
                gold[index[criterion_id], at] = codes[gold_value]
        found = []
        for position in range(len(criteria)):
            mask = inside & (criterion == position)
            found.append(agreement.consensus(pos[mask], value[mask], len(codes), gold=gold[position], n_items=n))
        # Annotators per item over the exported criteria (what --min-labels counts): one integer per pair.
        span = int(annotator.max()) + 1 if annotator.size else 1
        pairs = np.unique(pos[inside] * span + annotator[inside])
        n_annotators = np.bincount(pairs // span, minlength=n)
        # The one definition of reference kinds; exports use every kind with a label, single labels included.
        code, kinds = (list(column) for column in zip(*(refkind.labels(f) for f in found), strict=True))
        action = np.full(n, ROW, dtype=np.int64)
        wanted = np.ones(n, dtype=bool)
        if options.consensus_only:
            wanted &= np.logical_and.reduce([c >= 0 for c in code])
        if options.adjudicated_only:
            wanted &= np.logical_or.reduce([k == refkind.Kind.GOLD for k in kinds])
        if options.min_labels > 0:
            wanted &= n_annotators >= options.min_labels
        if options.dated:
            # Labeled in the range: a label or a gold label created in it, on some exported criterion.
            wanted &= (n_annotators > 0) | (gold >= 0).any(axis=0)
        action[~wanted] = FILTERED
        if one_criterion(options.fmt):
            action[wanted & (code[0] < 0)] = NO_CONSENSUS
            if options.fmt == "preference":
                action[wanted & (code[0] == self.codes["tie"])] = TIE
            n_labels = found[0].n_ratings[action == ROW].sum()
        else:
            n_labels = sum(f.n_ratings[action == ROW].sum() for f in found)
        counts = {name: int((action == key).sum()) for key, name in _COUNT_OF.items()}
        counts["rows"] = int((action == ROW).sum())
        counts["labels"] = int(n_labels)
        counts["individual_labels"] = int(n_labels) if options.individual and options.fmt in ("jsonl", "csv") else 0
        by_item: _Individual = {}
        if labels and options.individual:
            self._usernames(set(columns[2]))
            heads = self._heads
            for item_id, criterion_id, annotator_id, label_value, note in rows:
                head = heads.get((annotator_id, label_value)) or self._head(annotator_id, label_value)
                entry = (head[0], label_value, note, head[1])
                group = by_item.get((item_id, criterion_id))
                if group is None:
                    by_item[item_id, criterion_id] = [entry]
                else:
                    group.append(entry)
        refs = list(
            zip(
                *(
                    zip(c.tolist(), k.tolist(), f.margin.tolist(), f.n_ratings.tolist(), strict=True)
                    for f, c, k in zip(found, code, kinds, strict=True)
                ),
                strict=True,
            )
        )
        return _Block(ids=id_list, action=action.tolist(), refs=refs, labels=by_item, counts=counts)

    def _head(self, annotator_id: int, value: str) -> tuple[str, str]:
        """An annotator's username and the JSON of their individual entry with this value, up to the note."""
        username = self.usernames.get(annotator_id, "?")
        head = f'{{"annotator": {_encode(username)}, "value": {_encode(value)}, "note": '
        self._heads[annotator_id, value] = (username, head)
        return username, head

    def _usernames(self, annotator_ids: set[int]) -> None:
        missing = annotator_ids - self.usernames.keys()
        if missing:
            found = get_user_model().objects.filter(pk__in=list(missing)).values_list("pk", "username")
            # An imported identity is exported under the readable name its label file gave it.
            self.usernames.update((pk, shown_username(username)) for pk, username in found)

    def _row(self, item: dict[str, Any], refs: list[dict[str, Any]], labels: _Individual) -> dict[str, Any]:
        row: dict[str, Any] = {"external_id": item["external_id"], "input": item["input"]}
        if self.project.is_pairwise:
            row |= {"output_a": item["output_a"], "output_b": item["output_b"]}
        else:
            row["output"] = item["output"]
        row |= {"metadata": item["metadata"], "split": item["split"], "rubric_version": self.manifest["rubric_version"]}
        row["labels"] = {}
        for criterion, ref in zip(self.criteria, refs, strict=True):
            if self.options.individual:
                ref["individual"] = [
                    {"annotator": annotator, "value": value, "note": note}
                    for annotator, value, note, _head in sorted(labels.get((item["id"], criterion.pk), ()))
                ]
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


def _dated[Q: (QuerySet[Label], QuerySet[GoldLabel])](rows: Q, options: ExportOptions) -> Q:
    """Only the (gold) labels created in [since, until): the fixed lookups below, the bounds being datetimes."""
    if options.since is not None:
        rows = rows.filter(created_at__gte=options.since)
    if options.until is not None:
        rows = rows.filter(created_at__lt=options.until)
    return rows


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a leading apostrophe on strings it would otherwise run as a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value and not value[0].isalnum() and _runs_as_formula(value):
        return "'" + value
    return value


def _runs_as_formula(value: str) -> bool:
    for char in value:
        if char in _FORMULA_CHARS:
            return True
        category = unicodedata.category(char)
        if category == "Cc":
            return True
        if category not in _BLANK_CATEGORIES:
            return False
    return False


# json's own string encoder, the one json.dumps(..., ensure_ascii=False) uses (C when available).
_encode = json.encoder.encode_basestring


def _metadata(text: str) -> str:
    """Stored metadata text as json.dumps writes the decoded value. PostgreSQL's jsonb text already has json.dumps'
    separators and key order, but not always its numbers (1e-05 is stored as 0.00001), so it is not spliced as is."""
    return json.dumps(json.loads(text), ensure_ascii=False)


_EMPTY = _encode("")


def _individual(entries: list[tuple[str, str, str, str]]) -> str:
    """The individual labels of one item on one criterion, in (annotator, value, note) order, as JSON list items."""
    if len(entries) == 1:
        _annotator, _value, note, head = entries[0]
        return head + (_encode(note) if note else _EMPTY) + "}"
    return ", ".join(f"{head}{_encode(note)}}}" for _annotator, _value, note, head in sorted(entries))


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
    if one_criterion(options.fmt):
        if len(options.criteria) > 1:
            raise ExportRefused(f"The {options.fmt} format uses one criterion: choose one.")
        chosen = chosen[:1]
    if not chosen:
        raise ExportRefused("The current rubric has no criteria.")
    return chosen


def export_prepare(*, project: Project, options: ExportOptions, now: dt.datetime | None = None) -> Export:
    """Check the options and count what the export will hold; the rows are produced when `lines()` is iterated.

    Raises ExportRefused with a message for people when the options do not fit the project.
    """
    if options.fmt not in FORMATS:
        if options.fmt not in export_formats.ALIASES:
            raise ExportRefused(f"Unknown format {options.fmt!r}: choose one of {', '.join(FORMATS)}.")
        options = dataclasses.replace(options, fmt=export_formats.resolve(options.fmt))
    if options.bom and options.fmt != "csv":
        raise ExportRefused("A byte order mark is for CSV files only.")
    if options.split and options.split not in Item.Split.values:
        raise ExportRefused(f"Unknown split {options.split!r}: choose one of {', '.join(Item.Split.values)}.")
    if options.min_labels < 0:
        raise ExportRefused("The minimum number of labels cannot be negative.")
    for bound in (options.since, options.until):
        if bound is not None and bound.tzinfo is None:
            raise ExportRefused("The date range needs aware datetimes (see parse_bound).")
    check_range(options.since, options.until)
    if refusal := format_refusal(fmt=options.fmt, pairwise=project.is_pairwise):
        raise ExportRefused(refusal)
    version = project.current_rubric
    if version is None:
        raise ExportRefused("This project has no rubric yet, so there is nothing to export.")
    criteria = _criteria(project, options)
    codes = reports.PAIRWISE_CODES if project.is_pairwise else reports.BINARY_CODES
    export = Export(project=project, options=options, criteria=criteria, codes=codes)
    export.manifest = {
        "project": project.slug,
        "kind": project.kind,
        "rubric_version": version.number,
        "format": options.fmt,
        "criteria": [c.key for c in criteria],
        "filters": options.as_dict(),
        "counts": {},
        "app_version": app_version(),
        "generated_at": (now or timezone.now()).astimezone(dt.UTC).isoformat(),
    }
    export.manifest["counts"] = export.count()
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


def empty_reason(manifest: dict[str, Any]) -> str:
    """Why an export with these counts has no row, for people (the export page says it instead of a download)."""
    counts = manifest["counts"]
    left_out = [
        f"{counts[key]:,} {what}"
        for key, what in (
            ("items_filtered_out", "left out by the filters"),
            ("items_without_consensus", "without a reference label on the criterion"),
            ("ties", "tied"),
        )
        if counts.get(key)
    ]
    if not left_out:
        return "No item matches these options: nothing to download."
    return f"No item matches these options ({'; '.join(left_out)}): nothing to download."


MANIFEST_HEADER = "X-Export-Manifest"


def manifest_header(manifest: dict[str, Any]) -> str:
    """The manifest as one line of ASCII JSON, for the X-Export-Manifest response header."""
    return json.dumps(manifest, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def filename(export: Export) -> str:
    fmt = export.options.fmt
    return f"{export.project.slug}-v{export.manifest['rubric_version']}-{fmt}.{EXTENSIONS[fmt]}"
