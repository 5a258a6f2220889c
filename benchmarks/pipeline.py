"""µs per event of the shipped rules' pipelines, per step and in total, in process.

Each pipeline in ``rules/`` runs on events as the engine hands them over (the envelope of
``relay.engine.envelope.normalize`` plus the context a browser request adds): the page view
of ``benchmarks/ingest.py`` and a few variants:

- ``page_view``: ingest.py's page view (5 query parameters, utm and a gclid, an email);
- ``no_query``: the same page view without a query string and without click ids;
- ``long_query``: a landing page with 24 parameters (every utm_*, several click ids, a
  search term with an email in it, encoded names) and a referrer with a query;
- ``nested``: a purchase with nested properties (items with names, prices, a note holding a
  phone number) and a user with an email and a phone;
- ``batch20``: 20 events of the kinds above, mixed, one after another (µs per event).

Each run times ``--events`` events (fresh copies made before the clock starts, one
``StepContext`` each, as the engine does); the figure is the median over ``--runs``. ``total``
is ``relay.pipeline.run`` (what the engine calls); the step rows are each step's ``apply``
alone, on the event as the steps before it left it: their sum can exceed ``total`` when the
runner shares work between steps. ``--digest`` prints a digest of every output event, count
and note instead, to compare the outputs of two commits.

    python benchmarks/pipeline.py                  # 7 runs x 2,000 events per variant
    python benchmarks/pipeline.py --runs 15 --events 5000
    python benchmarks/pipeline.py --digest
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from ingest import EVENT, UA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay import pipeline  # noqa: E402
from relay.engine import envelope  # noqa: E402
from relay.registry import load_rules  # noqa: E402
from relay.rules.model import Rules, Step  # noqa: E402
from relay.types import Event, StepContext  # noqa: E402

IP = "203.0.113.77"
MOBILE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
GRANTED = frozenset({"analytics"})  # the page view's consent: analytics yes, ads no
NOW_MS = 1_764_000_000_000


def page_view() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(EVENT.replace(b"__ID__", b"bench-1"))
    return raw


def no_query() -> dict[str, Any]:
    raw = page_view()
    raw["event_id"] = "bench-2"
    raw["context"]["page"]["url"] = "https://shop.example/products/blue-shoes"
    return raw


def long_query() -> dict[str, Any]:
    raw = page_view()
    raw["event_id"] = "bench-3"
    query = "&".join([
        "utm_source=newsletter", "utm_medium=email", "utm_campaign=spring%20sale",
        "utm_term=blue+shoes", "utm_content=hero", "utm_id=42", "utm_source_platform=crm",
        "gclid=Cj0KCQjw2a6wBhCVARIsABPeH1s", "fbclid=IwAR2xYz", "msclkid=5f3c2b1a",
        "ttclid=E.C.P.abc", "li_fat_id=9d2e", "q=ann%40example.com", "ref=home", "page=2",
        "sort=price_asc", "size=42", "color=blue", "Session=abc123", "%73ession_id=x",
        "lang=en", "currency=EUR", "variant=b", "",
    ])
    raw["context"]["page"] = {
        "url": f"https://shop.example/landing?{query}#reviews",
        "referrer": "https://www.google.com/search?q=blue+shoes&sclient=gws&gclid=abc",
        "title": "Spring sale - Shop", "path": "/landing", "search": f"?{query}",
    }
    return raw


def nested() -> dict[str, Any]:
    return {
        "event": "purchase", "event_id": "bench-4",
        "consent": {"analytics_storage": "granted", "ad_storage": "granted"},
        "user": {"id": "u_1042", "email": " Ann.Example@Example.com",
                 "phone": "+1 (555) 010-0000"},
        "context": {"page": {"url": "https://shop.example/checkout/done?order=O-77",
                             "referrer": "https://shop.example/checkout", "title": "Thanks"}},
        "properties": {
            "order_id": "O-77", "value": 139.8, "currency": "EUR", "coupon": None,
            "items": [
                {"sku": "SH-1", "name": "Blue shoes", "price": 89.9, "qty": 1,
                 "tags": ["shoes", "blue"], "attrs": {"size": "42", "width": "regular"}},
                {"sku": "SO-3", "name": "Socks (3 pairs)", "price": 24.95, "qty": 2,
                 "tags": ["socks"], "attrs": {"size": "39-42"}},
            ],
            "shipping": {"method": "standard", "address": {"city": "Lyon", "zip": "69001"}},
            "note": "please call me at +33 6 12 34 56 78 before delivery",
        },
    }


KINDS: dict[str, Callable[[], dict[str, Any]]] = {
    "page_view": page_view, "no_query": no_query, "long_query": long_query, "nested": nested,
}


def envelope_of(rules: Rules, raw: dict[str, Any], ua: str = UA) -> Event:
    """``raw`` as the engine hands it to a pipeline: normalized, then the browser context."""
    ev = envelope.normalize(raw, trusted=False, limits=rules.relay.limits,
                            consent_map=rules.relay.consent_map, now_ms=NOW_MS)
    assert not isinstance(ev, envelope.EnvelopeError), ev
    ev["source"] = "web"
    ev["received_at"] = envelope.format_ms(NOW_MS)
    ctx = ev.setdefault("context", {})
    ctx.update({"ip": IP, "user_agent": ua, "country": "US", "gpc": False})
    return ev


def variants(rules: Rules) -> dict[str, list[Event]]:
    out = {name: [envelope_of(rules, make())] for name, make in KINDS.items()}
    mix = []
    for i in range(20):
        kind = ("page_view", "page_view", "no_query", "long_query", "nested")[i % 5]
        raw = KINDS[kind]()
        raw["event_id"] = f"batch-{i}"
        mix.append(envelope_of(rules, raw, MOBILE_UA if i % 3 else UA))
    out["batch20"] = mix
    return out


def time_per_event(fn: Callable[[Event, StepContext], Any], inputs: list[Event],
                   events: int, runs: int) -> float:
    """The median over ``runs`` of µs per event of ``fn`` on ``events`` fresh copies."""
    per_run = []
    blobs = [orjson.dumps(ev) for ev in inputs]
    for _ in range(runs):
        copies = [orjson.loads(blobs[i % len(blobs)]) for i in range(events)]
        ctxs = [StepContext("bench", GRANTED) for _ in range(events)]
        t0 = time.perf_counter()
        for ev, ctx in zip(copies, ctxs, strict=True):
            fn(ev, ctx)
        per_run.append((time.perf_counter() - t0) / events * 1e6)
    return statistics.median(per_run)


def before_each_step(steps: tuple[Step, ...], ev: Event) -> list[Event]:
    """The event each step receives (the steps before it run on a copy)."""
    out = []
    ev = copy.deepcopy(ev)
    for step in steps:
        out.append(copy.deepcopy(ev))
        result = pipeline.run((step,), ev, StepContext("bench", GRANTED))
        if result is None:
            break
        ev = result
    return out


def step_fn(step: Step) -> Callable[[Event, StepContext], Any]:
    apply = pipeline.STEPS[step.kind].apply
    options = step.options
    return lambda ev, ctx: apply(ev, options, ctx)


def run_fn(steps: tuple[Step, ...]) -> Callable[[Event, StepContext], Any]:
    return lambda ev, ctx: pipeline.run(steps, ev, ctx)


def measure(rules: Rules, args: argparse.Namespace) -> None:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"median of {args.runs} runs x {args.events} events; µs per event")
    for name, pipe in rules.pipelines.items():
        steps = pipe.steps
        for variant, inputs in variants(rules).items():
            print(f"\n{name} / {variant}")
            rows: list[tuple[str, float]] = []
            stages = [before_each_step(steps, ev) for ev in inputs]
            for i, step in enumerate(steps):
                step_inputs = [s[i] for s in stages if i < len(s)]
                rows.append((step.kind,
                             time_per_event(step_fn(step), step_inputs, args.events, args.runs)))
            total = time_per_event(run_fn(steps), inputs, args.events, args.runs)
            for kind, us in rows:
                print(f"  {kind:<12} {us:8.2f}")
            print(f"  {'(sum)':<12} {sum(us for _, us in rows):8.2f}")
            print(f"  {'total':<12} {total:8.2f}")


def digest(rules: Rules) -> None:
    """One line per pipeline and variant: a digest of the outputs, counts and notes."""
    for name, pipe in rules.pipelines.items():
        for variant, inputs in variants(rules).items():
            h = hashlib.sha256()
            for ev in inputs:
                for granted in (GRANTED, frozenset({"analytics", "ads"})):
                    ctx = StepContext("bench", granted)
                    out = pipeline.run(pipe.steps, copy.deepcopy(ev), ctx)
                    h.update(orjson.dumps([out, ctx.counts, ctx.notes]))
            print(f"{name} / {variant}: {h.hexdigest()[:16]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--digest", action="store_true",
                        help="print a digest of the outputs instead of timing")
    args = parser.parse_args()
    rules = load_rules(REPO / "rules", {"RELAY_SECRET": "bench-cookie-secret"})
    if args.digest:
        digest(rules)
    else:
        measure(rules, args)


if __name__ == "__main__":
    main()
