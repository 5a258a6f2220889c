"""Mixpanel's Import API, ``POST /import``, as Mixpanel validates it.

Authentication (HTTP Basic) as Mixpanel takes it on ``/import``: a service account
(``user:secret`` with ``?project_id=``), the project token as the user with an empty
password, or the legacy API secret the same way; anything else is 401 ``{"code": 401,
"error": "Invalid credentials", "status": "Unauthorized"}``. A body over 10 MB is 413, more
than 2,000 records 400. Each record is validated as ``strict=1`` does (event name, ``time``
in seconds or milliseconds after 1971-01-01 and at most an hour ahead, ``distinct_id`` not
one of the placeholder values, ``$insert_id`` of at most 36 letters, digits and ``-``,
fewer than 255 properties): with ``strict=1`` the refused ones are answered 400 with
``failed_records`` and the others imported; with ``strict=0`` they are skipped silently.
Success is ``{"code": 200, "num_records_imported": N, "status": "OK"}``.

Problems (relay bugs): no ``ip=0`` request parameter (Mixpanel would geolocate the relay),
an ``ip`` property that is neither ``0`` nor an address, a ``token`` property that is not
the project's, a raw email address anywhere.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from .base import Reply, Request, StandIn

MAX_BODY = 10 * 1024 * 1024
MAX_RECORDS = 2000
INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
PLACEHOLDERS = frozenset({
    "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a",
    "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}",
})
EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)
IP = re.compile(r"^[0-9a-fA-F:.]+$")
T1971 = 31_536_000  # 1971-01-01T00:00:00Z


def _error(status: int, error: str, label: str) -> Reply:
    return Reply.json(status, {"code": status, "error": error, "status": label})


class MixpanelStandIn(StandIn):
    name = "mixpanel"

    def __init__(self, token: str, *, service_account: tuple[str, str] | None = None,
                 project_id: str | None = None, api_secret: str | None = None) -> None:
        self.token = token
        self.service_account = service_account
        self.project_id = project_id
        self.api_secret = api_secret
        self.partial: list[Any] = []  # the good records of partial successes (400 answers)
        super().__init__()

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        project = request.param("project_id")
        if self.service_account is not None and (user, password) == self.service_account:
            return project == self.project_id
        if password == "" and project is None:
            return user == self.token or (self.api_secret is not None
                                          and user == self.api_secret)
        return False

    gdpr_token = "e2e-mixpanel-gdpr-oauth"
    DELETIONS = "/api/app/data-deletions/v3.0/"

    @property
    def deletions(self) -> list[Any]:
        """The deletion tasks created (the GDPR API's data-deletions v3.0)."""
        with self._lock:
            return [r.json() for r in self.requests
                    if r.path == self.DELETIONS and r.reply and r.reply.status == 200]

    def _delete(self, request: Request) -> Reply:
        if request.param("token") != self.token:
            return Reply.json(400, {"status": "error", "error": "invalid project token"})
        if request.headers.get("authorization") != f"Bearer {self.gdpr_token}":
            return Reply.json(401, {"status": "error", "error": "invalid OAuth token"})
        body = request.json()
        ids = body.get("distinct_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not 1 <= len(ids) <= 1999 or (
                body.get("compliance_type", "GDPR") not in ("GDPR", "CCPA")):
            return Reply.json(400, {"status": "error", "error": "invalid distinct_ids"})
        return Reply.json(200, {"status": "ok", "results": {"task_id": len(self.requests)}})

    def check(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == self.DELETIONS:
            return self._delete(request)
        if request.method != "POST" or request.path != "/import":
            return _error(404, "not found", "Not Found")
        if not self._authenticated(request):
            return _error(401, "Invalid credentials", "Unauthorized")
        if len(request.body) > MAX_BODY:
            return _error(413, f"request exceeds max limit of {MAX_BODY} bytes",
                          "Request Entity Too Large")
        if request.param("ip") != "0":
            request.problem("no ip=0 parameter: Mixpanel geolocates the relay's address")
        if not request.headers.get("content-type", "").startswith("application/json"):
            request.problem(f"Content-Type {request.headers.get('content-type')!r}")
        try:
            records = json.loads(request.body)
        except ValueError:
            return _error(400, "unable to parse the request body as JSON", "Bad Request")
        if not isinstance(records, list) or not records:
            return _error(400, "the body must be a non-empty JSON array", "Bad Request")
        if len(records) > MAX_RECORDS:
            return _error(400, f"more than {MAX_RECORDS} records", "Bad Request")
        if EMAIL.search(request.body.decode(errors="replace")):
            request.problem("a raw email address was sent")
        failed = []
        for index, record in enumerate(records):
            why = self._invalid(record)
            if why is None:
                self._record_problems(request, record)
                request.accept(record)
            else:
                field, message = why
                props = record.get("properties") if isinstance(record, dict) else None
                insert = props.get("$insert_id") if isinstance(props, dict) else None
                failed.append({"index": index, "insert_id": insert, "field": field,
                               "message": message})
        if failed and request.param("strict") == "1":
            reply = Reply.json(400, {
                "code": 400, "error": "some data points in the request failed validation",
                "status": "Bad Request", "num_records_imported": len(request.items),
                "failed_records": failed})
            # A partial success: the stand-in base forgets the items of a non-2xx answer.
            with self._lock:
                self.partial.extend(request.items)
            return reply
        return Reply.json(200, {"code": 200, "num_records_imported": len(request.items),
                                "status": "OK"})

    def _invalid(self, record: Any) -> tuple[str, str] | None:
        if not isinstance(record, dict) or not isinstance(record.get("properties"), dict):
            return "properties", "'properties' must be an object"
        if not isinstance(record.get("event"), str) or not record["event"]:
            return "event", "'event' must be a non-empty string"
        props = record["properties"]
        when = props.get("time")
        if isinstance(when, bool) or not isinstance(when, int):
            return "properties.time", "'properties.time' is invalid: must be an integer"
        seconds = when / 1000 if when > 10_000_000_000 else when
        if seconds < T1971 or seconds > time.time() + 3600:
            return ("properties.time", "'properties.time' is invalid: must be after 1971-01-01 "
                    "and at most one hour in the future")
        distinct = props.get("distinct_id")
        if not isinstance(distinct, str) or distinct.lower() in PLACEHOLDERS:
            return "properties.distinct_id", "'properties.distinct_id' is invalid"
        insert = props.get("$insert_id")
        if (not isinstance(insert, str) or not INSERT_ID.fullmatch(insert)
                or insert.lower() in PLACEHOLDERS):
            return "properties.$insert_id", "'properties.$insert_id' is invalid"
        if len(props) >= 255:
            return "properties", "too many properties"
        return None

    def _record_problems(self, request: Request, record: dict[str, Any]) -> None:
        props = record["properties"]
        if props.get("token") != self.token:
            request.problem("the token property is not the project's")
        ip = props.get("ip")
        if "ip" in props and ip != 0 and not (isinstance(ip, str) and IP.match(ip)):
            request.problem(f"ip property {ip!r}")

    @property
    def imported(self) -> list[Any]:
        """Every record Mixpanel kept: full successes and the good part of partial ones."""
        with self._lock:
            partial = list(self.partial)
        return self.accepted + partial

