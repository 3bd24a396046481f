"""Checking one item row and building what goes in the database: the part of an import that runs once per row.

Kept apart from the runs (imports/items.py, labels.py) because its cost is per row: at 30,000 rows/s every row has about
30 µs. So the checks take the cheap road where it is exact: text that is ASCII cannot hold a lone surrogate
(`guards.text_problem`), metadata whose JSON text is ASCII with few brackets can be neither too deep nor hold one,
and the content hash is built from the fields' own JSON text instead of re-serialising a dictionary
(`splits.content_hash_of_texts`, which a test holds equal to `splits.content_hash`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings

from annotate.guards import MAX_JSON_DEPTH, json_problem, text_problem
from annotate.models import Item, Project
from annotate.services.items import item_content
from annotate.splits import content_hash, content_hash_of_texts, split_and_order_key


@dataclass(frozen=True)
class RowError:
    """One bad row. `line` is the line number in a file (1-based), or the index in an API batch (0-based)."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.message}"


# --- Checking values ------------------------------------------------------------------------------------------


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _transcript_problem(messages: list[Any]) -> str | None:
    """Why a list is not a chat transcript (a non-empty list of {"role": text, "content": text}), or None."""
    if not messages:
        return "an empty list is not a chat transcript"
    for n, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            return f"message {n} of the chat transcript is {type_name(message)}, not an object"
        if not isinstance(message.get("role"), str) or not message["role"]:
            return f"message {n} of the chat transcript has no text role"
        if not isinstance(message.get("content"), str):
            return f"message {n} of the chat transcript has no text content"
    return None


def _text(value: Any, *, tabular: bool, max_chars: int) -> tuple[str, str | None]:
    """(canonical text, problem). A chat transcript becomes its JSON text, the same from JSON Lines and from CSV."""
    if isinstance(value, str):
        text = value
        if tabular and text.lstrip().startswith("["):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, list) and _transcript_problem(parsed) is None:
                text = json.dumps(parsed, ensure_ascii=False)
    elif isinstance(value, list):
        problem = _transcript_problem(value)
        if problem:
            return "", f"wrong type: {problem}"
        text = json.dumps(value, ensure_ascii=False)
    else:
        return "", f"wrong type: expected text or a chat transcript (a list of messages), got {type_name(value)}"
    if len(text) > max_chars:
        return "", f"too long: {len(text):,} characters (at most {max_chars:,})"
    if problem := text_problem(text):
        return "", problem
    return text, None


def external_id_checked(value: Any) -> tuple[str, str | None]:
    if value is None:
        return "", None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return "", f"wrong type: expected text or a whole number, got {type_name(value)}"
    value = value.strip()
    if len(value) > 255:
        return "", f"too long: {len(value):,} characters (at most 255)"
    if problem := text_problem(value):
        return "", problem
    return value, None


class ItemRow(NamedTuple):
    """A checked item row: what services.item_build would put on the Item, without building a model instance.

    Building 100,000 model instances costs more than parsing and hashing them; a plain tuple keeps imports above
    20,000 rows/s. `item_values` computes exactly what item_build computes (a test holds the two together), and
    `as_item()` gives the model instance where one is needed (SQLite, updates).
    """

    line: int
    external_id: str
    content: dict[str, str]
    metadata: dict[str, Any]
    metadata_json: str
    split: str
    content_hash: str
    order_key: int
    source: str

    def as_item(self, project: Project) -> Item:
        return Item(
            project=project,
            external_id=self.external_id,
            metadata=self.metadata,
            source=self.source,
            split=self.split,
            order_key=self.order_key,
            content_hash=self.content_hash,
            **self.content,
        )


def item_values(
    *, project: Project, fields: dict[str, Any], external_id: str | None, split: str | None
) -> tuple[dict[str, str], str, str, str, int]:
    """(content, content_hash, external_id, split, order_key) exactly as services.item_build computes them."""
    content = item_content(project=project, fields=fields)
    digest = content_hash(content)
    external_id = external_id or digest
    own_split, key = split_and_order_key(project.slug, external_id)
    return content, digest, external_id, split or own_split, key


# allow_nan=False: Python reads NaN and Infinity, but they are not JSON and PostgreSQL refuses them. One encoder for
# every row: json.dumps with options builds a new one per call.
_metadata_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_metadata_dumps = _metadata_encoder.encode
# The same encoder's C part, made once: JSONEncoder.encode makes it again for every call, which costs more than
# encoding small metadata. Without the circular-reference check, which JSON read from a file or a request cannot need
# (a cycle would end in RecursionError, which the caller takes as "not plain"). The public encoder where there is no C
# part (another Python implementation).
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_iterencode = (
    None
    if _make_encoder is None
    else _make_encoder(
        None, _metadata_encoder.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False
    )
)


def _metadata_text(metadata: dict[str, Any]) -> str:
    if _iterencode is None:
        return _metadata_dumps(metadata)
    return "".join(_iterencode(metadata, 0))


def _metadata_json(metadata: dict[str, Any]) -> str | None:
    """Metadata's JSON text when it plainly passes `json_problem`, else None (then json_problem must look).

    Plainly: the text is ASCII (so no key or text holds a lone surrogate; a NUL shows as \\u0000, checked after)
    and has at most MAX_JSON_DEPTH brackets that open an object or a list (so nothing nests deeper). Most metadata
    is such, and this costs one encoding instead of a walk over every value.
    """
    try:
        text = _metadata_text(metadata)
    except (ValueError, RecursionError):
        return None
    if text.isascii() and text.count("{") + text.count("[") <= MAX_JSON_DEPTH:
        return text
    return None


class ItemChecker:
    """Checks one item row and builds the item. `tabular`: the row came from CSV (text cells, extra columns)."""

    def __init__(self, project: Project, *, tabular: bool, source: str, header: list[str] | None = None) -> None:
        self.project = project
        self.tabular = tabular
        self.source = source
        self.content = ("input", "output_a", "output_b") if project.is_pairwise else ("input", "output")
        self.known = {*self.content, "external_id", "split", "metadata"}
        self.max_chars = int(settings.IMPORT_MAX_FIELD_CHARS)
        self.header_errors: list[RowError] = []
        if header is not None:
            missing = [name for name in self.content if name not in header]
            self.header_errors = [RowError(1, name, "missing column") for name in missing]

    def check(self, line: int, row: dict[str, Any]) -> ItemRow | list[RowError]:
        errors: list[RowError] = []
        fields: dict[str, str] = {}
        for name in self.content:
            value = row.get(name)
            if value is None:
                errors.append(RowError(line, name, "missing field"))
                continue
            text, problem = _text(value, tabular=self.tabular, max_chars=self.max_chars)
            if problem:
                errors.append(RowError(line, name, problem))
            elif name == "input" and not text.strip():
                errors.append(RowError(line, name, "missing field (empty)"))
            fields[name] = text
        external_id, problem = external_id_checked(row.get("external_id"))
        if problem:
            errors.append(RowError(line, "external_id", problem))
        split = row.get("split") or None
        if split is not None and split not in Item.Split.values:
            errors.append(RowError(line, "split", f"must be one of {', '.join(Item.Split.values)}, not {split!r}"))
        metadata, metadata_errors = self._metadata(line, row)
        errors += metadata_errors
        metadata_json = _metadata_json(metadata)
        if metadata_json is None:
            if problem := json_problem(metadata):
                # Before json.dumps: it fails on nesting a few hundred deep, and a lone surrogate fails the hash.
                errors.append(RowError(line, "metadata", problem))
                metadata = {}
            try:
                metadata_json = _metadata_dumps(metadata)
            except ValueError:
                metadata_json = "{}"
                errors.append(RowError(line, "metadata", "NaN and Infinity are not valid JSON numbers"))
        if len(metadata_json) > self.max_chars:
            errors.append(RowError(line, "metadata", f"too long: {len(metadata_json):,} characters as JSON"))
        elif "\\u0000" in metadata_json:
            errors.append(RowError(line, "metadata", "contains a NUL character, which cannot be stored"))
        if errors:
            return errors
        # What item_values computes (item_content's fields are self.content, every one text here), without its
        # keyword calls and dictionaries: this runs for every row.
        digest = content_hash_of_texts(self.content, [fields[name] for name in self.content])
        own_split, key = split_and_order_key(self.project.slug, external_id or digest)
        return ItemRow(
            line, external_id or digest, fields, metadata, metadata_json, split or own_split, digest, key, self.source
        )

    def _metadata(self, line: int, row: dict[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
        if not self.tabular:
            unknown = [name for name in row if name not in self.known]
            errors = [RowError(line, name, "unknown field (put extra data in metadata)") for name in sorted(unknown)]
            metadata = row.get("metadata")
            if metadata is None:
                return {}, errors
            if not isinstance(metadata, dict):
                return {}, [
                    *errors,
                    RowError(line, "metadata", f"wrong type: expected an object, got {type_name(metadata)}"),
                ]
            return metadata, errors
        # CSV: every column that is not a field goes into metadata, as text (a formula stays a literal string).
        metadata = {}
        raw = row.get("metadata") or ""
        if raw.strip():
            try:
                metadata = json.loads(raw)
            except (ValueError, RecursionError):
                metadata = None
            if not isinstance(metadata, dict):
                return {}, [RowError(line, "metadata", "wrong type: the metadata column must hold a JSON object")]
        for name, value in row.items():
            if name not in self.known and value != "":
                metadata[name] = value
        return metadata, []


def item_checker(project: Project, *, source: str) -> ItemChecker:
    """The item checks for JSON rows, for callers that store rows elsewhere (production records)."""
    return ItemChecker(project, tabular=False, source=source)
