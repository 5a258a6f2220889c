"""Stand-in vendors: endpoints that record what the relay delivers, and the page showing it.

``POST /demo/vendors/{name}`` is what the demo rules' webhook destinations call;
``GET /demo/vendors`` shows, per vendor, each event received and how it differs from what
the browser or backend sent (``changes.describe``); ``GET /demo/vendors.json`` is its data.
The file destination (the archive) is shown from its JSONL file.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.demo.changes import describe, merged_from_browser
from relay.demo.context import Demo
from relay.demo.record import Recorder
from relay.rules.model import Rules
from relay.types import Event

VENDOR_PATH = "/demo/vendors/"
ARCHIVE_SHOWN = 100  # the archive's last lines shown
PAGE = (Path(__file__).parent / "static" / "vendors.html").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Vendor:
    """A destination of the demo rules as the page shows it."""

    name: str  # the stand-in's name (the last part of its URL), or the destination's
    destination: str
    type: str
    purpose: str | None
    events: tuple[str, ...] | None
    target: str  # URL or file path


def vendors_of(rules: Rules, base_url: str) -> list[Vendor]:
    """The rules' destinations that deliver to this demo: webhooks to its vendor endpoints,
    and files."""
    out: list[Vendor] = []
    prefix = base_url + VENDOR_PATH
    for dest in rules.destinations.values():
        url = getattr(dest.settings, "url", None)
        path = getattr(dest.settings, "path", None)
        if dest.type == "webhook" and isinstance(url, str) and url.startswith(prefix):
            name, target = url[len(prefix) :], url
        elif dest.type == "file" and isinstance(path, str):
            name, target = dest.name, path
        else:
            continue
        out.append(Vendor(name, dest.name, dest.type, dest.purpose, dest.events, target))
    return out


def _demo(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


async def receive(request: Request) -> Response:
    """A stand-in vendor's endpoint: one event, or ``{"batch": [...]}``."""
    demo = _demo(request)
    name = request.path_params["vendor"]
    if name not in {v.name for v in vendors_of(demo.rules, demo.base_url) if v.type == "webhook"}:
        return Response(orjson.dumps({"error": f"no stand-in vendor '{name}'"}), 404)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return Response(orjson.dumps({"error": "invalid JSON"}), 400)
    events = body["batch"] if isinstance(body, dict) and "batch" in body else [body]
    demo.recorder.vendor_received(name, [e for e in events if isinstance(e, dict)])
    return Response(orjson.dumps({"ok": True}), media_type="application/json")


def explain(rules: Rules, recorder: Recorder, event: Event) -> dict[str, Any]:
    """One received event for the page: the event, how it was changed, and the originals."""
    sent = recorder.sent(event.get("event_id"))
    source = event.get("source")
    base = next((s for s in sent if s.source == source), None)
    browser = next((s for s in sent if s.source != source), None)
    changes: list[str] = []
    if base is not None:
        merged: dict[str, Any] = {}
        contract = rules.events.contracts.get(str(event.get("event")))
        if browser is not None and contract is not None and contract.authority == source:
            merged = merged_from_browser(
                base.event, browser.event, event, contract.enrich_from_browser
            )
        changes = describe(base.event, event, merged)
    return {
        "event": event.get("event"),
        "event_id": event.get("event_id"),
        "source": source,
        "received": event,
        "changes": changes,
        "sent": [
            {"source": s.source, "event": s.event}
            for s in sent
            if s.event.get("event") == event.get("event")
        ],
    }


def _tail(path: str, n: int) -> tuple[int, list[Event]]:
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError:
        return 0, []
    events = []
    for line in lines[-n:]:
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return len(lines), events


async def snapshot(demo: Demo) -> dict[str, Any]:
    rules = demo.rules
    out: list[dict[str, Any]] = []
    for vendor in vendors_of(demo.rules, demo.base_url):
        if vendor.type == "file":
            total, events = await asyncio.to_thread(_tail, vendor.target, ARCHIVE_SHOWN)
        else:
            events = [r.event for r in demo.recorder.received(vendor.name)]
            total = len(events)
        out.append(
            {
                "name": vendor.name,
                "destination": vendor.destination,
                "type": vendor.type,
                "purpose": vendor.purpose,
                "events": list(vendor.events) if vendor.events is not None else "*",
                "target": vendor.target,
                "total": total,
                "received": [explain(rules, demo.recorder, e) for e in events],
            }
        )
    return {"version": demo.recorder.version, "time": time.time(), "vendors": out}


async def data(request: Request) -> Response:
    body = await snapshot(_demo(request))
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
