"""The pipeline on vendor events (``relay.proxy.hygiene``): fields lifted into an envelope
and written back, fields with a second meaning, and the route's ceiling."""

from __future__ import annotations

from typing import Any

from relay.paths import MISSING
from relay.pipeline.fields import DropOptions, SetOptions
from relay.proxy.hygiene import Hygiene, clean_item
from relay.proxy.vendors.base import Field, Shape
from relay.rules.model import ProxyRoute, Step
from tests.proxy.vendors.support import minimize

SHAPE = Shape(
    fields=(Field("context.ip", "ip"), Field("context.user_agent", "ua"),
            Field("context.page.url", "props.url"), Field("user.id", "uid")),
    properties="props",
    system=lambda key: key.startswith("$"),
    user="traits",
    also=(Field("context.page.url", "props.$entry_url"), Field("user", "traits_once")),
    click_ids=("props",),
    hints=("hints.model", "hints.mobile"),
    coarse_hints=("hints.mobile",),
)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.1 Safari/537.36"


def route(**options: Any) -> ProxyRoute:
    return ProxyRoute("r", "/r/", "https://v.example", **options)


def event() -> dict[str, Any]:
    return {
        "ip": "203.0.113.77", "ua": UA, "uid": "u1",
        "props": {"url": "https://s.example/?q=1&gclid=g", "$entry_url": "https://s.example/?x=1",
                  "$lib": "web", "email": "ann@example.com", "gclid": "g", "fbclid": None},
        "traits": {"email": "Ann@Example.com"}, "traits_once": {"email": "ann@example.com"},
        "hints": {"model": "Pixel", "mobile": True},
    }


def test_the_shipped_pipeline_on_every_kind_of_field() -> None:
    h = Hygiene(minimize(), frozenset({"analytics"}), route(forward_ip="keep", user_agent="pass"))
    item = event()
    clean_item(item, SHAPE, h)
    digest = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
    assert item == {
        "ip": "203.0.113.0", "uid": "u1",
        "props": {"url": "https://s.example/", "$entry_url": "https://s.example/",
                  "$lib": "web", "email": "[email]", "fbclid": None},
        "traits": {"email": digest}, "traits_once": {"email": digest},
        "hints": {"mobile": True},  # the user agent became a device: coarse hints only
    }
    assert h.ctx.counts["hash"] == 2 and h.ctx.counts["ip"] == 1


def test_the_route_is_a_ceiling() -> None:
    h = Hygiene((), frozenset(), route(forward_ip="strip", user_agent="generalize"),
                keep_click_ids=False)
    item = event()
    clean_item(item, SHAPE, h)
    assert "ip" not in item and "gclid" not in item["props"]
    assert item["ua"] == "Mozilla/5.0 (Windows) Chrome/120"
    assert item["props"]["url"] == "https://s.example/?q=1&gclid=g"  # the pipeline's business
    assert item["hints"] == {"mobile": True}
    h = Hygiene((), frozenset(), route(user_agent="strip"))
    item = event()
    clean_item(item, SHAPE, h)
    assert "ua" not in item and "hints" not in item
    h = Hygiene((), frozenset(), route(forward_ip="keep", user_agent="pass"), keep_click_ids=True)
    item = event()
    clean_item(item, SHAPE, h)
    assert item == event()


def test_drop_and_set_reach_the_vendor_fields() -> None:
    steps = (Step("drop", DropOptions(("properties.email", "user.id"))),
             Step("set", SetOptions((("properties.source", "relay"),))))
    h = Hygiene(steps, frozenset(), route(forward_ip="keep", user_agent="pass"), True)
    item = event()
    clean_item(item, SHAPE, h)
    assert "email" not in item["props"] and "uid" not in item
    assert item["props"]["source"] == "relay"


def test_role_and_missing() -> None:
    h = Hygiene(minimize(), frozenset(), route())
    assert h.role("context.page.url", "https://a.example/?gclid=x") == "https://a.example/"
    assert h.role("context.click_ids.gclid", "x") is MISSING
    assert h.role("context.ip", "not an ip") is MISSING
