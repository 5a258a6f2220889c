"""``matomo``: Matomo's Tracking HTTP API, in its bulk form.

    POST {endpoint}/matomo.php   Content-Type: application/json
    {"requests": ["?idsite=1&rec=1&apiv=1&_id=...&url=...&action_name=...&send_image=0", ...],
     "token_auth": "..."}                     # only when settings.token_auth is set
    -> 200 {"status": "success", "tracked": N, "invalid": M[, "invalid_indices": [...]]}

Each copy becomes one tracking request at ingest (``prepare``), kept as its parameters (a
JSON object) and written as a query string when the bulk request is built: ``_id`` (16
hex digits, derived from the anonymous id or the correlation id), ``uid`` from ``user.id``,
``url`` / ``urlref`` / ``action_name`` for page views, ``e_c`` / ``e_a`` / ``e_n`` /
``e_v`` for other events, ``idgoal=0`` with ``ec_id`` / ``revenue`` / ``ec_items`` for a
purchase, ``cdt`` from the event's time, ``ua`` only when the pipeline kept the user agent
and ``cip`` only when it kept the IP and a ``token_auth`` is set (Matomo refuses a request
whose ``cip`` it cannot authenticate). ``token_auth`` goes in the JSON body only, never in a URL.

Matomo names the requests it refused (``invalid_indices``) only to a super user's token;
with any other token, or none, it only counts them (``invalid``): see ``classify``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from relay.destinations import analytics as a
from relay.destinations import deletion as d
from relay.destinations.base import http_classify, http_detail, parse_endpoint, parse_name_map
from relay.rules.fields import At
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

TRACKER_PATH = "/matomo.php"
MAX_BATCH = 100
MAX_BYTES = 1_000_000  # keep each bulk request well under common PHP/web server limits
UNAUTHENTICATED_CDT = timedelta(hours=24)  # older cdt values need token_auth
EVENT_CATEGORY = "relay"  # e_c of custom events: the relay has no category of its own
# Parameters that carry no event data: the site, the API's flags, the kind of request.
CONSTANT_PARAMS = ("idsite", "rec", "apiv", "send_image", "ca", "idgoal", "e_c")
# Parameters only an authenticated request may carry.
TOKEN_ONLY = ("cip",)
USER_AGENT = f"relay/{__version__}"


@dataclass(frozen=True, slots=True)
class MatomoSettings:
    site_id: int
    endpoint: str
    token_auth: str | None = field(default=None, repr=False)
    event_names: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    debug: bool = False


def parse_settings(at: At) -> MatomoSettings | None:
    keys = ("site_id", "endpoint", "token_auth", "event_names", "properties", "debug")
    if at.mapping(allowed=keys, required=("site_id", "endpoint")) is None:
        return None
    site_id = at.get("site_id").integer(minimum=1)
    endpoint_at = at.get("endpoint")
    endpoint = parse_endpoint(endpoint_at, "") if endpoint_at.present else ""
    token = at.get("token_auth").string()
    names = parse_name_map(at.get("event_names"))
    props = parse_name_map(at.get("properties"), "property")
    debug = at.get("debug").boolean(False)
    if site_id is None or not endpoint:
        return None
    if endpoint.endswith((".php", "/matomo.php", "/piwik.php")):
        endpoint = endpoint.rsplit("/", 1)[0]
    return MatomoSettings(site_id, endpoint, token, names, props, bool(debug))


def visitor_id(value: str) -> str:
    """``_id``: 16 hex digits, the same for every event of one anonymous id or visit."""
    return hashlib.sha256(f"relay-matomo:{value}".encode()).hexdigest()[:16]


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _items(raw: Any) -> list[list[Any]]:
    """``properties.items`` -> ``ec_items``: [sku, name, category, price, quantity]."""
    out: list[list[Any]] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not isinstance(item, dict):
            continue
        sku = item.get("sku", item.get("item_id", item.get("id")))
        if not isinstance(sku, str | int) or isinstance(sku, bool):
            continue
        name = item.get("name", item.get("item_name", ""))
        category = item.get("category", item.get("item_category", ""))
        price = _number(item.get("price"))
        quantity = _number(item.get("quantity"))
        out.append([str(sku), name if isinstance(name, str) else "",
                    category if isinstance(category, str) else "",
                    price if price is not None else 0,
                    int(quantity) if quantity is not None else 1])
    return out


def prepare(event: Event, settings: MatomoSettings, ctx: StepContext) -> Event | None:
    """One tracking request's parameters, or None (with the reason) when Matomo cannot take
    it: no visitor to attribute it to, a purchase without an order id or value, an event
    older than 24 h without ``token_auth``."""
    who = a.distinct_id(event)
    if who is None:
        ctx.notes.append("matomo: no anonymous_id, correlation id or user.id to derive the "
                         "visitor (_id) from; Matomo would count the relay as the visitor")
        return None
    params: dict[str, Any] = {"idsite": settings.site_id, "rec": 1, "apiv": 1,
                              "_id": visitor_id(_visitor_key(event, who))}
    if who[0] == "user.id":
        params["uid"] = who[1]
    else:
        uid = a.distinct_id({"user": event.get("user")})
        if uid is not None and uid[0] == "user.id":
            params["uid"] = uid[1]
    page = a.page(event)
    if "url" in page:
        params["url"] = page["url"]
    if "referrer" in page:
        params["urlref"] = page["referrer"]
    name = event["event"]
    props = a.properties(event, settings.properties)
    if name == "page_view":
        if "title" in page:
            params["action_name"] = page["title"]
    elif name == "purchase":
        order = props.get("order_id")
        revenue = _number(props.get("value"))
        if not isinstance(order, str | int) or isinstance(order, bool) or revenue is None:
            ctx.notes.append("matomo: an ecommerce order needs properties.order_id and "
                             "properties.value")
            return None
        params.update({"idgoal": 0, "ec_id": str(order), "revenue": revenue})
        items = _items(props.get("items"))
        if items:
            params["ec_items"] = orjson.dumps(items).decode()
        for ours, theirs in (("tax", "ec_tx"), ("shipping", "ec_sh"), ("discount", "ec_dt")):
            if (amount := _number(props.get(ours))) is not None:
                params[theirs] = amount
    else:
        category = props.get("category")
        params["e_c"] = (category if isinstance(category, str) and category.strip()
                         else EVENT_CATEGORY)
        params["e_a"] = settings.event_names.get(name, name)
        label = props.get("label")
        if isinstance(label, str) and label.strip():
            params["e_n"] = label
        if (value := _number(props.get("value"))) is not None:
            params["e_v"] = value
        params["ca"] = 1
    when, received = a.event_time(event), a.received_time(event)
    if when is not None:
        if (settings.token_auth is None and received is not None
                and received - when > UNAUTHENTICATED_CDT):
            ctx.notes.append("matomo: the event is more than 24 h old, which Matomo takes "
                             "only with settings.token_auth")
            return None
        params["cdt"] = int(when.timestamp())
    ua = a.context_text(event, "user_agent")
    if ua is not None:
        params["ua"] = ua
    ip = a.context_text(event, "ip")
    if ip is not None and settings.token_auth is not None:
        params["cip"] = ip
    params["send_image"] = 0
    return params


def _visitor_key(event: Event, who: tuple[str, str]) -> str:
    """What ``_id`` derives from: the anonymous id, else the visit (correlation id), else the
    user id (Matomo itself derives the visitor from ``uid`` the same way)."""
    for path in ("anonymous_id", "correlation_id"):
        found = a.distinct_id({path: event.get(path)})
        if found is not None:
            return f"{path}:{found[1]}"
    return f"{who[0]}:{who[1]}"


def query(params: Event) -> str:
    """``"?idsite=1&rec=1&..."``: a tracking request as bulk tracking takes it, every value
    URL-encoded (spaces as %20)."""
    return "?" + urlencode({k: _text(v) for k, v in params.items()}, quote_via=quote)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_request(items: Sequence[Event], settings: MatomoSettings) -> httpx.Request:
    requests = []
    for item in items:
        params = dict(item)
        if settings.token_auth is None:  # a token removed since the copy was spooled
            for key in TOKEN_ONLY:
                params.pop(key, None)
        requests.append(query(params))
    body: dict[str, Any] = {"requests": requests}
    if settings.token_auth is not None:
        body["token_auth"] = settings.token_auth
    url = settings.endpoint + TRACKER_PATH + ("?debug=1" if settings.debug else "")
    return httpx.Request("POST", url, content=orjson.dumps(body),
                         headers={"Content-Type": "application/json",
                                  "User-Agent": USER_AGENT})


def _sent(response: httpx.Response) -> int | None:
    try:
        body = orjson.loads(response.request.content)
    except (ValueError, RuntimeError):
        return None
    requests = body.get("requests") if isinstance(body, dict) else None
    return len(requests) if isinstance(requests, list) else None


def classify(response: httpx.Response) -> Verdict:
    """200 ``{"status": "success", ...}``: ok; the requests in ``invalid_indices`` (Matomo
    names them to a super user's token) are dead-lettered alone. When Matomo only counts
    them: all of a batch refused, all dead-lettered; some of several, unnamed, the whole
    batch is dead-lettered with that said (replaying it may track the others again).
    401/403 permanent, naming ``settings.token_auth``; other 4xx permanent; 5xx retried."""
    status = response.status_code
    if status in (401, 403):
        return Verdict("permanent", f"{http_detail(response)} (check settings.token_auth: a "
                       "token of a user with write access to settings.site_id)", status)
    if status == 400:
        return Verdict("permanent", f"{http_detail(response)} (check settings.site_id and "
                       "settings.endpoint)", status)
    verdict = http_classify(response)
    if verdict.kind != "ok":
        return verdict
    try:
        body = response.json()
    except ValueError:
        return Verdict("permanent", f"{http_detail(response)} (not Matomo's bulk answer: "
                       "is settings.endpoint the Matomo base URL?)", status)
    if not isinstance(body, dict) or body.get("status") != "success":
        return Verdict("permanent", f"{http_detail(response)} (not Matomo's bulk answer: "
                       "is settings.endpoint the Matomo base URL?)", status)
    invalid = body.get("invalid")
    if not isinstance(invalid, int) or invalid <= 0:
        return Verdict("ok", status=status)
    why = f"HTTP {status}: matomo refused the tracking request as invalid"
    indices = body.get("invalid_indices")
    if isinstance(indices, list) and all(isinstance(i, int) for i in indices):
        return Verdict("ok", http_detail(response), status,
                       failed=tuple((i, why) for i in indices))
    sent = _sent(response)
    if sent is not None and invalid >= sent:
        every = (f"{why}, as every request of the batch (check settings.site_id, and "
                 "settings.token_auth: Matomo refuses cip and cdt older than 24 h from a "
                 "token it does not accept)")
        return Verdict("ok", http_detail(response), status,
                       failed=tuple((i, every) for i in range(sent)))
    return Verdict("permanent", f"{http_detail(response)} (matomo refused {invalid} request(s) "
                   "of this batch without naming them: it names them only to a super user's "
                   "settings.token_auth; the others were tracked, so replaying this batch "
                   "tracks them again; batch_size: 1 makes every refusal exact)", status)


def fields(settings: MatomoSettings) -> list[FieldMap]:
    """Every parameter ``prepare`` can send, ours -> theirs; ``CONSTANT_PARAMS`` carry no
    event data (``e_c`` is ``properties.category`` or the constant ``relay``)."""
    out = [
        FieldMap("anonymous_id", "_id", hashed=True),
        FieldMap("correlation_id", "_id", hashed=True),
        FieldMap("user.id", "uid"),
        FieldMap("context.page.url", "url"),
        FieldMap("context.page.referrer", "urlref"),
        FieldMap("user.id", "_id", hashed=True),
        FieldMap("context.page.title", "action_name"),
        FieldMap("event", "e_a"),
        FieldMap("properties.category", "e_c"),
        FieldMap("properties.label", "e_n"),
        FieldMap("properties.value", "e_v"),
        FieldMap("properties.order_id", "ec_id"),
        FieldMap("properties.value", "revenue"),
        FieldMap("properties.items", "ec_items"),
        FieldMap("properties.tax", "ec_tx"),
        FieldMap("properties.shipping", "ec_sh"),
        FieldMap("properties.discount", "ec_dt"),
        FieldMap("time", "cdt"),
        FieldMap("received_at", "cdt"),
        FieldMap("context.user_agent", "ua"),
        FieldMap("context.ip", "cip"),
    ]
    return out


# -- relay forget -------------------------------------------------------------------------

API_PATH = "/index.php"
MAX_ROUNDS = 20  # findDataSubjects answers at most 401 visits: find and delete until none
MANUAL = ("in Matomo, Administration > Privacy > GDPR Tools (admin or super user): find the"
          " data subjects by the segment userId==<their user id> and delete them")


@dataclass(frozen=True, slots=True)
class MatomoDeletion:
    """``deletion:``: the token_auth of a user with admin access to the site."""

    token_auth: str = field(repr=False)


def parse_deletion(at: At) -> MatomoDeletion | None:
    if at.mapping(allowed=("token_auth",), required=("token_auth",)) is None:
        return None
    token = at.get("token_auth").string()
    return MatomoDeletion(token) if token is not None else None


def _api(settings: MatomoSettings, deletion: MatomoDeletion, method: str,
         params: dict[str, str]) -> httpx.Request:
    """A Reporting API call, POSTed so that ``token_auth`` never sits in a URL."""
    form = {"module": "API", "method": method, "format": "JSON", **params,
            "token_auth": deletion.token_auth}
    return httpx.Request("POST", settings.endpoint + API_PATH, data=form,
                         headers={"User-Agent": USER_AGENT})


def plan_deletion(person: Person, settings: MatomoSettings, deletion: MatomoDeletion | None,
                  ctx: ForgetContext) -> Outcome | Call:
    """The visits of ``uid`` (``user.id``, as ``prepare`` sends it), found and deleted::

        POST {endpoint}/index.php  module=API&method=PrivacyManager.findDataSubjects
             &idSite=1&segment=userId==u_42&format=JSON&token_auth=...
        -> [{"idSite": 1, "idVisit": 7, ...}]
        POST {endpoint}/index.php  module=API&method=PrivacyManager.deleteDataSubjects
             &visits[0][idsite]=1&visits[0][idvisit]=7&format=JSON&token_auth=...
        -> {"log_visit": 1, ...}

    then found again, until Matomo finds none (it answers 401 visits at most at a time).
    """
    uid = d.user_id(person)
    if uid is None:
        return d.not_keyed("Matomo", person, "uid (user.id)")
    if deletion is None:
        return d.manual(MANUAL, "token_auth")
    # Segment values are URL-encoded inside the segment parameter (Matomo's segment syntax).
    segment = "userId==" + quote(uid, safe="")
    find = _api(settings, deletion, "PrivacyManager.findDataSubjects",
                {"idSite": str(settings.site_id), "segment": segment})
    total = [0]

    def found(response: httpx.Response) -> Outcome | Call:
        visits = _answer(response)
        if isinstance(visits, Outcome):
            return visits
        if not isinstance(visits, list):
            return Outcome("failed", "Matomo's findDataSubjects answer is not a list")
        pairs = [(v.get("idSite"), v.get("idVisit")) for v in visits if isinstance(v, dict)]
        if not pairs:
            return Outcome("deleted", f"{total[0]} visit(s) deleted" if total[0] else
                           "Matomo has no visit of this user id: nothing to delete")
        if total[0] >= MAX_ROUNDS * 401:
            return Outcome("failed", f"{total[0]} visits deleted and Matomo still finds more")
        params = {}
        for i, (site, visit) in enumerate(pairs):
            params[f"visits[{i}][idsite]"] = str(site)
            params[f"visits[{i}][idvisit]"] = str(visit)
        total[0] += len(pairs)
        return Call(_api(settings, deletion, "PrivacyManager.deleteDataSubjects", params),
                    deleted)

    def deleted(response: httpx.Response) -> Outcome | Call:
        answer = _answer(response)
        if isinstance(answer, Outcome):
            return answer
        return Call(find, found)  # again: more visits than one answer holds?

    return Call(find, found)


def _answer(response: httpx.Response) -> Any:
    """The API's JSON, or a ``failed`` Outcome: Matomo answers errors with HTTP 200 and
    ``{"result": "error", "message": ...}``."""
    if response.status_code != 200:
        return d.failed(response, "check deletion.token_auth")
    body = d.json_body(response)
    if isinstance(body, dict) and body.get("result") == "error":
        message = str(body.get("message", ""))[:200]
        return Outcome("failed", f"Matomo: {message} (deletion.token_auth needs admin access"
                       " to the site)")
    if body is None:
        return Outcome("failed", "Matomo's answer is not JSON (is settings.endpoint the"
                       " Matomo base URL?)")
    return body


DESTINATION = DestinationDef(
    parse_settings=parse_settings,
    max_batch=MAX_BATCH,
    build_request=build_request,
    classify=classify,
    prepare=prepare,
    fields=fields,
    max_bytes=MAX_BYTES,
    vendor="Matomo",
    deletion=Deletion(parse_deletion, plan_deletion,
                      "the visits of the user id (PrivacyManager, GDPR tools)"),
    doc="Matomo Tracking HTTP API (bulk): _id from the visit, cip only with token_auth.",
)
