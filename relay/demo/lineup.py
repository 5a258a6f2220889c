"""The demo's vendors: the rules' destinations whose endpoint is one of this process's
stand-ins (``{base_url}/demo/vendors/{name}``), each with its stand-in, and its files.
The stand-in expects the destination's own settings (its ids and secrets), so the relay is
checked against what its rules say."""

from __future__ import annotations

from dataclasses import dataclass

from relay.demo.standins import STANDINS
from relay.demo.standins.base import StandIn
from relay.destinations import DESTINATIONS
from relay.rules.model import Rules

VENDOR_PATH = "/demo/vendors/"


@dataclass(frozen=True, slots=True)
class Vendor:
    """A destination of the demo rules as the vendors page shows it."""

    name: str  # the stand-in's name (the last part of its URL), or the destination's
    destination: str
    type: str
    vendor: str  # who that is ("Meta (Conversions API)"), or "" for a file
    purpose: str | None
    events: tuple[str, ...] | None
    target: str  # the endpoint, or the file's path
    standin: StandIn | None  # None for a file


def lineup(rules: Rules, base_url: str) -> list[Vendor]:
    """Vendor destinations pointed at this process's stand-ins, and file destinations, in
    the rules' order. Other destinations (a vendor's real endpoint) are not shown."""
    prefix = base_url + VENDOR_PATH
    out: list[Vendor] = []
    for dest in rules.destinations.values():
        endpoint = getattr(dest.settings, "endpoint", None)
        path = getattr(dest.settings, "path", None)
        kind = STANDINS.get(dest.type)
        definition = DESTINATIONS.get(dest.type)
        who = definition.vendor if definition is not None else ""
        if kind is not None and isinstance(endpoint, str) and endpoint.startswith(prefix):
            name = endpoint[len(prefix):].strip("/")
            if name and "/" not in name:
                out.append(Vendor(name, dest.name, dest.type, who, dest.purpose, dest.events,
                                  endpoint, kind(name, dest.settings)))
        elif dest.type == "file" and isinstance(path, str):
            out.append(Vendor(dest.name, dest.name, dest.type, who, dest.purpose, dest.events,
                              path, None))
    return out
