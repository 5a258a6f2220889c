"""The dead-letter routes ``relay dlq`` uses on a running relay (``GET /dlq`` lists them):

    GET  /dlq/count[?destination=D]   -> {"count": n, "last": newest id or 0}
    POST /dlq/replay {"destination": D|null}               -> {"replayed": n}
    POST /dlq/purge  {"destination": D|null, "through": id} -> {"purged": n}

``through`` purges only dead letters up to that id: what the person was asked to confirm,
not what failed since.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from relay.runtime import Runtime


def _answer(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.relay
    return rt


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return _answer({"error": "the body is not JSON"}, 400)
    if not isinstance(body, dict):
        return _answer({"error": "the body is a JSON object"}, 400)
    dest = body.get("destination")
    if dest is not None and (not isinstance(dest, str)
                             or dest not in _rt(request).rules.destinations):
        return _answer({"error": f"no destination named {dest!r}"}, 404)
    return body


async def count(request: Request) -> Response:
    n, last = await _rt(request).spool.dlq_count(request.query_params.get("destination"))
    return _answer({"count": n, "last": last})


async def replay(request: Request) -> Response:
    body = await _body(request)
    if isinstance(body, Response):
        return body
    n = await _rt(request).spool.dlq_replay(body.get("destination"))
    return _answer({"replayed": n})


async def purge(request: Request) -> Response:
    body = await _body(request)
    if isinstance(body, Response):
        return body
    through = body.get("through")
    if through is not None and (isinstance(through, bool) or not isinstance(through, int)):
        return _answer({"error": "through: a dead letter id (a whole number)"}, 400)
    n = await _rt(request).spool.dlq_purge(body.get("destination"), through=through)
    return _answer({"purged": n})


def routes() -> list[Route]:
    return [
        Route("/dlq/count", count, methods=["GET"]),
        Route("/dlq/replay", replay, methods=["POST"]),
        Route("/dlq/purge", purge, methods=["POST"]),
    ]
