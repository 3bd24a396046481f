"""Reading files: the format from the name and first bytes, then JSON Lines, CSV or API rows one at a time."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from annotate.imports.checking import (
    RowError,
    type_name,
)
from annotate.imports.report import ImportRefused

FORMATS = ("jsonl", "csv")
_BOM = b"\xef\xbb\xbf"


def format_detect(filename: str, head: bytes = b"") -> str:
    """jsonl or csv, from the file name, else from the first byte that is not a BOM or white space."""
    suffix = Path(filename).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.removeprefix(_BOM).lstrip()[:1] == b"{" else "csv"


# What a file is, from its first bytes, when it is not the UTF-8 text an import reads. Nothing here is ever opened,
# decompressed or unpacked: compressed uploads are refused, so there is no archive to bomb anyone with.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Excel workbook is one)"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (.xls or .doc)"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
)
SNIFF_BYTES = 64 * 1024


def content_problem(head: bytes) -> str | None:
    """Why a file whose first bytes are `head` cannot be an import file (JSON Lines or CSV in UTF-8), or None."""
    for signature, what in _SIGNATURES:
        if head.startswith(signature) and not (signature == b"BZh" and head[4:10] != b"1AY&SY"):
            if what == "UTF-16 text":
                return "The file is UTF-16 text; save it as UTF-8 (JSON Lines or CSV) and upload it again."
            kind = what if what.startswith("a") else f"a {what} file"
            return (
                f"The file is {kind}, not JSON Lines or CSV text. Upload the .jsonl or .csv file itself, "
                "uncompressed; nothing was imported."
            )
    if b"\x00" in head:
        return "The file holds binary data (NUL bytes), not JSON Lines or CSV text; nothing was imported."
    return None


def _max_line_bytes() -> int:
    # A row holds at most a few fields of IMPORT_MAX_FIELD_CHARS characters, each up to 4 bytes in UTF-8 (6 when
    # JSON-escaped); a line beyond this cannot be valid, and reading it whole would unbound memory.
    return int(settings.IMPORT_MAX_FIELD_CHARS) * 6 * 5 + 65_536


def _readline(stream: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """The next physical line, and whether it was longer than `limit` (its rest is then skipped, unread)."""
    raw = stream.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw, False
    while True:
        more = stream.readline(1 << 20)
        if not more or more.endswith(b"\n"):
            return raw[:0], True


def _decode_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"bad encoding: not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})"


def rows_read(stream: IO[bytes], *, fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line number, row or the reason the row is unreadable) for each row of a UTF-8 file, BOM or not."""
    if fmt == "jsonl":
        return _jsonl_rows(stream)
    if fmt == "csv":
        return _csv_rows(stream)
    raise ImportRefused(f"Unknown format {fmt!r}: use jsonl or csv.")


# What json.loads's decoder calls: set by JSONDecoder.__init__, which the type stubs do not declare.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_loads(text: str) -> Any:
    """json.loads(text), through the decoder's own scanner: json.loads wraps it in type checks and two white-space
    matches, 0.6 of its 2.2 µs for a 1.4 kB row. A line that is not one value followed by JSON's white space at
    most (a BOM, white space in front, anything after, an error) goes to json.loads, which says what it says."""
    try:
        data, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end == len(text) or not text[end:].strip(" \t\n\r"):
        return data
    return json.loads(text)


def _jsonl_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    limit = _max_line_bytes()
    line = 0
    while True:
        raw, too_long = _readline(stream, limit)
        if not raw and not too_long:
            return
        line += 1
        if too_long:
            yield line, RowError(line, "", f"line too long (more than {limit:,} bytes)")
            continue
        if line == 1:
            raw = raw.removeprefix(_BOM)
        if not raw or raw.isspace():  # `not raw.strip()` without copying every line
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line, RowError(line, "", _decode_problem(raw, exc))
            continue
        try:
            data = _json_loads(text)
        except json.JSONDecodeError as exc:
            yield line, RowError(line, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield line, RowError(line, "", "not valid JSON: nested too deeply")
            continue
        if not isinstance(data, dict):
            yield line, RowError(line, "", f"each line must be a JSON object, not {type_name(data)}")
            continue
        yield line, data


def _csv_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    limit = _max_line_bytes()
    problems: dict[int, str] = {}  # physical line -> why it is unreadable (only lines of the current record)
    physical = 0

    def lines() -> Iterator[str]:
        nonlocal physical
        while True:
            raw, too_long = _readline(stream, limit)
            if not raw and not too_long:
                return
            physical += 1
            if too_long:
                problems[physical] = f"line too long (more than {limit:,} bytes)"
                yield "\n"
                continue
            if physical == 1:
                raw = raw.removeprefix(_BOM)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems[physical] = _decode_problem(raw, exc)
                yield raw.decode("utf-8", "replace")

    csv.field_size_limit(limit)
    reader = csv.reader(lines(), strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused("The file is empty.") from None
    except csv.Error as exc:
        raise ImportRefused(f"The CSV header cannot be read: {exc}.") from None
    if 1 in problems:
        raise ImportRefused(f"The CSV header cannot be read: {problems[1]}.")
    header = [name.strip() for name in header]
    if not any(header):
        raise ImportRefused("The first line must name the columns (a CSV header).")
    if "" in header:
        raise ImportRefused(f"Column {header.index('') + 1} of the header has no name.")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise ImportRefused(f"The header names these columns twice: {', '.join(twice)}.")
    yield 1, {"__header__": header}
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot resynchronise after this (an unterminated quote swallows the rest): stop here.
            yield start, RowError(start, "", f"unreadable CSV: {exc}")
            return
        end = reader.line_num
        line, start = start, end + 1
        bad = [problems.pop(n) for n in range(line, end + 1) if n in problems]
        if bad:
            yield line, RowError(line, "", bad[0])
        elif not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        elif len(cells) > len(header):
            yield line, RowError(line, "", f"{len(cells)} cells, but the header names {len(header)} columns")
        else:
            yield line, dict(zip(header, cells, strict=False))


def api_rows(entries: Iterable[Any]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """An API batch as rows: position i is the entry's index, so errors read `items.i.field`."""
    for i, entry in enumerate(entries):
        yield i, entry.model_dump(mode="json", exclude_none=True) if hasattr(entry, "model_dump") else dict(entry)
