"""``POST /forget``: ``relay forget`` through the running relay, so that what it holds in its
own memory (held and waiting copies of ``state: memory``, hops not yet in the ledger) is
reached too.

    POST /forget  {"user_id": "u_42"}   (or {"email": ...}, {"phone": ...})
    -> 200 the receipt (relay.forget.receipt), whatever the vendors answered
    -> 400 {"error": ...} when the body does not name exactly one identifier

The identifier travels in the body only (never in a URL, which access logs keep).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.forget import forget as forget_person

if TYPE_CHECKING:
    from relay.runtime import Runtime

FIELDS = {"user_id": "id", "email": "email", "phone": "phone"}
MAX_BODY = 4096


def _answer(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_INDENT_2), status,
                    media_type="application/json")


def given_of(body: object) -> dict[str, str] | str:
    """The identifier as ``relay.forget`` takes it, or why the body names none."""
    if not isinstance(body, dict):
        return "the body is a JSON object: {\"user_id\": ...}, {\"email\": ...} or {\"phone\": ...}"
    named = {k: v for k, v in body.items() if k in FIELDS}
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return f"unknown key(s) {', '.join(unknown)} (use one of user_id, email, phone)"
    if len(named) != 1:
        return "name exactly one of user_id, email, phone"
    key, value = next(iter(named.items()))
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        return f"{key}: a non-empty string"
    return {FIELDS[key]: str(value)}


async def forget(request: Request) -> Response:
    rt: Runtime = request.app.state.relay
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _answer({"error": "the body is over 4 KiB"}, 413)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _answer({"error": "the body is not JSON"}, 400)
    given = given_of(body)
    if isinstance(given, str):
        return _answer({"error": given}, 400)
    client = rt.client
    if client is None:
        async with httpx.AsyncClient(follow_redirects=False) as own:
            receipt = await forget_person(given, rules=rt.rules, subjects=rt.subjects,
                                          spool=rt.spool, state=rt.state, ledger=rt.ledger,
                                          client=own)
    else:
        receipt = await forget_person(given, rules=rt.rules, subjects=rt.subjects,
                                      spool=rt.spool, state=rt.state, ledger=rt.ledger,
                                      client=client)
    return _answer(receipt)


def routes() -> list[Route]:
    return [Route("/forget", forget, methods=["POST"])]
