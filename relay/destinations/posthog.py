"""``posthog``: PostHog's capture API, the ``/batch/`` endpoint its server SDKs post to.

    POST {endpoint}/batch/   Content-Type: application/json
    {"api_key": "phc_...", "batch": [{"event": "$pageview", "distinct_id": "u_42",
      "properties": {"$current_url": "...", "$geoip_disable": true, ...},
      "timestamp": "2026-11-28T12:00:00.000Z", "uuid": "<uuid5 of the event id>"}]}

Each copy becomes one item of ``batch`` at ingest (``prepare``): the event's name through
``event_names`` (``page_view`` is ``$pageview``), ``distinct_id`` from ``user.id``, else
``anonymous_id``, else the relay's correlation id, the page as ``$current_url`` /
``$pathname`` / ``$host`` / ``$referrer`` / ``title``, the device, campaign and click ids as
posthog-js names them, and ``uuid`` derived from ``event_id`` (stable across retries).

The IP: ``$ip`` only when the pipeline kept ``context.ip``; otherwise ``$geoip_disable:
true``, which the PostHog SDKs send so that PostHog does not geolocate the sender's (the
relay's) address. Person profiles: ``$process_person_profile: false`` unless the event is
identified (``person_profiles: identified_only``, the default), and then ``$set`` carries
only the email's SHA-256 (``email_sha256``), never a raw identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import httpx
import orjson

from relay.destinations import analytics as a
from relay.destinations import deletion as d
from relay.destinations.base import (
    http_classify,
    http_detail,
    parse_endpoint,
    parse_name_map,
)
from relay.rules.fields import BAD_VALUE, At
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

DEFAULT_ENDPOINT = "https://us.i.posthog.com"
BATCH_PATH = "/batch/"
MAX_BATCH = 1000
MAX_BODY = 20_000_000  # PostHog refuses bodies over 20 MB
MAX_EVENT = 1_000_000  # and drops events over 1 MB
ENVELOPE_BYTES = 1024  # {"api_key": ..., "batch": [...]} around the items
DEFAULT_EVENT_NAMES = {"page_view": "$pageview"}
PersonProfiles = Literal["identified_only", "always", "never"]
PERSON_PROFILES: tuple[PersonProfiles, ...] = ("identified_only", "always", "never")
DEVICE_TYPES = {"desktop": "Desktop", "mobile": "Mobile", "tablet": "Tablet"}
USER_AGENT = f"relay/{__version__}"


@dataclass(frozen=True, slots=True)
class PostHogSettings:
    api_key: str = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    event_names: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_NAMES))
    properties: dict[str, str] = field(default_factory=dict)
    person_profiles: PersonProfiles = "identified_only"


def parse_settings(at: At) -> PostHogSettings | None:
    keys = ("api_key", "endpoint", "event_names", "properties", "person_profiles")
    if at.mapping(allowed=keys, required=("api_key",)) is None:
        return None
    key_at = at.get("api_key")
    api_key = key_at.string()
    if api_key is not None and api_key.startswith("phx_"):
        key_at.error(BAD_VALUE, "this is a personal API key, which capture refuses",
                     "use the project API key (phc_...) from the project's settings")
        api_key = None
    endpoint = parse_endpoint(at.get("endpoint"), DEFAULT_ENDPOINT)
    names = {**DEFAULT_EVENT_NAMES, **parse_name_map(at.get("event_names"))}
    props = parse_name_map(at.get("properties"), "property")
    profiles = at.get("person_profiles").choice(PERSON_PROFILES, "identified_only")
    if api_key is None:
        return None
    return PostHogSettings(api_key, endpoint, names, props, cast(PersonProfiles, profiles))


def _processes_person(identity: str, settings: PostHogSettings) -> bool:
    if settings.person_profiles == "always":
        return True
    return settings.person_profiles == "identified_only" and identity == "user.id"


def prepare(event: Event, settings: PostHogSettings, ctx: StepContext) -> Event | None:
    """One ``batch`` item, or None (with the reason in ``ctx.notes``) when PostHog cannot
    take the event: no distinct id, or over PostHog's 1 MB per event."""
    who = a.distinct_id(event)
    if who is None:
        ctx.notes.append("posthog: no user.id, anonymous_id or correlation id for distinct_id")
        return None
    identity, distinct = who
    props: dict[str, Any] = a.properties(event, settings.properties)
    page = a.page(event)
    if "url" in page:
        props["$current_url"] = page["url"]
        _, host, path, _ = a.url_parts(page["url"])
        if host:
            props["$host"] = host
        if path:
            props["$pathname"] = path
    if "referrer" in page:
        props["$referrer"] = page["referrer"]
    if "title" in page:
        props["title"] = page["title"]
    device = a.device(event)
    if "browser" in device:
        props["$browser"] = device["browser"]
    if "os" in device:
        props["$os"] = device["os"]
    if device.get("type") in DEVICE_TYPES:
        props["$device_type"] = DEVICE_TYPES[device["type"]]
    ua = a.context_text(event, "user_agent")
    if ua is not None:
        props["$raw_user_agent"] = ua
    for key, value in a.campaign(event).items():
        props[f"utm_{'campaign' if key == 'name' else key}"] = value
    props.update(a.click_ids(event))
    ip = a.context_text(event, "ip")
    if ip is not None:
        props["$ip"] = ip
    else:
        props["$geoip_disable"] = True
    if _processes_person(identity, settings):
        email = a.hashed_identifier(event, "user.email")
        if email is not None:
            props["$set"] = {"email_sha256": email}
    else:
        props["$process_person_profile"] = False
    when = a.event_time(event)
    item: Event = {
        "event": settings.event_names.get(event["event"], event["event"]),
        "distinct_id": distinct,
        "properties": props,
        "uuid": a.stable_uuid("posthog", str(event["event_id"])),
    }
    if when is not None:
        item["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if a.json_size(item) > MAX_EVENT:
        ctx.notes.append("posthog: the event is over PostHog's 1 MB per event")
        return None
    return item


def build_request(items: Sequence[Event], settings: PostHogSettings) -> httpx.Request:
    body = orjson.dumps({"api_key": settings.api_key, "batch": list(items)})
    return httpx.Request("POST", settings.endpoint + BATCH_PATH, content=body,
                         headers={"Content-Type": "application/json",
                                  "User-Agent": USER_AGENT})


def classify(response: httpx.Response) -> Verdict:
    """200 ok; 401 permanent, naming ``settings.api_key`` (or the region: a key of the EU
    cloud is unknown to the US one); other 4xx permanent; 429 and 5xx retried."""
    if response.status_code == 401:
        return Verdict("permanent",
                       f"{http_detail(response)} (check settings.api_key: the project API key "
                       "phc_..., and settings.endpoint: the region the project lives in)",
                       401)
    return http_classify(response)


def fields(settings: PostHogSettings) -> list[FieldMap]:
    """Every field ``prepare`` can send, ours -> theirs (``*`` is any one key)."""
    out = [
        FieldMap("event", "event"),
        FieldMap("user.id", "distinct_id"),
        FieldMap("anonymous_id", "distinct_id"),
        FieldMap("correlation_id", "distinct_id"),
        FieldMap("event_id", "uuid"),
        FieldMap("time", "timestamp"),
        FieldMap("received_at", "timestamp"),
        FieldMap("context.page.url", "properties.$current_url"),
        FieldMap("context.page.url", "properties.$host"),
        FieldMap("context.page.url", "properties.$pathname"),
        FieldMap("context.page.referrer", "properties.$referrer"),
        FieldMap("context.page.title", "properties.title"),
        FieldMap("context.device.browser", "properties.$browser"),
        FieldMap("context.device.os", "properties.$os"),
        FieldMap("context.device.type", "properties.$device_type"),
        FieldMap("context.user_agent", "properties.$raw_user_agent"),
        FieldMap("context.ip", "properties.$ip"),
        FieldMap("context.ip", "properties.$geoip_disable"),
        FieldMap("user.id", "properties.$process_person_profile"),
        FieldMap("user.email", "properties.$set.email_sha256", hashed=True),
        FieldMap("context.click_ids.*", "properties.*"),
    ]
    out += [FieldMap(f"context.campaign.{k}", f"properties.utm_{'campaign' if k == 'name' else k}")
            for k in a.CAMPAIGN_KEYS]
    out += [FieldMap(f"properties.{ours}", f"properties.{theirs}")
            for ours, theirs in sorted(settings.properties.items())]
    out.append(FieldMap("properties.*", "properties.*"))
    return out


# -- relay forget -------------------------------------------------------------------------

# The private API lives on the app host, not on the ingestion host capture posts to.
PRIVATE_HOSTS = {"https://us.i.posthog.com": "https://us.posthog.com",
                 "https://eu.i.posthog.com": "https://eu.posthog.com"}
MANUAL = ("in PostHog, People: search the person by their distinct id (the user id), open"
          " them and choose Delete person, with their events")


@dataclass(frozen=True, slots=True)
class PostHogDeletion:
    """``deletion:``: a personal API key (``phx_...``, scope person:write) and the project."""

    personal_api_key: str = field(repr=False)
    project_id: str
    endpoint: str | None = None  # None: the app host of settings.endpoint's region


def parse_deletion(at: At) -> PostHogDeletion | None:
    if at.mapping(allowed=("personal_api_key", "project_id", "endpoint"),
                  required=("personal_api_key", "project_id")) is None:
        return None
    key = at.get("personal_api_key").string()
    project_at = at.get("project_id")
    project = project_at.string() if not isinstance(project_at.value, int) else str(
        project_at.value)
    if project is not None and not project.isdigit():
        project_at.error(BAD_VALUE, "a PostHog project id is a number",
                         "it is in the project's settings and its URLs")
        project = None
    endpoint = parse_endpoint(at.get("endpoint"), "") if at.get("endpoint").present else None
    if key is None or project is None:
        return None
    return PostHogDeletion(key, project, endpoint or None)


def plan_deletion(person: Person, settings: PostHogSettings, deletion: PostHogDeletion | None,
                  ctx: ForgetContext) -> Outcome | Call:
    """Find the person by ``distinct_id`` (``user.id``, as ``prepare`` sends it), then
    delete them with their events::

        GET  {api}/api/projects/{project}/persons/?distinct_id=u_42   Bearer phx_...
        DELETE {api}/api/projects/{project}/persons/{id}/?delete_events=true
    """
    distinct = d.user_id(person)
    if distinct is None:
        return d.not_keyed("PostHog", person, "distinct_id (user.id)")
    if deletion is None:
        return d.manual(MANUAL, "personal_api_key, project_id")
    api = deletion.endpoint or PRIVATE_HOSTS.get(settings.endpoint, settings.endpoint)
    base = f"{api}/api/projects/{deletion.project_id}/persons/"
    headers = {"Authorization": f"Bearer {deletion.personal_api_key}",
               "User-Agent": USER_AGENT}
    find = httpx.Request("GET", base, params={"distinct_id": distinct}, headers=headers)

    def found(response: httpx.Response) -> Outcome | Call:
        if response.status_code != 200:
            return d.failed(response, "check deletion.personal_api_key: a personal API key"
                            " with the person:write scope, and deletion.project_id")
        body = d.json_body(response)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            return Outcome("failed", "PostHog's answer has no results list")
        ids = [str(r.get("id") or r.get("uuid")) for r in results if isinstance(r, dict)]
        if not ids:
            return Outcome("deleted", "PostHog has no person with this distinct id: nothing"
                           " to delete")
        return Call(httpx.Request("DELETE", f"{base}{ids[0]}/",
                                  params={"delete_events": "true"}, headers=headers), deleted)

    def deleted(response: httpx.Response) -> Outcome:
        if response.status_code in (200, 202, 204, 404):
            return Outcome("requested", "person deleted; PostHog deletes their events in the"
                           " background (delete_events=true)")
        return d.failed(response, "the personal API key needs the person:write scope")

    return Call(find, found)


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    max_bytes=MAX_BODY - ENVELOPE_BYTES,
    vendor="PostHog",
    deletion=Deletion(parse_deletion, plan_deletion,
                      "the person and their events, by distinct_id (user.id)"),
    doc="PostHog capture (/batch/): events with a stable uuid, $ip only when kept.",
)
