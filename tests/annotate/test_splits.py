from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter

import pytest

from annotate.splits import (
    DEFAULT_RATIOS,
    content_hash,
    content_hash_of_texts,
    order_key,
    split_and_order_key,
    split_for,
)


def test_the_split_is_a_stable_function_of_project_and_external_id():
    first = [split_for("support-bot", f"ticket-{i}") for i in range(1000)]
    again = [split_for("support-bot", f"ticket-{i}") for i in range(1000)]
    assert first == again
    # Pinned values: a change to the hashing would silently move items between dev and test.
    assert [split_for("p", key) for key in "abcdef"] == ["test", "dev", "test", "dev", "dev", "dev"]


def test_ten_thousand_items_land_close_to_the_twenty_forty_forty_target():
    counts = Counter(split_for("support-bot", f"item-{i}") for i in range(10_000))
    for name, share in DEFAULT_RATIOS:
        # Binomial standard deviation at n=10k is at most 0.5%; 2% is four sigma.
        assert abs(counts[name] / 10_000 - share) < 0.02, counts


def test_the_same_external_id_can_land_in_different_splits_in_different_projects():
    ids = [f"item-{i}" for i in range(200)]
    assert [split_for("one", i) for i in ids] != [split_for("two", i) for i in ids]


def test_custom_ratios_are_honoured_and_bad_ratios_refused():
    assert {split_for("p", f"{i}", (("dev", 1.0),)) for i in range(100)} == {"dev"}
    with pytest.raises(ValueError, match="positive share"):
        split_for("p", "x", ())


def test_the_content_hash_ignores_key_order_and_sees_every_character():
    assert content_hash({"input": "a", "output": "b"}) == content_hash({"output": "b", "input": "a"})
    assert content_hash({"input": "a", "output": "b"}) != content_hash({"input": "a", "output": "b "})


def test_the_content_hash_is_the_sha256_of_the_canonical_json_it_always_was():
    """Stored hashes stay valid (dedupe across imports, conflicts): the hash built from each text's JSON form equals
    the one from json.dumps on every kind of text, escapes, controls and characters outside the BMP included."""
    texts = [
        "",
        "plain ascii",
        'quotes " and \\ backslashes \\n',
        "controls \x01\x1f\t\n\r\x7f",
        "line separators \u2028\u2029",
        "accents é, CJK 漢字, emoji 👍🏽, RTL עברית",
        '[{"role": "user", "content": "a transcript as text"}]',
    ]
    for a, b, c in itertools.product(texts, repeat=3):
        for fields in ({"input": a, "output": b}, {"output_b": c, "input": a, "output_a": b}):
            reference = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            assert content_hash(fields) == hashlib.sha256(reference.encode()).hexdigest()
            names = tuple(sorted(fields))
            # What imports compute per row, from the texts alone.
            assert content_hash_of_texts(names, [fields[n] for n in names]) == content_hash(fields)


def test_the_content_hash_of_texts_refuses_names_out_of_order():
    with pytest.raises(ValueError, match="sorted order"):
        content_hash_of_texts(("output", "input"), ["b", "a"])


def test_split_and_order_key_together_are_split_for_and_order_key():
    ratios = (("train", 0.5), ("test", 0.5))
    for i in range(5000):
        assert split_and_order_key("p", f"id-{i}") == (split_for("p", f"id-{i}"), order_key("p", f"id-{i}"))
        assert split_and_order_key("q", str(i), ratios)[0] == split_for("q", str(i), ratios)
