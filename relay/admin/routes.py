"""The admin listener's routes: metrics, readiness, the active rules, dead letters, debug,
and, in their own modules, the reconciliation page, the dead-letter actions and forget."""

from __future__ import annotations

import hmac
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import orjson
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.admin import dlq as dead_letters
from relay.admin import forget, reconcile
from relay.admin.debug import debug_page, debug_stream
from relay.rules.secrets import masked_tree

if TYPE_CHECKING:
    from relay.runtime import Runtime

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENAPI_TYPE = "application/yaml; charset=utf-8"
OPENAPI_SERVER = "servers:\n  - url: /t\n"  # the shipped document's prefix


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2), status, media_type="application/json"
    )


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.relay
    return rt


def _limit(request: Request, default: int = 100, most: int = 10_000) -> int:
    text = request.query_params.get("limit", "")
    return min(int(text), most) if text.isdigit() else default


async def metrics(request: Request) -> Response:
    return Response(await _rt(request).scrape(), media_type=PROMETHEUS_TYPE)


async def readyz(request: Request) -> Response:
    rt = _rt(request)
    ready = rt.started and rt.spool.writable()
    body = {
        "ready": ready,
        "rules_version": rt.rules.version,
        "spool_writable": rt.spool.writable(),
        "started": rt.started,
    }
    return _json(body, 200 if ready else 503)


async def rules(request: Request) -> Response:
    rt = _rt(request)
    return _json(
        {"version": rt.rules.version, "files": list(rt.rules.files), "rules": masked_tree(rt.rules)}
    )


async def dlq(request: Request) -> Response:
    rt = _rt(request)
    dest = request.query_params.get("destination")
    letters = await rt.spool.dlq_list(dest, _limit(request))
    return _json([d.summary() for d in letters])


async def quarantine(request: Request) -> Response:
    rt = _rt(request)
    items = await rt.spool.quarantine_list(_limit(request))
    for item in items:
        item["payload"] = orjson.loads(item["payload"])
    return _json(items)


def openapi_document(prefix: str) -> str:
    """``relay/static/openapi.yaml``, the public surface, with the server URL at ``prefix``."""
    text = (files("relay") / "static" / "openapi.yaml").read_text(encoding="utf-8")
    return text.replace(OPENAPI_SERVER, f"servers:\n  - url: {prefix}\n", 1)


async def openapi(request: Request) -> Response:
    return Response(openapi_document(_rt(request).rules.relay.prefix), media_type=OPENAPI_TYPE)


def routes() -> list[Route]:
    return [
        Route("/metrics", metrics),
        Route("/openapi.yaml", openapi),
        Route("/readyz", readyz),
        Route("/rules", rules),
        Route("/dlq", dlq),
        Route("/quarantine", quarantine),
        Route("/debug", debug_page),
        Route("/debug/stream", debug_stream),
        *reconcile.routes(),
        *dead_letters.routes(),
        *forget.routes(),
    ]


class _TokenAuth(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get("authorization", "")
        ok = given.lower().startswith("bearer ") and hmac.compare_digest(
            given[7:].strip().encode(), self.token
        )
        if not ok and request.query_params.get("token"):
            ok = hmac.compare_digest(request.query_params["token"].encode(), self.token)
        if not ok:
            return Response("admin token required\n", 401, {"WWW-Authenticate": "Bearer"})
        return await call_next(request)


def middleware(runtime: Runtime) -> list[Middleware]:
    token = runtime.rules.relay.admin.token
    return [Middleware(_TokenAuth, token=token)] if token else []
