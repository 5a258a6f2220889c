from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import query, url
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext


def parse(value: Any) -> tuple[url.UrlOptions, list[str]]:
    rep = Reporter()
    opts = url.parse(At(value, ("pipelines", "p", 2, "url"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def page_event(**page: str) -> dict[str, Any]:
    return {"event": "page_view", "context": {"page": dict(page)}}


def test_parse_forms() -> None:
    assert parse({"keep_params": ["utm_source", "Page"]}) == (
        url.UrlOptions(keep_params=frozenset({"utm_source", "page"})),
        [],
    )
    assert parse({"drop_params": "email"}) == (
        url.UrlOptions(drop_params=frozenset({"email"})),
        [],
    )
    assert parse("strip_query") == (url.UrlOptions(strip_query=True), [])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("strip", "R105 pipelines.p[2].url: unknown value 'strip'"),
        ({}, "R103 pipelines.p[2].url: expected exactly one of keep_params or drop_params"),
        ({"keep_params": ["a"], "drop_params": ["b"]}, "R104"),
        ({"keep": ["a"]}, "R101 pipelines.p[2].url.keep: unknown key 'keep'"),
        ({"keep_params": 3}, "R102"),
        (5, "R102"),
    ],
)
def test_parse_errors(value: Any, fragment: str) -> None:
    _, errors = parse(value)
    assert any(fragment in e for e in errors), errors


def test_keep_params() -> None:
    ctx = StepContext("d")
    event = page_event(
        url="https://shop.example/p?utm_source=news&email=ann%40example.com&gclid=abc&UTM_MEDIUM=m#top",
        referrer="https://search.example/?q=shoes&utm_source=x",
        title="Shoes",
    )
    opts = url.UrlOptions(keep_params=frozenset({"utm_source", "utm_medium"}))
    out = url.apply(event, opts, ctx)
    page = out["context"]["page"]
    assert page["url"] == "https://shop.example/p?utm_source=news&UTM_MEDIUM=m#top"
    assert page["referrer"] == "https://search.example/?utm_source=x"
    assert page["title"] == "Shoes"
    assert ctx.counts == {"url": 3}
    assert ctx.notes == [
        "removed 2 query parameter(s) from context.page.url",
        "removed 1 query parameter(s) from context.page.referrer",
    ]


def test_keep_params_can_keep_click_ids() -> None:
    event = page_event(url="https://a.example/?gclid=abc&x=1")
    opts = url.UrlOptions(keep_params=frozenset({"gclid"}))
    out = url.apply(event, opts, StepContext("d"))
    assert out["context"]["page"]["url"] == "https://a.example/?gclid=abc"


def test_drop_params_also_drops_click_ids() -> None:
    ctx = StepContext("d")
    event = page_event(
        url="https://a.example/p?token=s3cret&id=3&fbclid=F&msclkid=M", search="?token=s3cret&id=3"
    )
    out = url.apply(event, url.UrlOptions(drop_params=frozenset({"token"})), ctx)
    assert out["context"]["page"]["url"] == "https://a.example/p?id=3"
    assert out["context"]["page"]["search"] == "?id=3"
    assert ctx.counts == {"url": 4}
    assert "s3cret" not in str(out) and "fbclid" not in str(out)


def test_removing_every_parameter_removes_the_question_mark() -> None:
    event = page_event(url="https://a.example/p?gclid=1#frag")
    out = url.apply(event, url.UrlOptions(), StepContext("d"))
    assert out["context"]["page"]["url"] == "https://a.example/p#frag"


def test_strip_query() -> None:
    ctx = StepContext("d")
    event = page_event(
        url="https://a.example/p?a=1&b=2#access_token=x",
        referrer="https://b.example/",
        search="?a=1&b=2",
    )
    out = url.apply(event, url.UrlOptions(strip_query=True), ctx)
    assert out["context"]["page"] == {
        "url": "https://a.example/p",
        "referrer": "https://b.example/",
        "search": "",
    }
    assert ctx.counts == {"url": 4}


def test_nothing_to_do() -> None:
    ctx = StepContext("d")
    for event in ({"event": "e"}, {"context": {"page": "x"}}, page_event(url="https://a/")):
        assert url.apply(event, url.UrlOptions(strip_query=True), ctx) is event
        assert url.apply(event, url.UrlOptions(), ctx) is event
    assert ctx.counts == {}


def test_filter_query() -> None:
    assert url.filter_query("https://a.example/p?x=1&gclid=abc#top", lambda n: n == "gclid") == (
        "https://a.example/p?x=1#top",
        [("gclid", "abc")],
    )
    # encoded names are compared decoded; kept pairs keep their encoding
    assert url.filter_query("/p?e%6Dail=a&q=a%20b&&", lambda n: n == "email") == (
        "/p?q=a%20b",
        [("email", "a")],
    )
    assert url.filter_query("/p", lambda n: True) == ("/p", [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example/?utm_source=x", True),
        ("https://a.example/?UTM_Source=x", True),  # names compare lowercased
        ("https://a.example/?%75tm_source=x", True),  # ... and decoded: any '%' says maybe
        ("https://a.example/?utm%5Fsource=x", True),
        ("https://a.example/utm_/p?q=1", True),  # a needle in the path: a needless split only
        ("https://a.example/?q=blue+shoes&utm=1&xutm=2", False),
        ("?a=1&b=2", False),
    ],
)
def test_may_name(value: str, expected: bool) -> None:
    assert query.may_name(value, ("utm_",)) is expected


@pytest.mark.parametrize("key", ["GCLID", "gcl%69d", "Token", "TO%4BEN", "a+b", "a%20b"])
def test_drop_params_compares_decoded_lowercase_names(key: str) -> None:
    # the removed name differs from its raw key: the fast path must not skip this query
    ctx = StepContext("d")
    event = page_event(url=f"https://a.example/?{key}=1&x=5")
    out = url.apply(event, url.UrlOptions(drop_params=frozenset({"token", "a b"})), ctx)
    assert out["context"]["page"]["url"] == "https://a.example/?x=5"
    assert ctx.counts == {"url": 1}


def test_drop_needles() -> None:
    needles = url.drop_needles(frozenset({"token"}))
    assert needles is not None and "token" in needles and "gclid" in needles
    # '+' in a key decodes to a space, which the raw query does not show: no fast path
    assert url.drop_needles(frozenset({"a b"})) is None
    assert url.drop_needles(frozenset({"straße"})) is None


def test_a_query_without_candidate_names_is_left_as_is() -> None:
    ctx = StepContext("d")
    event = page_event(url="https://a.example/?q=blue+shoes&page=2#top", search="?q=blue+shoes")
    before = dict(event["context"]["page"])
    out = url.apply(event, url.UrlOptions(drop_params=frozenset({"token"})), ctx)
    assert out["context"]["page"] == before
    assert ctx.counts == {}
