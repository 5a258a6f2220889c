"""What became of each field a client sent, by the time a vendor had it.

Pure functions for the demo's vendors page. ``describe`` compares the event as the browser
or the backend sent it with a vendor's item read back in the relay's field names (a stand-in's
``view``: our path -> (the vendor's field, its value)), and says in plain words what was
truncated, generalized, cleaned, hashed, merged, dropped or left out, naming the vendor's
field:

    >>> sent = {"event": "page_view", "user": {"email": "ann@example.com"}, "context": {
    ...     "ip": "127.0.0.1", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
    ...     "page": {"url": "http://shop.test/?utm_source=news&fbclid=abc"}}}
    >>> view = {"context.ip": ("ip_override", "127.0.0.0"),
    ...         "context.device.browser": ("device.browser", "Chrome"),
    ...         "context.page.url": ("page_location", "http://shop.test/?utm_source=news"),
    ...         "user.email": ("user_data.sha256_email_address", 64 * "a")}
    >>> for note in describe(sent, view):
    ...     print(note)
    IP truncated: 127.0.0.1 -> 127.0.0.0 (ip_override)
    user agent replaced by the device: browser=Chrome (device.browser)
    context.page.url cleaned: removed ?fbclid (page_location)
    click id fbclid not sent
    user.email hashed: SHA-256 of the normalized value (user_data.sha256_email_address)

An envelope (the archive's line) is its own view: ``envelope_view`` labels each field by its
own path, and the notes then name no vendor field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relay.demo.standins.base import View
from relay.paths import MISSING
from relay.paths import get as get_path
from relay.pipeline.params import CLICK_ID_SET
from relay.types import Event

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
URL_FIELDS = ("context.page.url", "context.page.referrer")
USER_FIELDS = ("user.email", "user.phone", "user.id", "user.first_name", "user.last_name")
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


def envelope_view(event: Event) -> View:
    """An envelope read as a view of itself: each leaf under its own path (no vendor
    field to name: the label is empty)."""
    return {path: ("", value) for path, value in flatten(event).items()}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + ".")


def _params(url: Any) -> list[str]:
    if not isinstance(url, str):
        return []
    return [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _at(labels: Iterable[str]) -> str:
    """`` (the vendor's fields)``, or nothing for an envelope's own (empty) labels."""
    shown = [label for label in dict.fromkeys(labels) if label]
    return f" ({', '.join(shown)})" if shown else ""


def click_ids_of(event: Event) -> dict[str, Any]:
    """The click ids a client sent: in ``context.click_ids``, or in the page URL's query
    (which the relay copies into ``context.click_ids`` at ingest)."""
    out: dict[str, Any] = {}
    url = get_path(event, "context.page.url")
    if isinstance(url, str):
        out.update((k, v) for k, v in parse_qsl(urlsplit(url).query) if k in CLICK_ID_SET)
    given = get_path(event, "context.click_ids")
    if isinstance(given, dict):
        out.update(given)
    return out


def merged_from_browser(
    backend: Event, browser: Event, view: View, enrich: Sequence[str]
) -> dict[str, Any]:
    """The ``enrich`` fields the relay evidently merged from the held browser copy into the
    backend's event: the backend lacked them, the browser had them, the vendor has them (the
    user agent may arrive generalized, as the device; click ids taken from the page URL)."""
    out: dict[str, Any] = {}
    for path in enrich:
        if path == "context.click_ids":
            value: Any = click_ids_of(browser) or MISSING
        else:
            value = get_path(browser, path)
        if value is MISSING or get_path(backend, path) is not MISSING:
            continue
        evidence = (_UA, _DEVICE) if path == _UA else (path,)
        if any(_under(p, e) for p in view for e in evidence):
            out[path] = value
    return out


def describe(
    sent: Event,
    view: View,
    merged: dict[str, Any] | None = None,
    contract_drops: Sequence[str] = (),
) -> list[str]:
    """Notes on what became of ``sent`` (plus the ``merged`` browser fields) in ``view``.
    ``contract_drops`` are the properties the event's contract drops."""
    before = flatten(sent)
    for path, value in (merged or {}).items():
        before.update(flatten(value, path) if isinstance(value, dict) else {path: value})
    notes: list[str] = []
    if merged:
        notes.append("merged from the held browser copy: " + ", ".join(merged))
    _address(before, view, notes)
    _agent(before, view, notes)
    for path in URL_FIELDS:
        _url(path, before, view, notes)
    campaign = {p.rsplit(".", 1)[1]: seen for p, seen in view.items()
                if _under(p, "context.campaign")}
    if campaign and not any(_under(p, "context.campaign") for p in before):
        shown = ", ".join(f"{k}={v}" for k, (_, v) in campaign.items())
        notes.append(f"utm_* parameters collapsed into the campaign: {shown}"
                     + _at(label for label, _ in campaign.values()))
    ids = click_ids_of(sent)
    ids.update((merged or {}).get("context.click_ids") or {})
    for name in ids:
        seen = view.get(f"context.click_ids.{name}")
        notes.append(f"click id {name} kept{_at([seen[0]])}"
                     if seen else f"click id {name} not sent")
    for path in USER_FIELDS:
        _user(path, before, view, notes)
    if "correlation_id" in view and "correlation_id" not in before:
        label = view["correlation_id"][0]
        notes.append("the visit's correlation id, the random id inside the relay's cookie "
                     "(never the cookie), " + (f"as {label}" if label else "kept"))
    _properties(before, view, contract_drops, notes)
    return notes


def _address(before: dict[str, Any], view: View, notes: list[str]) -> None:
    if "context.ip" not in before:
        return
    old, seen = before["context.ip"], view.get("context.ip")
    if seen is None:
        notes.append("IP not sent")
    elif seen[1] == old:
        notes.append("IP sent as is" + _at([seen[0]]))
    else:
        notes.append(f"IP truncated: {old} -> {seen[1]}" + _at([seen[0]]))


def _agent(before: dict[str, Any], view: View, notes: list[str]) -> None:
    if _UA not in before:
        return
    seen = view.get(_UA)
    device = {p.rsplit(".", 1)[1]: s for p, s in view.items() if _under(p, _DEVICE)}
    if seen is not None and seen[1] == before[_UA]:
        notes.append("user agent sent as is" + _at([seen[0]]))
    elif device:
        shown = ", ".join(f"{k}={v}" for k, (_, v) in device.items())
        notes.append(f"user agent replaced by the device: {shown}"
                     + _at([label for label, _ in device.values()]))
    else:
        notes.append("user agent not sent")


def _url(path: str, before: dict[str, Any], view: View, notes: list[str]) -> None:
    old, seen = before.get(path), view.get(path)
    if not old:
        return
    if seen is None:
        notes.append(f"{path} not sent")
    elif seen[1] != old:
        kept = set(_params(seen[1]))
        removed = [p for p in dict.fromkeys(_params(old)) if p not in kept]
        what = "removed " + ", ".join("?" + p for p in removed) if removed else "changed"
        notes.append(f"{path} cleaned: {what}" + _at([seen[0]]))


def _user(path: str, before: dict[str, Any], view: View, notes: list[str]) -> None:
    if path not in before:
        return
    old, seen = before[path], view.get(path)
    if seen is None:
        notes.append(f"{path} not sent")
    elif isinstance(seen[1], str) and _HEX64.match(seen[1]) and not _HEX64.match(str(old)):
        notes.append(f"{path} hashed: SHA-256 of the normalized value" + _at([seen[0]]))
    elif seen[1] == old:
        notes.append(f"{path} sent as is" + _at([seen[0]]))
    else:
        notes.append(f"{path} changed: {_short(old)} -> {_short(seen[1])}" + _at([seen[0]]))


def _properties(
    before: dict[str, Any], view: View, contract_drops: Sequence[str], notes: list[str]
) -> None:
    props = [p for p in before if _under(p, "properties")]
    dropped = [p for p in props if p in contract_drops]
    if dropped:
        notes.append("dropped by the event's contract: " + ", ".join(dropped))
    for path in props:
        seen = view.get(path)
        if seen is not None and seen[1] != before[path]:
            notes.append(f"{path}: {_short(before[path])} -> {_short(seen[1])}"
                         + _at([seen[0]]))
    sent = [p for p in props if p in view]
    if sent:
        notes.append("sent: " + ", ".join(p.split(".", 1)[1] for p in sent)
                     + _at(view[p][0] for p in sent))
    missing = [p for p in props if p not in view and p not in contract_drops]
    if missing:
        notes.append("not in this vendor's format: " + ", ".join(missing))
