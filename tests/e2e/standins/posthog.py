"""PostHog's capture endpoint, ``POST /batch/``, as its capture service checks it.

Refusals answer as capture does (plain-text bodies): 401 ``event submitted without an
api_key`` / ``API key is not valid: ...`` for a missing, personal (``phx_``) or unknown key,
400 ``request holds no event`` / ``event submitted with an empty event name`` / ``event
submitted without a distinct_id`` / ``failed to parse request: ...``, 413 for a body over
20 MB. An event over 1 MB, or whose ``uuid`` is not a UUID, is dropped (200, as PostHog
drops it at ingestion). Success is ``{"status": 1}``.

Problems (relay bugs the test asserts away): a timestamp that is not ISO-8601, an event
without ``$ip`` that does not carry ``$geoip_disable: true`` (PostHog would geolocate the
relay's own address), ``$set`` on a personless event, a raw email address anywhere.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from .base import Reply, Request, StandIn

MAX_BODY = 20_000_000
MAX_EVENT = 1_000_000
EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)


def _text(status: int, body: str) -> Reply:
    return Reply(status, body.encode(), (("Content-Type", "text/plain; charset=utf-8"),))


class PostHogStandIn(StandIn):
    name = "posthog"

    def __init__(self, api_key: str, *, personal_api_key: str = "phx_e2ePersonalKey01",
                 project_id: str = "7") -> None:
        self.api_key = api_key
        self.uuids: list[str] = []  # every uuid accepted, repeats included (retries)
        self.personal_api_key = personal_api_key
        self.project_id = project_id
        self.deleted: list[str] = []  # distinct ids of persons deleted (with their events)
        super().__init__()

    def person_id(self, distinct_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, f"person:{distinct_id}"))

    def _persons(self, request: Request) -> Reply:
        """The private API's persons: ``GET .../persons/?distinct_id=`` (a person for every
        distinct id captured and not deleted) and ``DELETE .../persons/{id}/``, with a
        personal API key as the bearer token."""
        if request.headers.get("authorization") != f"Bearer {self.personal_api_key}":
            return Reply.json(401, {"type": "authentication_error",
                                    "detail": "Invalid personal API key."})
        base = f"/api/projects/{self.project_id}/persons/"
        if not request.path.startswith(base):
            return Reply.json(404, {"detail": "Not found."})
        known = {i["distinct_id"] for i in self.accepted} - set(self.deleted)
        if request.method == "GET" and request.path == base:
            wanted = request.param("distinct_id")
            results = [{"id": self.person_id(wanted), "distinct_ids": [wanted]}] if (
                wanted is not None and wanted in known) else []
            return Reply.json(200, {"next": None, "previous": None, "results": results})
        if request.method == "DELETE":
            pid = request.path[len(base):].strip("/")
            if request.param("delete_events") != "true":
                request.problem("a person deleted without delete_events=true")
            match = [d for d in known if self.person_id(d) == pid]
            if not match:
                return Reply.json(404, {"detail": "Not found."})
            self.deleted.extend(match)
            return Reply(204, b"")
        return Reply.json(405, {"detail": f"Method {request.method} not allowed."})

    def check(self, request: Request) -> Reply:
        if request.path.startswith("/api/projects/"):
            return self._persons(request)
        if request.method != "POST" or request.path != "/batch/":
            return _text(404, "not found")
        if len(request.body) > MAX_BODY:
            return _text(413, "payload too large")
        if not request.headers.get("content-type", "").startswith("application/json"):
            request.problem(f"Content-Type {request.headers.get('content-type')!r}")
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            return _text(400, f"failed to parse request: {exc}")
        if not isinstance(body, dict):
            return _text(400, "failed to parse request: expected an object")
        key = body.get("api_key")
        if not isinstance(key, str) or not key:
            return _text(401, "event submitted without an api_key")
        if key.startswith("phx_"):
            return _text(401, "API key is not valid: personal_api_key")
        if key != self.api_key:
            return _text(401, "API key is not valid: unknown project api_key")
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            return _text(400, "request holds no event")
        for item in batch:
            if not isinstance(item, dict):
                return _text(400, "failed to parse request: an event is not an object")
            if not isinstance(item.get("event"), str) or not item["event"]:
                return _text(400, "event submitted with an empty event name")
            if not isinstance(item.get("distinct_id"), str) or not item["distinct_id"]:
                return _text(400, "event submitted without a distinct_id")
        for item in batch:
            self._event(request, item)
        if EMAIL.search(request.body.decode(errors="replace")):
            request.problem("a raw email address was sent")
        return Reply.json(200, {"status": 1})

    def _event(self, request: Request, item: dict[str, Any]) -> None:
        if len(json.dumps(item)) > MAX_EVENT:
            return  # dropped by PostHog's ingestion
        try:
            event_uuid = str(uuid.UUID(str(item.get("uuid"))))
        except ValueError:
            request.problem(f"uuid {item.get('uuid')!r} is not a UUID: PostHog drops the event")
            return
        stamp = item.get("timestamp")
        try:
            datetime.fromisoformat(str(stamp))
        except ValueError:
            request.problem(f"timestamp {stamp!r} is not ISO-8601")
        props = item.get("properties")
        if not isinstance(props, dict):
            request.problem("properties is not an object")
            return
        if "$ip" not in props and props.get("$geoip_disable") is not True:
            request.problem("no $ip and no $geoip_disable: PostHog geolocates the sender")
        if props.get("$process_person_profile") is False and "$set" in props:
            request.problem("$set on a personless event")
        self.uuids.append(event_uuid)
        request.accept(item)
