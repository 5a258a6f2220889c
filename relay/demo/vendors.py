"""The stand-in vendors' endpoints, and the page that shows what each received.

``ANY /demo/vendors/{name}/{path}`` is where the demo rules point each vendor destination's
``settings.endpoint``: the stand-in answers as its vendor does (``relay.demo.standins``).
``GET /demo/vendors`` shows, per vendor, each event it received in its own format (the exact
payload, hashed identifiers and all, and the whole request), what became of each field the
browser or the backend sent (``changes.describe``), the relay's notes on that copy, and, above
them, which events each consent choice let through to which vendor (``decisions``);
``GET /demo/vendors.json`` is its data. The archive (a file destination) is read from its
file. Secrets (API secrets, access tokens, keys) are shown by their setting's name.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.demo.changes import describe, envelope_view, merged_from_browser
from relay.demo.consent import table
from relay.demo.context import Demo
from relay.demo.inbox import Delivery
from relay.demo.lineup import Vendor
from relay.demo.record import Sent
from relay.demo.standins.base import Call, View
from relay.rules.model import Contract
from relay.types import Event

ARCHIVE_SHOWN = 100  # the archive's last lines shown
MAX_BODY = 5 * 1024 * 1024  # what a stand-in reads of a request
HIDDEN_HEADERS = frozenset({"host", "connection", "accept", "accept-encoding", "content-length"})
PAGE = (Path(__file__).parent / "static" / "vendors.html").read_text(encoding="utf-8")


def _demo(request: Request) -> Demo:
    demo: Demo = request.app.state.demo
    return demo


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


async def receive(request: Request) -> Response:
    """A stand-in vendor's endpoint: its vendor's answer to the relay's request."""
    demo = _demo(request)
    name = request.path_params["vendor"]
    vendor = next((v for v in demo.vendors if v.name == name and v.standin), None)
    if vendor is None or vendor.standin is None:
        return _json({"error": f"no stand-in vendor '{name}'"}, 404)
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return _json({"error": "body too large"}, 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _json({"error": "body too large"}, 413)
    call = Call(request.method, "/" + request.path_params["path"],
                tuple(parse_qsl(request.url.query, keep_blank_values=True)),
                {k.lower(): v for k, v in request.headers.items()}, body)
    took = vendor.standin.handle(call)
    demo.inbox.received(name, vendor.destination, call, took)
    answer = took.answer
    return Response(answer.body, answer.status, headers=dict(answer.headers),
                    media_type=answer.media_type)


# -- what the page shows --------------------------------------------------------------------


def mask(value: Any, secrets: dict[str, str]) -> Any:
    """``value`` with every secret (in any string) replaced by ``[its setting]``."""
    if isinstance(value, dict):
        return {k: mask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, secrets) for v in value]
    if isinstance(value, str):
        for secret, label in secrets.items():
            if secret:
                value = value.replace(secret, f"[{label}]")
    return value


def request_of(delivery: Delivery, secrets: dict[str, str]) -> dict[str, Any]:
    """One request as the stand-in got it (secrets by name), and its answer."""
    call, answer = delivery.call, delivery.took.answer
    query = "&".join(f"{k}={v}" for k, v in call.query)
    body = call.json()
    shown: dict[str, Any] = mask({
        "n": delivery.n,
        "method": call.method,
        "url": call.path + ("?" + query if query else ""),
        "headers": {k: v for k, v in call.headers.items() if k not in HIDDEN_HEADERS},
        "body": body if body is not None else call.body.decode(errors="replace"),
        "status": answer.status,
        "answer": answer.body.decode(errors="replace")[:500],
        "problems": delivery.took.problems,
    }, secrets)
    return shown


def contract_drops(contract: Contract | None, event: Event) -> list[str]:
    """The properties of ``event`` its contract drops (``additional_properties: drop``)."""
    props = event.get("properties")
    if contract is None or contract.additional_properties != "drop" or not isinstance(
            props, dict):
        return []
    return [f"properties.{k}" for k in props if k not in contract.properties]


def explain(demo: Demo, event_name: str | None, base: Sent | None, sent: list[Sent],
            view: View) -> list[str]:
    """What became of the fields ``base`` (the copy the relay delivered) sent."""
    if base is None:
        return []
    contract = demo.rules.events.contracts.get(str(event_name))
    merged: dict[str, Any] = {}
    browser = next((s for s in sent if s.source != base.source), None)
    if browser is not None and contract is not None and contract.authority == base.source:
        merged = merged_from_browser(base.event, browser.event, view,
                                     contract.enrich_from_browser)
    return describe(base.event, view, merged, contract_drops(contract, base.event))


def _originals(sent: list[Sent], event_name: str | None) -> list[dict[str, Any]]:
    return [{"source": s.source, "event": s.event} for s in sent
            if s.event.get("event") == event_name]


def vendor_items(demo: Demo, vendor: Vendor) -> list[dict[str, Any]]:
    """Each event the stand-in received, oldest first."""
    standin = vendor.standin
    assert standin is not None
    secrets = standin.secrets()
    out: list[dict[str, Any]] = []
    for delivery in demo.inbox.deliveries(vendor.name):
        request = request_of(delivery, secrets)
        for i, item in enumerate(delivery.took.items):
            event_id = delivery.event_ids[i] if delivery.event_ids else None
            row = demo.decisions.delivered(event_id, vendor.destination) if event_id else None
            sent = demo.recorder.sent(event_id)
            cell = row.cells.get(vendor.destination) if row is not None else None
            event = row.event if row is not None else None
            out.append({
                "event": event,
                "event_id": event_id,
                "source": row.sent.source if row is not None and row.sent else None,
                "vendor_event": standin.event_name(item),
                "payload": mask(item, secrets),
                "notes": explain(demo, event, row.sent if row else None, sent,
                                 standin.view(item)),
                "relay_notes": [n for n in (cell.detail.split("; ") if cell else []) if n],
                "choice": (cell.choice if cell and cell.choice else row.choice) if row else None,
                "status": delivery.took.answer.status,
                "problems": delivery.took.problems,
                "request": request,
                "sent": _originals(sent, event),
            })
    return out


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


def archive_items(demo: Demo, events: list[Event]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        sent = demo.recorder.sent(event.get("event_id"))
        base = next((s for s in sent if s.source == event.get("source")), None)
        name = event.get("event")
        out.append({
            "event": name,
            "event_id": event.get("event_id"),
            "source": event.get("source"),
            "vendor_event": name,
            "payload": event,
            "notes": explain(demo, name, base, sent, envelope_view(event)),
            "relay_notes": [],
            "choice": None,
            "status": None,
            "problems": [],
            "request": None,
            "sent": _originals(sent, name),
        })
    return out


async def snapshot(demo: Demo) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for vendor in demo.vendors:
        if vendor.standin is None:
            total, events = await asyncio.to_thread(_tail, vendor.target, ARCHIVE_SHOWN)
            items = archive_items(demo, events)
        else:
            items = vendor_items(demo, vendor)
            total = len(items)
        out.append({
            "name": vendor.name,
            "destination": vendor.destination,
            "type": vendor.type,
            "vendor": vendor.vendor,
            "purpose": vendor.purpose,
            "events": list(vendor.events) if vendor.events is not None else "*",
            "target": vendor.target,
            "total": total,
            "received": items,
        })
    version = (demo.recorder.version, demo.decisions.version, demo.inbox.version)
    return {"version": ".".join(map(str, version)), "time": time.time(), "vendors": out,
            "consent": table(demo.decisions, demo.vendors)}


async def data(request: Request) -> Response:
    return _json(await snapshot(_demo(request)))


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
