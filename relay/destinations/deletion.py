"""What the vendor destinations' deletion hooks share (``relay forget``): who the vendor
knows the person by, the outcomes that need no request, and how a deletion API's answer
reads. Pure; the requests are sent by ``relay.forget``.

    user_id(Person({"id": "u_42"}, {"id": "u_42"}))             -> "u_42"
    user_id(Person({"email": "a@b.example"}, {"email": "..."}))  -> None (not keyed by email)
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from relay.destinations.base import DETAIL_BODY_CHARS
from relay.rules.codes import NO_DELETION
from relay.rules.fields import At
from relay.types import Deletion, ForgetContext, Outcome, Person

SUBJECT_KINDS = {"id": "--user-id", "email": "--email", "phone": "--phone"}


def user_id(person: Person) -> str | None:
    """The id the vendor was sent as the person's ``user.id`` (after the destination's
    pipeline: hashed where it hashes), or None when there is none to name."""
    value = person.sent.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def not_keyed(vendor: str, person: Person, by: str = "user.id") -> Outcome:
    """``not_applicable``: the vendor knows people by ``by`` only, and this subject is not
    one (an email given where the vendor keys by user id), or the pipeline never sends it."""
    kind = next(iter(person.given), "id")
    if kind == "id":
        why = (f"this destination's pipeline does not send {by}, so {vendor} holds no id "
               "the relay can name this person by")
    else:
        why = (f"{vendor} knows people by {by} (the relay sends it that way), not by {kind}:"
               f" forget them with {SUBJECT_KINDS['id']} too")
    return Outcome("not_applicable", why)


def manual(procedure: str, setting: str | None = None) -> Outcome:
    """``manual``: the vendor's procedure; ``setting`` names the ``deletion:`` settings that
    would let the relay call the vendor's API instead."""
    if setting:
        procedure += f" (or set deletion: {{{setting}}} on the destination, and relay " \
                     "forget asks the vendor's API)"
    return Outcome("manual", procedure)


def procedure_only(vendor: str, procedure: str) -> Deletion:
    """The deletion of a vendor with no per-person deletion API: ``manual``, with its
    procedure, whatever the subject; it takes no ``deletion:`` settings."""

    def parse(at: At) -> None:
        at.error(NO_DELETION, f"{vendor} has no deletion API, so there is nothing to set",
                 "relay forget reports its procedure: remove 'deletion'")

    def plan(person: Person, settings: Any, deletion: Any, ctx: ForgetContext) -> Outcome:
        return Outcome("manual", procedure)

    return Deletion(parse, plan, "manual: " + procedure)


def answer_detail(response: httpx.Response) -> str:
    """``HTTP 500: <the start of the body>`` for a failed deletion request."""
    return f"HTTP {response.status_code}: {response.text[:DETAIL_BODY_CHARS // 2]}"


def failed(response: httpx.Response, hint: str = "") -> Outcome:
    """``failed`` with the vendor's status and answer (and what to check, for 401/403)."""
    detail = answer_detail(response)
    if response.status_code in (401, 403) and hint:
        detail += f" ({hint})"
    return Outcome("failed", detail)


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
