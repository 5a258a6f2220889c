"""The debug view's diff: each change named by what happened to the field, shown masked."""

from __future__ import annotations

import doctest
import hashlib
from typing import Any

import orjson

from relay.observe import changes as changes_module
from relay.observe.changes import MOST, changes, leaves
from relay.observe.mask import Masker

MASKER = Masker(b"test-changes-masking-key-0123")
EMAIL = "Ann.Lee@Example.com"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/125.0 ChangesProbe/1"


def _by_path(before: Any, after: Any) -> dict[str, dict[str, Any]]:
    return {c["path"]: c for c in changes(before, after, MASKER)}


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(changes_module).failed == 0


def test_each_kind_of_change_is_named() -> None:
    sha = hashlib.sha256(EMAIL.strip().lower().encode()).hexdigest()
    before = {
        "event": "page_view",
        "user": {"email": EMAIL, "id": sha},
        "context": {"ip": "203.0.113.77", "user_agent": UA,
                    "page": {"url": "https://shop.example/p?utm_source=news&gclid=abc&n=2",
                             "title": "A very long title indeed"}},
        "properties": {"note": "mail ann@example.com", "value": 1, "tags": ["a", "b"],
                       "flag": True},
    }
    after = {
        "event": "page_view",
        "user": {"email": sha, "id": sha},
        "context": {"ip": "203.0.113.0", "device": {"type": "desktop"},
                    "page": {"url": "https://shop.example/p?n=2", "title": "A very long"}},
        "properties": {"note": "mail [email]", "value": 1.0, "tags": ["a"], "flag": True},
    }
    got = _by_path(before, after)
    kinds = {path: c["change"] for path, c in got.items()}
    assert kinds == {
        "user.email": "hashed",
        "context.ip": "truncated",
        "context.user_agent": "dropped",
        "context.page.url": "changed",
        "context.page.title": "truncated",
        "properties.note": "redacted",
        "properties.value": "changed",  # 1 -> 1.0: another type is another value
        "properties.tags": "changed",  # lists are compared whole
        "context.device.type": "added",
    }
    assert "user.id" not in got  # unchanged (already hashed): not listed
    assert got["context.page.url"]["note"] == "removed ?utm_source, ?gclid"
    assert got["context.page.title"]["note"] == "24 -> 11 characters"
    assert got["user.email"]["note"] == "SHA-256"
    assert "after" not in got["context.user_agent"]
    assert "before" not in got["context.device.type"]
    assert got["context.device.type"]["after"] == "desktop"
    # The order is the input's, then what the copy added.
    assert list(got)[-1] == "context.device.type"


def test_a_v6_address_cut_to_its_network_is_truncated() -> None:
    got = _by_path({"context": {"ip": "2001:db8:85a3:8d3:1319:8a2e:370:7348"}},
                   {"context": {"ip": "2001:db8:85a3::"}})
    assert got["context.ip"]["change"] == "truncated"


def test_what_is_shown_is_masked() -> None:
    before = {"user": {"email": EMAIL, "phone": "+1 (555) 010-4477"},
              "correlation_id": "cid-raw-value-1",
              "context": {"ip": "198.51.100.23", "user_agent": UA,
                          "page": {"url": "https://shop.example/?email=ann%40example.com"}},
              "properties": {"ann@example.com": "x", "mobile": "5550104477",
                             "note": "call 555 010 4477 from 198.51.100.23"}}
    after = {"user": {}, "context": {"ip": "198.51.100.0"}, "properties": {}}
    shown = changes(before, after, MASKER)
    blob = orjson.dumps(shown).decode()
    for raw in ("Ann.Lee", "ann@example.com", "ann%40example.com", "4477", "198.51.100.23",
                "ChangesProbe", "cid-raw-value-1"):
        assert raw not in blob, raw
    got = {c["path"]: c for c in shown}
    assert got["user.email"]["before"] == f"[email {MASKER.tag(EMAIL.lower())}]"
    assert got["context.ip"]["before"] == f"198.51.100.0 {MASKER.tag('198.51.100.23')}"
    assert got["context.ip"]["after"] == f"198.51.100.0 {MASKER.tag('198.51.100.0')}"
    assert "properties.[email]" in got  # a key is masked as free text
    assert got["context.page.url"]["before"] == "https://shop.example/?email=[email]"


def test_a_note_quoting_a_parameter_name_is_masked() -> None:
    got = _by_path({"u": "https://s.example/?ann@example.com=1&n=2"}, {"u": "https://s.example/?n=2"})
    assert got["u"]["note"] == "removed ?[email]"


def test_nothing_changed_is_an_empty_list_and_a_huge_diff_is_cut() -> None:
    event = {"event": "x", "properties": {"a": 1}}
    assert changes(event, orjson.loads(orjson.dumps(event)), MASKER) == []
    many = {"properties": {f"k{i}": i for i in range(MOST + 50)}}
    shown = changes(many, {}, MASKER)
    assert len(shown) == MOST + 1
    assert shown[-1] == {"path": "…", "change": "changed", "note": "50 more"}


def test_leaves_are_in_document_order() -> None:
    assert list(leaves({"b": {"c": 1, "a": {}}, "a": [1]})) == [("b", "c"), ("b", "a"), ("a",)]
