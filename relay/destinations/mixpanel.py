"""``mixpanel``: Mixpanel's Import API, the endpoint Mixpanel recommends for servers.

    POST {endpoint}/import?strict=1&ip=0[&project_id=...]   Authorization: Basic ...
    Content-Type: application/json
    [{"event": "$mp_web_page_view", "properties": {"time": 1795867200000,
      "distinct_id": "u_42", "$insert_id": "<uuid5 of the event id>", "token": "...", ...}}]

``/import`` (not ``/track``) because it takes events of any age (``/track`` drops those older
than five days, which a relay that retries can produce), validates each record with
``strict=1`` and names the ones it refused (``failed_records``), and authenticates with
a service account, the legacy API secret, or the project token as the Basic user (in that
order of preference: whichever the settings give).

Each copy becomes one record at ingest (``prepare``); ``token`` is added when the request is
built, so a token rotation applies to spooled copies too. The IP: ``ip`` holds the address
only when the pipeline kept it; otherwise ``ip`` is ``0`` and every request carries the
``ip=0`` parameter the Mixpanel SDKs send, so Mixpanel does not geolocate the relay. The
CDN's country goes as ``mp_country_code``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from relay.destinations import analytics as a
from relay.destinations import deletion as d
from relay.destinations.base import http_classify, http_detail, parse_endpoint, parse_name_map
from relay.rules.fields import BAD_VALUE, MISSING_KEY, At
from relay.types import (
    Call,
    Deletion,
    DestinationDef,
    Event,
    FieldMap,
    ForgetContext,
    Outcome,
    Person,
    StepContext,
    Verdict,
)
from relay.version import __version__

DEFAULT_ENDPOINT = "https://api.mixpanel.com"
IMPORT_PATH = "/import"
MAX_BATCH = 2000  # records per /import request
MAX_BODY = 10 * 1024 * 1024  # 10 MB uncompressed per request
MAX_RECORD = 1024 * 1024  # each record under 1 MB
MAX_PROPERTIES = 255  # fewer than 255 properties per record
DEFAULT_EVENT_NAMES = {"page_view": "$mp_web_page_view"}
# $insert_id: at most 36 bytes of letters, digits and "-" (a uuid is exactly that)
INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
# distinct_id values Mixpanel refuses as implementation mistakes (compared lowercased)
PLACEHOLDER_IDS = frozenset({
    "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a",
    "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}",
})
USER_AGENT = f"relay/{__version__}"
AUTH_SETTINGS = ("service_account_username", "service_account_secret", "project_id")


@dataclass(frozen=True, slots=True)
class MixpanelSettings:
    token: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    api_secret: str | None = field(default=None, repr=False)
    service_account_username: str | None = None
    service_account_secret: str | None = field(default=None, repr=False)
    project_id: str | None = None
    strict: bool = True
    event_names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))
    properties: dict[str, str] = field(default_factory=dict)


def parse_settings(at: At) -> MixpanelSettings | None:
    keys = ("token", "endpoint", "api_secret", *AUTH_SETTINGS, "strict", "event_names",
            "properties")
    entries = at.mapping(allowed=keys, required=("token",))
    if entries is None:
        return None
    token = at.get("token").string()
    secret = at.get("api_secret").string()
    user = at.get("service_account_username").string()
    sa_secret = at.get("service_account_secret").string()
    project_at = at.get("project_id")
    project = project_at.string()
    if project is not None and not project.isdigit():
        project_at.error(BAD_VALUE, "a Mixpanel project id is a number",
                         "it is in the project's settings, next to the token")
        project = None
    given = [k for k in AUTH_SETTINGS if k in entries]
    ok = True
    if given and len(given) < len(AUTH_SETTINGS):
        missing = ", ".join(k for k in AUTH_SETTINGS if k not in entries)
        at.error(MISSING_KEY, f"a service account needs {', '.join(AUTH_SETTINGS)}: "
                 f"missing {missing}")
        ok = False
    if given and "api_secret" in entries:
        at.get("api_secret").error(BAD_VALUE, "give either api_secret or a service account, "
                                   "not both", "the service account is the current way")
        ok = False
    strict = at.get("strict").boolean(True)
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    names = {**DEFAULT_EVENT_NAMES, **parse_name_map(at.get("event_names"))}
    props = parse_name_map(at.get("properties"), "property")
    if token is None or not ok:
        return None
    if given and (user is None or sa_secret is None or project is None):
        return None
    return MixpanelSettings(token, endpoint, secret, user, sa_secret, project, bool(strict),
                            names, props)


def prepare(event: Event, settings: MixpanelSettings, ctx: StepContext) -> Event | None:
    """One ``/import`` record, or None (with the reason) when Mixpanel would refuse it:
    no distinct id (or one of its placeholder values), no time, too many properties, or
    over 1 MB."""
    who = a.distinct_id(event)
    if who is None or who[1].lower() in PLACEHOLDER_IDS:
        ctx.notes.append("mixpanel: no usable user.id, anonymous_id or correlation id for "
                         "distinct_id")
        return None
    identity, distinct = who
    when = a.event_time(event)
    if when is None:
        ctx.notes.append("mixpanel: the event has no time")
        return None
    props: dict[str, Any] = a.properties(event, settings.properties)
    page = a.page(event)
    if "url" in page:
        props["$current_url"] = page["url"]
        scheme, host, path, query = a.url_parts(page["url"])
        if event["event"] == "page_view":
            props.update({k: v for k, v in (
                ("current_domain", host), ("current_url_path", path),
                ("current_url_protocol", f"{scheme}:" if scheme else ""),
                ("current_url_search", f"?{query}" if query else "")) if v})
    if "referrer" in page:
        props["$referrer"] = page["referrer"]
        _, ref_host, _, _ = a.url_parts(page["referrer"])
        if ref_host:
            props["$referring_domain"] = ref_host
    if "title" in page and event["event"] == "page_view":
        props["current_page_title"] = page["title"]
    device = a.device(event)
    if "browser" in device:
        props["$browser"] = device["browser"]
    if "os" in device:
        props["$os"] = device["os"]
    for key, value in a.campaign(event).items():
        props[f"utm_{'campaign' if key == 'name' else key}"] = value
    props.update(a.click_ids(event))
    country = a.context_text(event, "country")
    if country is not None and len(country) == 2:
        props["mp_country_code"] = country.upper()
    ip = a.context_text(event, "ip")
    props["ip"] = ip if ip is not None else 0
    if identity == "user.id":
        props["$user_id"] = distinct
    anonymous = a.distinct_id({"anonymous_id": event.get("anonymous_id")})
    if anonymous is not None:
        props["$device_id"] = anonymous[1]
    # The required three last: a property of the same name cannot replace them.
    props["time"] = int(when.timestamp() * 1000)
    props["distinct_id"] = distinct
    props["$insert_id"] = insert_id(str(event["event_id"]))
    if len(props) + 1 >= MAX_PROPERTIES:  # + the token added at delivery
        ctx.notes.append(f"mixpanel: more than {MAX_PROPERTIES - 2} properties")
        return None
    item: Event = {"event": settings.event_names.get(event["event"], event["event"]),
                   "properties": props}
    if a.json_size(item) >= MAX_RECORD:
        ctx.notes.append("mixpanel: the record is over Mixpanel's 1 MB per event")
        return None
    return item


def insert_id(event_id: str) -> str:
    """``$insert_id`` from the event id: a uuid5 (36 characters of hex digits and ``-``, as
    Mixpanel requires), the same on every retry. ``insert_id("evt_1")`` -> ``"…-…"``."""
    value = a.stable_uuid("mixpanel", event_id)
    assert INSERT_ID.fullmatch(value)
    return value


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def build_request(items: Sequence[Event], settings: MixpanelSettings) -> httpx.Request:
    records = [{**item, "properties": {**item["properties"], "token": settings.token}}
               for item in items]
    query: dict[str, str] = {"strict": "1" if settings.strict else "0", "ip": "0"}
    if settings.service_account_username is not None:
        assert settings.service_account_secret is not None and settings.project_id is not None
        auth = _basic(settings.service_account_username, settings.service_account_secret)
        query["project_id"] = settings.project_id
    elif settings.api_secret is not None:
        auth = _basic(settings.api_secret, "")
    else:
        auth = _basic(settings.token, "")
    return httpx.Request(
        "POST", f"{settings.endpoint}{IMPORT_PATH}?{urlencode(query)}",
        content=orjson.dumps(records),
        headers={"Content-Type": "application/json", "Authorization": auth,
                 "User-Agent": USER_AGENT})


def _failed_records(response: httpx.Response) -> tuple[tuple[int, str], ...] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    records = body.get("failed_records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        return None
    out: list[tuple[int, str]] = []
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("index"), int):
            return None
        where = record.get("field")
        message = str(record.get("message") or "failed validation")
        out.append((record["index"],
                    f"HTTP 400: mixpanel refused the record: {message}"
                    + (f" (field {where})" if isinstance(where, str) and where else "")))
    return tuple(out)


def _credential(request: httpx.Request) -> str:
    """The settings that authenticated ``request``, told from the request itself: a
    ``project_id`` means the service account; a Basic user equal to the records' token means
    the token; otherwise the API secret. Never a value."""
    if "project_id" in request.url.params:
        return ("settings.service_account_username, settings.service_account_secret and "
                "settings.project_id")
    try:
        user = base64.b64decode(request.headers.get("authorization", "")[6:]).decode()
        records = orjson.loads(request.content)
        token = records[0]["properties"]["token"]
    except (ValueError, KeyError, IndexError, TypeError, RuntimeError):
        return "the credential settings"
    return "settings.token" if user.partition(":")[0] == token else "settings.api_secret"


def classify(response: httpx.Response) -> Verdict:
    """200 ok. 400 with ``failed_records``: a partial success, only those records are
    dead-lettered (each with Mixpanel's message); a 400 without them is permanent. 401 and
    403 permanent, naming the credential setting; 413 permanent; 429 and 5xx retried
    (honouring ``Retry-After``)."""
    status = response.status_code
    if status == 400:
        failed = _failed_records(response)
        if failed:
            return Verdict("ok", http_detail(response), 400, failed=failed)
        return Verdict("permanent", http_detail(response), 400)
    if status in (401, 403):
        hint = (f"check {_credential(response.request)}, and that settings.endpoint is the "
                "project's region (api-eu.mixpanel.com for EU residency)")
        return Verdict("permanent", f"{http_detail(response)} ({hint})", status)
    return http_classify(response)


def fields(settings: MixpanelSettings) -> list[FieldMap]:
    """Every field ``prepare`` can send, ours -> theirs (``*`` is any one key)."""
    out = [
        FieldMap("event", "event"),
        FieldMap("user.id", "properties.distinct_id"),
        FieldMap("anonymous_id", "properties.distinct_id"),
        FieldMap("correlation_id", "properties.distinct_id"),
        FieldMap("user.id", "properties.$user_id"),
        FieldMap("anonymous_id", "properties.$device_id"),
        FieldMap("event_id", "properties.$insert_id"),
        FieldMap("time", "properties.time"),
        FieldMap("received_at", "properties.time"),
        FieldMap("context.page.url", "properties.$current_url"),
        FieldMap("context.page.url", "properties.current_domain"),
        FieldMap("context.page.url", "properties.current_url_path"),
        FieldMap("context.page.url", "properties.current_url_protocol"),
        FieldMap("context.page.url", "properties.current_url_search"),
        FieldMap("context.page.referrer", "properties.$referrer"),
        FieldMap("context.page.referrer", "properties.$referring_domain"),
        FieldMap("context.page.title", "properties.current_page_title"),
        FieldMap("context.device.browser", "properties.$browser"),
        FieldMap("context.device.os", "properties.$os"),
        FieldMap("context.country", "properties.mp_country_code"),
        FieldMap("context.ip", "properties.ip"),
        FieldMap("context.click_ids.*", "properties.*"),
    ]
    out += [FieldMap(f"context.campaign.{k}", f"properties.utm_{'campaign' if k == 'name' else k}")
            for k in a.CAMPAIGN_KEYS]
    out += [FieldMap(f"properties.{ours}", f"properties.{theirs}")
            for ours, theirs in sorted(settings.properties.items())]
    out.append(FieldMap("properties.*", "properties.*"))
    return out


# -- relay forget -------------------------------------------------------------------------

GDPR_API = "https://mixpanel.com"  # EU residency: https://eu.mixpanel.com
DELETIONS_PATH = "/api/app/data-deletions/v3.0/"
COMPLIANCE_TYPES = ("GDPR", "CCPA")
MANUAL = ("in Mixpanel, the project's settings > Data & Privacy (organization owner or"
          " admin): submit a deletion request for the person's distinct_id")


@dataclass(frozen=True, slots=True)
class MixpanelDeletion:
    """``deletion:``: the GDPR OAuth token of an owner or admin (valid one year)."""

    gdpr_token: str = field(repr=False)
    endpoint: str = GDPR_API
    compliance_type: str = "GDPR"


def parse_deletion(at: At) -> MixpanelDeletion | None:
    if at.mapping(allowed=("gdpr_token", "endpoint", "compliance_type"),
                  required=("gdpr_token",)) is None:
        return None
    token = at.get("gdpr_token").string()
    endpoint = parse_endpoint(at.get("endpoint"), GDPR_API)
    kind = at.get("compliance_type").choice(COMPLIANCE_TYPES, "GDPR")
    if token is None:
        return None
    return MixpanelDeletion(token, endpoint, kind or "GDPR")


def plan_deletion(person: Person, settings: MixpanelSettings,
                  deletion: MixpanelDeletion | None, ctx: ForgetContext) -> Outcome | Call:
    """A deletion task for the ``distinct_id`` (``user.id``, as ``prepare`` sends it)::

        POST {endpoint}/api/app/data-deletions/v3.0/?token=<project token>
        Authorization: Bearer <GDPR OAuth token>
        {"distinct_ids": ["u_42"], "compliance_type": "GDPR"}
        -> 200 {"status": "ok", "results": {"task_id": ...}}
    """
    uid = d.user_id(person)
    if uid is None:
        return d.not_keyed("Mixpanel", person, "distinct_id (user.id)")
    if deletion is None:
        return d.manual(MANUAL, "gdpr_token")
    body = orjson.dumps({"distinct_ids": [uid], "compliance_type": deletion.compliance_type})
    request = httpx.Request(
        "POST", deletion.endpoint + DELETIONS_PATH, params={"token": settings.token},
        content=body, headers={"Authorization": f"Bearer {deletion.gdpr_token}",
                               "Content-Type": "application/json", "User-Agent": USER_AGENT})
    return Call(request, _tasked)


def _tasked(response: httpx.Response) -> Outcome:
    body = d.json_body(response)
    if not 200 <= response.status_code < 300 or not isinstance(body, dict) or (
            body.get("status") != "ok"):
        return d.failed(response, "check deletion.gdpr_token: the GDPR OAuth token of a"
                        " project owner or admin, renewed yearly")
    results = body.get("results")
    task = results.get("task_id") if isinstance(results, dict) else None
    named = f"task {task}: " if isinstance(task, str | int) else ""
    return Outcome("requested", f"{named}Mixpanel deletes the person's events and profile"
                   " (it may take up to 30 days)")


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    # Each record grows by the token at delivery: keep room for it in the 10 MB.
    max_bytes=MAX_BODY - MAX_BATCH * 80,
    vendor="Mixpanel",
    deletion=Deletion(parse_deletion, plan_deletion,
                      "a GDPR API deletion task for the distinct_id"),
    doc="Mixpanel Import API (/import?strict=1): per-record errors, $insert_id from event_id.",
)
