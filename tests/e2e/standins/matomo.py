"""Matomo's tracker, ``POST /matomo.php`` in its bulk form, as Matomo's BulkTracking plugin
and tracker check it.

The body is ``{"requests": ["?idsite=..&rec=1&...", ...], "token_auth"?}``. Each request is
tracked or counted invalid the way Matomo does: an unknown ``idsite``, a ``_id`` that is not
16 hex digits, a ``cip`` or a ``cdt`` older than 24 h without a token Matomo accepts. The
answer is ``{"status": "success", "tracked": N, "invalid": M}``, with ``invalid_indices``
only when the token is a super user's (``superuser=True``); a ``send_image`` at the top of
the body would make it a bare 204, as Matomo does.

Problems (relay bugs): ``token_auth`` in the URL, a request without ``rec=1``, ``apiv=1`` or
``send_image=0``, an event request with an empty ``e_c``/``e_a``, an order without
``ec_id``/``revenue``, a raw email address anywhere.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .base import Reply, Request, StandIn

HEX16 = re.compile(r"[0-9a-f]{16}")
EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)
UNAUTHENTICATED_CDT = 24 * 3600


class MatomoStandIn(StandIn):
    name = "matomo"

    def __init__(self, site_id: int, token_auth: str | None = None, *,
                 superuser: bool = False) -> None:
        self.site_id = site_id
        self.token_auth = token_auth
        self.superuser = superuser
        super().__init__()

    admin_token = "e2e-matomo-admin-token-auth"

    def visits(self) -> list[tuple[int, int, str]]:
        """(idsite, idvisit, uid) of every tracked request with a uid not deleted: one visit
        a request, numbered in arrival order."""
        gone = set(getattr(self, "_deleted", ()))
        out = []
        for n, params in enumerate(self.accepted, 1):
            uid = params.get("uid")
            if uid and n not in gone:
                out.append((int(params.get("idsite", 0)), n, str(uid)))
        return out

    def _api(self, request: Request) -> Reply:
        """The Reporting API's PrivacyManager methods, as POSTed forms (errors in a 200)."""
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if "token_auth" in request.query:
            request.problem("token_auth in the URL")
        if form.get("module") != "API" or form.get("format") != "JSON":
            request.problem("not module=API&format=JSON")
        if form.get("token_auth") != self.admin_token:
            return Reply.json(200, {"result": "error", "message": "You can't access this"
                                    " resource as it requires 'admin' access."})
        method = form.get("method")
        if method == "PrivacyManager.findDataSubjects":
            segment = form.get("segment", "")
            if not segment.startswith("userId=="):
                return Reply.json(200, {"result": "error", "message": "bad segment"})
            uid = unquote(segment[len("userId=="):])
            found = [{"idSite": s, "idVisit": v, "userId": u} for s, v, u in self.visits()
                     if u == uid and s == int(form.get("idSite", 0))]
            return Reply.json(200, found[:401])
        if method == "PrivacyManager.deleteDataSubjects":
            deleted = getattr(self, "_deleted", [])
            i = 0
            while f"visits[{i}][idvisit]" in form:
                deleted.append(int(form[f"visits[{i}][idvisit]"]))
                i += 1
            self._deleted = deleted
            return Reply.json(200, {"log_visit": i, "log_link_visit_action": i})
        return Reply.json(200, {"result": "error", "message": f"unknown method {method}"})

    def check(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/index.php":
            return self._api(request)
        if request.method != "POST" or request.path != "/matomo.php":
            return Reply(404, b"not found", (("Content-Type", "text/html"),))
        if "token_auth" in request.query:
            request.problem("token_auth in the URL")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            # not a bulk request: Matomo answers a single hit with its GIF
            return Reply(200, b"GIF89a", (("Content-Type", "image/gif"),))
        if EMAIL.search(request.body.decode(errors="replace")):
            request.problem("a raw email address was sent")
        token = body.get("token_auth")
        authenticated = token is not None and token == self.token_auth
        invalid: list[int] = []
        tracked = 0
        for index, raw in enumerate(body["requests"]):
            params = self._params(request, raw)
            if params is None:
                continue
            if self._refused(params, authenticated):
                invalid.append(index)
            else:
                tracked += 1
                request.accept(params)
        if "send_image" in body:
            return Reply(204)
        answer: dict[str, Any] = {"status": "success", "tracked": tracked,
                                  "invalid": len(invalid)}
        if authenticated and self.superuser:
            answer["invalid_indices"] = invalid
        return Reply.json(200, answer)

    def _params(self, request: Request, raw: Any) -> dict[str, str] | None:
        if not isinstance(raw, str) or not raw.startswith("?"):
            request.problem(f"a request that is not a query string: {str(raw)[:80]!r}")
            return None
        params = {k: v[-1] for k, v in parse_qs(urlsplit(raw).query,
                                                keep_blank_values=True).items()}
        for key, value in (("rec", "1"), ("apiv", "1"), ("send_image", "0")):
            if params.get(key) != value:
                request.problem(f"{key}={params.get(key)!r}, not {value}")
        if ("e_c" in params or "e_a" in params) and not (
                params.get("e_c", "").strip() and params.get("e_a", "").strip()):
            request.problem("an event without e_c or e_a")
        if params.get("idgoal") == "0" and not (params.get("ec_id") and params.get("revenue")):
            request.problem("an ecommerce order without ec_id or revenue")
        if "ec_items" in params:
            try:
                items = json.loads(params["ec_items"])
            except ValueError:
                items = None
            if not isinstance(items, list) or not all(
                    isinstance(i, list) and len(i) == 5 for i in items):
                request.problem(f"ec_items {params['ec_items'][:80]!r}")
        return params

    def _refused(self, params: dict[str, str], authenticated: bool) -> bool:
        """InvalidRequestParameterException / UnexpectedWebsiteFoundException in Matomo."""
        if params.get("idsite") != str(self.site_id):
            return True
        visitor = params.get("_id")
        if visitor is not None and not HEX16.fullmatch(visitor):
            return True
        if "cip" in params and not authenticated:
            return True
        cdt = params.get("cdt")
        return (cdt is not None and cdt.isdigit() and not authenticated
                and time.time() - int(cdt) >= UNAUTHENTICATED_CDT)
