"""What every stand-in vendor of the demo shares.

A stand-in answers the relay's requests on the demo's own port as its vendor does, in that
vendor's wire format: ``handle(call)`` is a pure function from the request (``Call``) to
``Took``, the vendor's answer, the events it holds in the vendor's own format (``items``) and
what the real vendor would refuse or drop without a word (``problems``: a bug in the relay's
mapping, shown in red on the vendors page). ``view(item)`` reads one item back in the
relay's own field names, with the vendor's name for each (``View``), so the vendors page can
say what became of each field the browser or the backend sent.

    >>> call = Call("POST", "/batch/", (), {"content-type": "application/json"}, b"{}")
    >>> call.json(), call.param("x")
    ({}, None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s\"'/]+@[^@\s\"'/]+\.[a-z]{2,}", re.IGNORECASE)

# our dotted path -> (the vendor's field for it, the value the vendor has)
View = dict[str, tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the stand-in received it."""

    method: str
    path: str  # below the stand-in's base URL (the destination's settings.endpoint)
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def param(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    media_type: str | None = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
        return Answer(status, orjson.dumps(body), "application/json", headers or {})

    @staticmethod
    def text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Answer:
        return Answer(status, text.encode(), "text/plain; charset=utf-8", headers or {})


@dataclass(slots=True)
class Took:
    """The vendor's answer, the request's events in the vendor's format (also those of a
    refused request: the page shows what was refused), and the problems found."""

    answer: Answer
    items: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def raw_email_in(value: Any) -> bool:
    """True when an email address appears anywhere in ``value``'s JSON."""
    return _EMAIL.search(orjson.dumps(value).decode()) is not None


def first(value: Any) -> Any:
    """The first element of a list (vendors send hashed identifiers in lists), else the value."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def section(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def put(view: View, ours: str, theirs: str, value: Any) -> None:
    """Add a field to ``view`` when the vendor has a value for it."""
    if value is not None and value != "":
        view[ours] = (theirs, value)


class StandIn:
    """One stand-in vendor: ``name`` is the last part of its URL (``/demo/vendors/{name}``),
    ``kind`` the destination type it stands in for; ``settings`` are that destination's, so
    it expects the ids and secrets the rules give."""

    kind = "vendor"

    def __init__(self, name: str, settings: Any) -> None:
        self.name = name
        self.settings = settings

    def handle(self, call: Call) -> Took:
        raise NotImplementedError

    def view(self, item: Any) -> View:
        raise NotImplementedError

    def event_name(self, item: Any) -> str:
        """The item's event in the vendor's words (``PageView``, ``$pageview``)."""
        raise NotImplementedError

    def secrets(self) -> dict[str, str]:
        """Secret values the page shows by the setting's name instead: value -> label."""
        return {}
