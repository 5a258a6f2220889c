"""What the relay changed between what a client sent and what a vendor received.

Pure functions over two events, for the demo's vendors page. The notes are in plain words:

    >>> sent = {"event": "page_view", "user": {"email": "ann@example.com"}, "context": {
    ...     "ip": "127.0.0.1", "page": {"url": "http://shop.test/?utm_source=news&gclid=abc"}}}
    >>> received = {"event": "page_view", "source": "browser", "user": {"email": 64 * "a"},
    ...     "context": {"ip": "127.0.0.0", "page": {"url": "http://shop.test/"},
    ...                 "campaign": {"source": "news"}}}
    >>> for note in describe(sent, received):
    ...     print(note)
    user.email hashed (SHA-256 of the normalized value)
    IP truncated: 127.0.0.1 -> 127.0.0.0
    context.page.url: removed ?utm_source, ?gclid (utm_* collapsed into context.campaign)
    added by the relay: source
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relay.paths import MISSING
from relay.paths import get as get_path
from relay.types import Event

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
URL_FIELDS = ("context.page.url", "context.page.referrer")
# Fields the relay itself adds to every event (never sent by a client).
RELAY_ADDED = ("source", "received_at", "time", "schema", "correlation_id", "context.gpc",
               "context.country")
# What ``record.Tap`` shows instead of a correlation cookie value a backend echoed.
COOKIE_VALUE = "<the correlation cookie's value>"
_UA = "context.user_agent"
_DEVICE = "context.device"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path (lists are leaves): ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + ".")


def _params(url: Any) -> list[str]:
    if not isinstance(url, str):
        return []
    return [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]


def _url_note(path: str, before: Any, after: Any) -> str:
    kept = set(_params(after))
    removed = [p for p in dict.fromkeys(_params(before)) if p not in kept]
    if not removed:
        return f"{path} changed"
    why = " (utm_* collapsed into context.campaign)" if any(
        p.startswith("utm_") for p in removed
    ) else ""
    return f"{path}: removed " + ", ".join("?" + p for p in removed) + why


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _join(paths: Iterable[str]) -> str:
    return ", ".join(paths)


def merged_from_browser(
    backend: Event, browser: Event, received: Event, enrich: Sequence[str]
) -> dict[str, Any]:
    """The ``enrich`` fields the relay evidently merged from the held browser copy into the
    backend's event: the backend lacked them, the browser had them, the vendor got them (the
    user agent arrives generalized, as ``context.device``)."""
    out: dict[str, Any] = {}
    got = flatten(received)
    for path in enrich:
        value = get_path(browser, path)
        if value is MISSING or get_path(backend, path) is not MISSING:
            continue
        evidence = _DEVICE if path == _UA else path
        if any(_under(p, evidence) for p in got):
            out[path] = value
    return out


def describe(
    sent: Event, received: Event, merged: dict[str, Any] | None = None
) -> list[str]:
    """Notes on how ``received`` differs from ``sent`` (plus the ``merged`` browser fields,
    which are described once and then compared like the rest)."""
    before = flatten(sent)
    for path, value in (merged or {}).items():
        before.update(flatten(value, path))
    after = flatten(received)
    notes: list[str] = []
    if merged:
        notes.append("merged from the held browser copy: " + _join(merged))
    removed = [p for p in before if p not in after]
    added = [p for p in after if p not in before]

    for path in before:
        if path not in after or before[path] == after[path]:
            continue
        old, new = before[path], after[path]
        if path == "correlation_id" and old == COOKIE_VALUE:
            notes.append("correlation_id: the cookie value was verified, then replaced by its id")
        elif path == "context.ip":
            notes.append(f"IP truncated: {old} -> {new}")
        elif path in URL_FIELDS:
            notes.append(_url_note(path, old, new))
        elif isinstance(new, str) and _HEX64.match(new) and not _HEX64.match(str(old)):
            notes.append(f"{path} hashed (SHA-256 of the normalized value)")
        else:
            notes.append(f"{path} changed: {_short(old)} -> {_short(new)}")

    if _UA in removed:
        device = {p.rsplit(".", 1)[1]: after[p] for p in added if _under(p, _DEVICE)}
        if device:
            shown = ", ".join(f"{k}={v}" for k, v in device.items())
            notes.append(f"user agent generalized to the device ({shown})")
        else:
            notes.append("user agent removed")
    click_ids = [p.rsplit(".", 1)[1] for p in removed if _under(p, "context.click_ids")]
    if click_ids:
        notes.append("click ids removed: " + _join(click_ids))
    properties = [p for p in removed if _under(p, "properties")]
    if properties:
        notes.append("dropped by the event's contract: " + _join(properties))
    rest = [
        p for p in removed
        if p != _UA and not _under(p, "context.click_ids") and not _under(p, "properties")
    ]
    if rest:
        notes.append("removed: " + _join(rest))

    kept_ids = [p.rsplit(".", 1)[1] for p in added if _under(p, "context.click_ids")]
    if kept_ids:
        notes.append("click ids taken from the page URL and kept: " + _join(kept_ids))
    relay_added = [p for p in added if p in RELAY_ADDED]
    consent = [f"{p.split('.', 1)[1]}={after[p]}" for p in added if _under(p, "consent")]
    if consent:
        notes.append("the consent choice made later was applied: " + _join(consent))
    other = [
        p for p in added
        if p not in RELAY_ADDED
        and not _under(p, "consent")
        and not _under(p, _DEVICE)
        and not _under(p, "context.campaign")
        and not _under(p, "context.click_ids")
    ]
    if other:
        notes.append("added: " + _join(other))
    if relay_added:
        notes.append("added by the relay: " + _join(relay_added))
    return notes
