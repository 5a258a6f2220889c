"""The vendors' part of ``relay forget``: each destination's ``Deletion`` plan, its requests
sent in turn, each answer read by the plan's own reader, until an ``Outcome``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from relay import pipeline
from relay.destinations import DESTINATIONS
from relay.rules.model import Destination, Rules
from relay.types import Call, ForgetContext, Outcome, Person, StepContext

MAX_CALLS = 50  # requests one destination's deletion may make (Matomo finds and deletes)


def sent_user(rules: Rules, dest: Destination, given: Mapping[str, str]) -> dict[str, Any]:
    """The ``user`` object ``dest``'s pipeline makes of the subject: what the vendor was
    sent for this person (``hash: [user.email]`` hashes it, ``drop`` removes it)."""
    event: dict[str, Any] = {"event": "forget", "event_id": "forget", "user": dict(given)}
    if dest.pipeline is not None:
        purposes = frozenset(rules.purposes)
        ctx = StepContext(destination=dest.name, granted=purposes)
        out = pipeline.run(rules.pipelines[dest.pipeline].steps, event, ctx)
        if out is None:
            return {}
        event = out
    user = event.get("user")
    return dict(user) if isinstance(user, dict) else {}


def local_outcome(dest: Destination) -> Outcome:
    """The destinations that are not vendors: what is left to do by hand."""
    settings = dest.settings
    if dest.type == "file":
        path = getattr(settings, "path", "the file")
        return Outcome("manual", f"the relay appended this person's events to {path} and does"
                       " not rewrite it: remove their lines there (find them by their user id,"
                       " or the hashes the pipeline wrote)")
    if dest.type == "webhook":
        host = urlsplit(getattr(settings, "url", "")).hostname or "the receiver"
        return Outcome("manual", f"the events went to a webhook at {host}: ask its operator"
                       " to delete this person's events")
    if dest.type == "log":
        return Outcome("manual", "the events went to the relay's log output: delete them"
                       " where the logs are kept, or let their retention run out")
    return Outcome("manual", f"{dest.type} destinations have no deletion: delete the"
                   " person's data at the receiver")


async def follow(step: Outcome | Call, client: httpx.AsyncClient, timeout: float) -> Outcome:
    """Send each ``Call`` and read its answer, until an ``Outcome`` (a network error is
    ``failed``: the deletion did not reach the vendor)."""
    for _ in range(MAX_CALLS):
        if isinstance(step, Outcome):
            return step
        request = step.request
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = await client.send(request)
            await response.aread()
        except httpx.HTTPError as exc:
            return Outcome("failed", f"{type(exc).__name__}: no answer from"
                           f" {request.url.host} (the deletion was not made)")
        step = step.answer(response)
    return step if isinstance(step, Outcome) else Outcome(
        "failed", f"more than {MAX_CALLS} requests without an end")


async def ask(
    rules: Rules, given: Mapping[str, str], client: httpx.AsyncClient, ctx: ForgetContext,
    scrub: Callable[[str], str],
) -> list[dict[str, str]]:
    """One entry per destination: ``{"name", "type", "status", "detail"}``, in the rules'
    order. ``scrub`` takes the person's identifiers out of every detail (a vendor's answer
    may quote them)."""
    out = []
    for dest in rules.destinations.values():
        kind = DESTINATIONS.get(dest.type)
        deletion = kind.deletion if kind is not None else None
        if deletion is None:
            outcome = local_outcome(dest)
        else:
            try:
                person = Person(dict(given), sent_user(rules, dest, given))
                step = deletion.plan(person, dest.settings, dest.deletion, ctx)
            except Exception as exc:  # a plan is pure: a bug here must not hide the others
                outcome = Outcome("failed", f"the deletion could not be prepared:"
                                  f" {type(exc).__name__}")
            else:
                outcome = await follow(step, client, dest.timeout)
        out.append({"name": dest.name, "type": dest.type, "status": outcome.status,
                    "detail": scrub(outcome.detail)})
    return out
