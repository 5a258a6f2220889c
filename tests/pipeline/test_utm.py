from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import utm
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

URL = (
    "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=black%20friday"
    "&utm_term=shoes&utm_content=hero&utm_id=42&id=3"
)


def parse(value: Any) -> tuple[utm.UtmOptions, list[str]]:
    rep = Reporter()
    opts = utm.parse(At(value, ("pipelines", "p", 3, "utm"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def test_parse() -> None:
    assert parse("collapse") == (utm.UtmOptions("collapse"), [])
    assert parse("drop") == (utm.UtmOptions("drop"), [])
    _, errors = parse("colapse")
    assert "did you mean 'collapse'?" in errors[0]


def test_collapse() -> None:
    ctx = StepContext("d")
    event = {
        "event": "page_view",
        "context": {"page": {"url": URL, "referrer": "https://r.example/?utm_source=r&q=1"}},
    }
    out = utm.apply(event, utm.UtmOptions("collapse"), ctx)
    assert out["context"]["page"] == {
        "url": "https://shop.example/?id=3",
        "referrer": "https://r.example/?q=1",
    }
    assert out["context"]["campaign"] == {
        "source": "news",
        "medium": "email",
        "name": "black friday",
        "term": "shoes",
        "content": "hero",
        "id": "42",
    }
    assert ctx.counts == {"utm": 7}


def test_collapse_does_not_override_campaign_fields() -> None:
    event = {
        "context": {
            "page": {"url": "https://a.example/?utm_source=url&utm_medium=cpc"},
            "campaign": {"source": "backend"},
        }
    }
    out = utm.apply(event, utm.UtmOptions("collapse"), StepContext("d"))
    assert out["context"]["campaign"] == {"source": "backend", "medium": "cpc"}


def test_collapse_from_search_without_url() -> None:
    event = {"context": {"page": {"search": "?utm_campaign=c&x=1"}}}
    out = utm.apply(event, utm.UtmOptions("collapse"), StepContext("d"))
    assert out["context"] == {"page": {"search": "?x=1"}, "campaign": {"name": "c"}}


def test_drop() -> None:
    ctx = StepContext("d")
    event = {"context": {"page": {"url": URL}}}
    out = utm.apply(event, utm.UtmOptions("drop"), ctx)
    assert out["context"] == {"page": {"url": "https://shop.example/?id=3"}}
    assert ctx.counts == {"utm": 6}


def test_no_utm_no_change() -> None:
    ctx = StepContext("d")
    event = {"context": {"page": {"url": "https://a.example/?x=1"}}}
    assert utm.apply(event, utm.UtmOptions("collapse"), ctx) == {
        "context": {"page": {"url": "https://a.example/?x=1"}}
    }
    assert ctx.counts == {}


@pytest.mark.parametrize(
    "name", ["utm_source", "UTM_Source", "%75tm_source", "utm%5Fsource", "UTM%5fSOURCE"]
)
def test_names_compare_decoded_and_lowercase(name: str) -> None:
    ctx = StepContext("d")
    event = {"context": {"page": {"url": f"https://a.example/?{name}=news&q=a+b"}}}
    out = utm.apply(event, utm.UtmOptions("collapse"), ctx)
    assert out["context"] == {
        "page": {"url": "https://a.example/?q=a+b"},
        "campaign": {"source": "news"},
    }
    assert ctx.counts == {"utm": 1}


def test_values_are_decoded() -> None:
    page = {"url": "https://a.example/?utm_campaign=black+friday&utm_term=a%2Bb"}
    event = {"context": {"page": page}}
    out = utm.apply(event, utm.UtmOptions("collapse"), StepContext("d"))
    assert out["context"]["campaign"] == {"name": "black friday", "term": "a+b"}


def test_a_query_with_plus_but_no_utm_is_left_as_is() -> None:
    ctx = StepContext("d")
    event = {"context": {"page": {"url": "https://a.example/?q=utm+source&xutm=1"}}}
    assert utm.apply(event, utm.UtmOptions("collapse"), ctx) == {
        "context": {"page": {"url": "https://a.example/?q=utm+source&xutm=1"}}
    }
    assert ctx.counts == {}
