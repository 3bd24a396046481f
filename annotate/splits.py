"""Deterministic split assignment and content hashing for items. Pure functions, no database."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring

# Train is where few-shot examples may come from; dev is where judge prompts are tuned; test is held out.
DEFAULT_RATIOS: tuple[tuple[str, float], ...] = (("train", 0.2), ("dev", 0.4), ("test", 0.4))

_SCALE = float(1 << 64)


def split_for(project_key: str, external_id: str, ratios: tuple[tuple[str, float], ...] = DEFAULT_RATIOS) -> str:
    """The split of an item: a stable function of the project and the item's external id.

    The same pair always lands in the same split, on every machine and across re-imports, so a judge prompt tuned
    on dev never meets its test items by accident.
    """
    return _split_of(_digest(project_key, external_id), ratios)


def split_and_order_key(
    project_key: str, external_id: str, ratios: tuple[tuple[str, float], ...] = DEFAULT_RATIOS
) -> tuple[str, int]:
    """(split_for(...), order_key(...)) from the one hash both read: what an import computes for every row."""
    digest = hashlib.sha256(f"{project_key}\x1f{external_id}".encode()).digest()
    key = int.from_bytes(digest[8:16], "big", signed=True)
    if ratios is DEFAULT_RATIOS:
        # _split_of with its sums done once: the same float arithmetic, so the same split for every id.
        point = int.from_bytes(digest[:8], "big") / _SCALE * _DEFAULT_TOTAL
        for name, cumulative in _DEFAULT_CUMULATIVE:
            if point < cumulative:
                return name, key
        return DEFAULT_RATIOS[-1][0], key
    return _split_of(digest, ratios), key


def _cumulative(ratios: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    out, cumulative = [], 0.0
    for name, share in ratios:
        cumulative += share
        out.append((name, cumulative))
    return tuple(out)


_DEFAULT_TOTAL = sum(share for _, share in DEFAULT_RATIOS)
_DEFAULT_CUMULATIVE = _cumulative(DEFAULT_RATIOS)


def _digest(project_key: str, external_id: str) -> bytes:
    return hashlib.sha256(f"{project_key}\x1f{external_id}".encode()).digest()


def _split_of(digest: bytes, ratios: tuple[tuple[str, float], ...]) -> str:
    total = sum(share for _, share in ratios)
    if not ratios or total <= 0:
        raise ValueError("ratios must name at least one split with a positive share")
    point = int.from_bytes(digest[:8], "big") / _SCALE * total
    cumulative = 0.0
    for name, share in ratios:
        cumulative += share
        if point < cumulative:
            return name
    return ratios[-1][0]


def content_hash(fields: Mapping[str, object]) -> str:
    """A hash of an item's content fields: the default external id, and how re-imports spot changed content."""
    texts = {key: value for key, value in fields.items() if isinstance(value, str)}
    if len(texts) == len(fields):
        # The same canonical text as below, built from each text's JSON string form: json.dumps configures a new
        # encoder on every call, which costs imports more than the hash itself.
        pairs = ",".join(f"{encode_basestring(key)}:{encode_basestring(texts[key])}" for key in sorted(texts))
        canonical = "{" + pairs + "}"
    else:
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_hash_of_texts(names: tuple[str, ...], texts: Sequence[str]) -> str:
    """content_hash(dict(zip(names, texts))) where `names` are sorted and every value is text: what an import computes
    for every row, without building a dictionary, sorting it or encoding its keys (a test holds the two equal)."""
    pairs = ",".join(map(str.__add__, _key_prefixes(names), map(encode_basestring, texts)))
    return hashlib.sha256(("{" + pairs + "}").encode()).hexdigest()


@functools.cache
def _key_prefixes(names: tuple[str, ...]) -> tuple[str, ...]:
    if list(names) != sorted(names):
        raise ValueError("content_hash_of_texts takes the names in sorted order")
    return tuple(encode_basestring(name) + ":" for name in names)


def order_key(project_key: str, external_id: str) -> int:
    """A stable pseudo-random signed 64-bit position in the project's queue."""
    return int.from_bytes(_digest(project_key, external_id)[8:16], "big", signed=True)


def shown_order(annotator_id: int | None, item_id: int) -> str:
    """Which output a pairwise item shows on the left for this annotator: "ab" (A left) or "ba". Stable, ~50/50."""
    digest = hashlib.sha256(f"order\x1f{annotator_id}\x1f{item_id}".encode()).digest()
    return "ab" if digest[0] & 1 == 0 else "ba"
