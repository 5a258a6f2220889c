"""The relay's own requests to the demo's vendors, built without a network: the demo rules'
events through the real engine (pipelines and vendor mappings), batched by each destination
type's own ``build_request``, and handed to a stand-in as the ``Call`` it would receive; and
the same request for the end-to-end stand-ins of ``tests/e2e/standins``, the oracle of each
vendor's wire format."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from relay.demo.context import RULES_DIR, DemoConfig, demo_env
from relay.demo.lineup import Vendor, lineup
from relay.demo.standins.base import Call
from relay.destinations import DESTINATIONS
from relay.engine import Engine
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.rules.model import Given, Rules
from relay.state.memory import MemoryState
from relay.testing import meta_for
from relay.types import Event
from tests.e2e.standins import base as e2e
from tests.e2e.standins.ga4 import Ga4StandIn
from tests.e2e.standins.meta import MetaStandIn
from tests.e2e.standins.plausible import PlausibleStandIn
from tests.e2e.standins.posthog import PostHogStandIn
from tests.e2e.standins.tiktok import TikTokStandIn

BASE = "http://127.0.0.1:8123"
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0 Safari/537.36")
LANDING = "http://127.0.0.1:8123/?utm_source=newsletter&utm_campaign=spring&fbclid=fb-42"
ANN_SHA256 = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
GRANTED = {"analytics": "granted", "ads": "granted"}


def demo_rules(tmp: Any) -> tuple[Rules, dict[str, Vendor]]:
    rules = load_rules(RULES_DIR, demo_env(DemoConfig(tmp, port=8123)))
    return rules, {v.destination: v for v in lineup(rules, BASE)}


def page_view(event_id: str = "pv-1", **extra: Any) -> Event:
    return {"event": "page_view", "event_id": event_id, "consent": GRANTED,
            "context": {"page": {"url": LANDING, "title": "Relay demo shop"}}, **extra}


def backend_purchase(event_id: str = "o-1") -> Event:
    return {"event": "purchase", "event_id": event_id, "consent": GRANTED,
            "user": {"id": "C000042", "email": " Ann@Example.com "},
            "context": {"ip": "127.0.0.1", "user_agent": CHROME, "page": {"url": LANDING}},
            "properties": {"order_id": "O-1", "value": 37.0, "currency": "EUR",
                           "internal_note": "fraud score 0.02"}}


async def items(rules: Rules, steps: Sequence[tuple[str, Event]]) -> dict[str, list[Event]]:
    """destination -> the vendor items the relay makes of ``steps`` (source, event)."""
    state = MemoryState(rules.relay.dedup_max_keys, rules.relay.dedup_window)
    engine = Engine(rules, state, Metrics(), Masker(os.urandom(32)))
    out: dict[str, list[Event]] = {}
    for source, event in steps:
        given = Given(source=source, headers={"User-Agent": CHROME}, event=event)
        batch = await engine.process([event], meta_for(rules, given))
        for result in (*batch.results, *batch.releases):
            for copy in result.copies:
                if copy.sent is not None:
                    out.setdefault(copy.destination, []).append(copy.sent)
    return out


def batched(rules: Rules, destination: str, made: Sequence[Event]) -> list[list[Event]]:
    """``made`` in the requests the dispatcher would send: by the type's ``group`` (GA4: one
    client a request), at most ``max_batch`` each (Plausible: one)."""
    definition = DESTINATIONS[rules.destinations[destination].type]
    groups: dict[str, list[Event]] = {}
    for item in made:
        key = definition.group(item) if definition.group is not None else ""
        groups.setdefault(key, []).append(item)
    size = definition.max_batch
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def request(vendor: Vendor, rules: Rules, batch: Sequence[Event]) -> httpx.Request:
    dest = rules.destinations[vendor.destination]
    build = DESTINATIONS[dest.type].build_request
    assert build is not None
    return build(batch, dest.settings)


def call(vendor: Vendor, built: httpx.Request) -> Call:
    """The request as the stand-in at ``vendor.target`` receives it."""
    base = urlsplit(vendor.target).path
    path = built.url.path
    assert path.startswith(base), (path, base)
    return Call(built.method, path[len(base):] or "/", tuple(built.url.params.multi_items()),
                {k.lower(): v for k, v in built.headers.items()}, built.content)


def oracle(kind: str, settings: Any) -> e2e.StandIn:
    """The end-to-end stand-in for ``kind``, expecting these settings (close it after)."""
    if kind == "ga4":
        return Ga4StandIn(settings.measurement_id, settings.api_secret)
    if kind == "meta_capi":
        return MetaStandIn(settings.pixel_id, settings.access_token)
    if kind == "tiktok":
        return TikTokStandIn(settings.pixel_code, settings.access_token)
    if kind == "posthog":
        return PostHogStandIn(settings.api_key)
    if kind == "plausible":
        return PlausibleStandIn(tuple(settings.domain.split(",")))
    raise AssertionError(f"no end-to-end stand-in for {kind}")


def oracle_problems(standin: e2e.StandIn, c: Call) -> tuple[int, list[str]]:
    """What the end-to-end stand-in says of the call: its status and problems."""
    query: dict[str, list[str]] = {}
    for key, value in c.query:
        query.setdefault(key, []).append(value)
    req = e2e.Request(time.time(), c.method, c.path, query, dict(c.headers), c.body)
    reply = standin.check(req)
    return reply.status, req.problems

