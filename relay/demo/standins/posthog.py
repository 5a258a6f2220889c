"""PostHog's capture endpoint: ``POST /batch/`` with ``{"api_key": "phc_...", "batch": [...]}``.

Refused as capture refuses them (plain text): 401 for a missing, personal (``phx_``) or
unknown key, 400 for a request without events, an event without a name or a
``distinct_id``. Success is ``{"status": 1}``. Problems: a ``uuid`` that is not a UUID or a
``timestamp`` that is not ISO-8601 (PostHog drops the event), no ``$ip`` and no
``$geoip_disable`` (PostHog would locate the relay's own address), ``$set`` on a personless
event, an email address in the clear.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from relay.demo.standins.base import (
    Answer,
    Call,
    StandIn,
    Took,
    View,
    put,
    raw_email_in,
    section,
)
from relay.pipeline.params import CLICK_ID_SET

PATH = "/batch/"
_PAGE = (("$current_url", "url"), ("$referrer", "referrer"), ("title", "title"))
_DEVICE = (("$browser", "browser"), ("$os", "os"), ("$device_type", "type"))
_CAMPAIGN = (("utm_source", "source"), ("utm_medium", "medium"), ("utm_campaign", "name"),
             ("utm_term", "term"), ("utm_content", "content"))
_OWN = {"title"} | {k for k, _ in _CAMPAIGN}


class PostHogStandIn(StandIn):
    kind = "posthog"

    def handle(self, call: Call) -> Took:
        if call.method != "POST" or call.path != PATH:
            return Took(Answer.text(404, "not found"))
        body = call.json()
        if not isinstance(body, dict):
            return Took(Answer.text(400, "failed to parse request: expected an object"))
        batch = body.get("batch")
        items = [i for i in batch if isinstance(i, dict)] if isinstance(batch, list) else []
        took = Took(Answer.json(200, {"status": 1}), items)
        key = body.get("api_key")
        if not isinstance(key, str) or not key:
            took.answer = Answer.text(401, "event submitted without an api_key")
        elif key.startswith("phx_"):
            took.answer = Answer.text(401, "API key is not valid: personal_api_key")
        elif key != self.settings.api_key:
            took.answer = Answer.text(401, "API key is not valid: unknown project api_key")
        elif not items or len(items) != len(batch or []):
            took.answer = Answer.text(400, "request holds no event")
        elif not all(isinstance(i.get("event"), str) and i["event"] for i in items):
            took.answer = Answer.text(400, "event submitted with an empty event name")
        elif not all(isinstance(i.get("distinct_id"), str) and i["distinct_id"] for i in items):
            took.answer = Answer.text(400, "event submitted without a distinct_id")
        else:
            for i, item in enumerate(items):
                _event(f"batch[{i}]", item, took.problems)
            if raw_email_in(body):
                took.problems.append("an email address in the clear")
        return took

    def view(self, item: Any) -> View:
        out: View = {}
        props = section(item, "properties")
        for theirs, ours in _PAGE:
            put(out, f"context.page.{ours}", f"properties.{theirs}", props.get(theirs))
        put(out, "context.ip", "properties.$ip", props.get("$ip"))
        put(out, "context.user_agent", "properties.$raw_user_agent", props.get("$raw_user_agent"))
        for theirs, ours in _DEVICE:
            put(out, f"context.device.{ours}", f"properties.{theirs}", props.get(theirs))
        for theirs, ours in _CAMPAIGN:
            put(out, f"context.campaign.{ours}", f"properties.{theirs}", props.get(theirs))
        who = "correlation_id" if props.get("$process_person_profile") is False else "user.id"
        put(out, who, "distinct_id", item.get("distinct_id"))
        put(out, "user.email", "properties.$set.email_sha256",
            section(props, "$set").get("email_sha256"))
        for key, value in props.items():
            if key in CLICK_ID_SET:
                put(out, f"context.click_ids.{key}", f"properties.{key}", value)
            elif not key.startswith("$") and key not in _OWN:
                put(out, f"properties.{key}", f"properties.{key}", value)
        return out

    def event_name(self, item: Any) -> str:
        return str(item.get("event", "?")) if isinstance(item, dict) else "?"

    def secrets(self) -> dict[str, str]:
        return {self.settings.api_key: "settings.api_key"}


def _event(where: str, item: dict[str, Any], problems: list[str]) -> None:
    try:
        uuid.UUID(str(item.get("uuid")))
    except ValueError:
        problems.append(f"{where}: uuid {item.get('uuid')!r} is not a UUID: PostHog drops it")
    try:
        datetime.fromisoformat(str(item.get("timestamp")))
    except ValueError:
        problems.append(f"{where}: timestamp {item.get('timestamp')!r} is not ISO-8601")
    props = item.get("properties")
    if not isinstance(props, dict):
        problems.append(f"{where}: properties is not an object")
        return
    if "$ip" not in props and props.get("$geoip_disable") is not True:
        problems.append(f"{where}: no $ip and no $geoip_disable: PostHog locates the sender")
    if props.get("$process_person_profile") is False and "$set" in props:
        problems.append(f"{where}: $set on a personless event")
