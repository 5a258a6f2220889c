"""The ``purposes:``, ``sources:`` and ``events:`` sections: what may arrive, from whom,
and which consent covers it."""

from __future__ import annotations

import re
from typing import Any, cast

from relay.rules.codes import (
    BAD_AUTH,
    BAD_EVENT_NAME,
    BAD_ORIGIN,
    BAD_REGION,
    CONSTRAINT_MISMATCH,
    MIN_ABOVE_MAX,
    NEEDS_AUTHORITY,
    NOT_FOR_SOURCE_TYPE,
    SECOND_BROWSER,
    SEGMENT_WITHOUT_KEYS,
    UNKNOWN_FIELD_TYPE,
    WEBHOOK_WITHOUT_AUTH,
)
from relay.rules.diagnostics import suggest
from relay.rules.fields import At
from relay.rules.model import (
    BOT_ACTIONS,
    FIELD_TYPES,
    BearerAuth,
    Bots,
    Contract,
    Events,
    FieldSpec,
    HmacAuth,
    Purpose,
    Source,
)
from relay.rules.policy import check_secrets
from relay.rules.reader import Reader

PURPOSE_KEYS = ("description", "default", "gpc", "pending_window", "essential")
SOURCE_KEYS = ("type", "auth", "write_keys", "allowed_origins", "bots")
BOT_KINDS = ("crawlers", "headless")
CONTRACT_KEYS = (
    "version", "authority", "confirm_window", "enrich_from_browser", "properties",
    "additional_properties",
)
FIELD_KEYS = ("type", "required", "min", "max", "max_length", "pattern", "enum")

STATES = ("granted", "denied")
SOURCE_TYPES = ("browser", "webhook", "segment")
FALLBACKS = ("reject", "quarantine", "accept")
ADDITIONAL = ("drop", "keep", "reject")
REGION_GROUPS = ("*", "EU", "EEA", "UK")
_ISO_3166 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK
"""  # with XK (Kosovo), which CDNs send
COUNTRIES = frozenset(_ISO_3166.split())
TYPE_ALIASES = {
    "str": "string", "text": "string", "int": "integer", "float": "number", "double": "number",
    "decimal": "number", "bool": "boolean", "dict": "object", "map": "object", "list": "array",
}

_EVENT_NAME = re.compile(r"^[A-Za-z0-9 _.:/-]{1,128}$")
# An origin pattern: scheme, host (``*.`` for any subdomain, IPv6 in brackets), port or ``*``.
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://(?P<host>(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}|\*))?/?$"
)
_DEFAULT_PORT = {"http": "80", "https": "443"}


def purposes(r: Reader, section: At) -> dict[str, Purpose]:
    out: dict[str, Purpose] = {}
    for name, at in r.entries(section):
        if at.present and at.mapping(PURPOSE_KEYS) is None:
            continue
        gpc = at.get("gpc").choice(STATES)
        out[name] = Purpose(
            name,
            description=at.get("description").string("", allow_empty=True) or "",
            defaults=_regions(r, at.get("default")),
            gpc=cast(Any, gpc),
            pending_window=r.positive(at.get("pending_window"),
                                      Purpose(name).pending_window),
            essential=at.get("essential").boolean(False) or False,
        )
    return out


def _regions(r: Reader, at: At) -> dict[str, Any]:
    if not at.present:
        return {"*": "granted"}
    out: dict[str, Any] = {}
    for key, child in (at.mapping() or {}).items():
        if key in REGION_GROUPS or key in COUNTRIES:
            state = child.choice(STATES)
            if state is not None:
                out[key] = state
            continue
        if key in ("False", "True"):
            hint = 'YAML reads a bare NO as false; quote it: "NO"'
        elif key.upper() in REGION_GROUPS or key.upper() in COUNTRIES:
            hint = f"write it in capitals: '{key.upper()}'"
        else:
            hint = "use '*', EU, EEA, UK or a two-letter ISO 3166 country code like DE"
        r.rep.error(child.path, BAD_REGION, f"unknown region code '{key}'", hint, key=True)
    return out


def sources(r: Reader, section: At) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for name, at in r.entries(section):
        if at.mapping(SOURCE_KEYS, ("type",)) is None:
            continue
        kind = at.get("type").choice(SOURCE_TYPES)
        auth_at, keys_at = at.get("auth"), at.get("write_keys")
        auth = _auth(r, auth_at) if auth_at.present else None
        keys = r.secrets(keys_at, "write key") if keys_at.present else ()
        if kind is None:
            continue
        if kind == "webhook" and not auth_at.present:
            at.error(WEBHOOK_WITHOUT_AUTH, "a webhook source needs auth",
                     "add auth: {hmac: ${SECRET}} or auth: {bearer: ${TOKEN}}")
        if kind == "segment" and not keys_at.present:
            at.error(SEGMENT_WITHOUT_KEYS, "a segment source needs write_keys",
                     'add write_keys: ["${SEGMENT_WRITE_KEY}"]')
        origins_at, bots_at = at.get("allowed_origins"), at.get("bots")
        origins = _origins(origins_at) if origins_at.present else None
        bots = _bots(bots_at) if bots_at.present else Bots()
        for present, key, only in ((auth_at, "auth", ("webhook",)),
                                   (keys_at, "write_keys", ("segment",)),
                                   (origins_at, "allowed_origins", ("browser", "segment")),
                                   (bots_at, "bots", ("browser",))):
            if present.present and kind not in only:
                r.rep.error(present.path, NOT_FOR_SOURCE_TYPE,
                            f"{key} does not apply to a {kind} source",
                            f"only {' and '.join(only)} sources take {key}", key=True)
        browser = next((s for s in out.values() if s.type == "browser"), None)
        if kind == "browser" and browser is not None:
            at.get("type").error(SECOND_BROWSER,
                                 f"a second browser source (sources.{browser.name} is one)",
                                 "browsers post to one endpoint; keep one browser source")
        if kind == "webhook" and auth is not None:
            scheme = "hmac" if isinstance(auth, HmacAuth) else "bearer"
            check_secrets(r, name, auth_at.get(scheme),
                          "hmac secret" if scheme == "hmac" else "bearer token")
        if kind == "segment" and keys:
            check_secrets(r, name, keys_at, "write key")
        out[name] = Source(name, cast(Any, kind), auth, keys, origins, bots)
    return out


def origin_pattern(text: str) -> str | None:
    """An ``allowed_origins`` entry in its canonical form (lowercase, no default port, no
    trailing slash), or None when it is not one: ``HTTPS://Shop.example:443/`` ->
    ``https://shop.example``. ``*`` and ``null`` stand for themselves."""
    text = text.strip().lower()
    if text in ("*", "null"):
        return text
    m = _ORIGIN.match(text)
    if m is None:
        return None
    port = m.group("port")
    keep = f":{port}" if port and port != _DEFAULT_PORT[m.group("scheme")] else ""
    return f"{m.group('scheme')}://{m.group('host')}{keep}"


def _origins(at: At) -> tuple[str, ...]:
    out: list[str] = []
    items = [at] if isinstance(at.value, str) else at.items()
    for item in items:
        text = item.string()
        if text is None:
            continue
        pattern = origin_pattern(text)
        if pattern is None:
            item.error(BAD_ORIGIN, f"'{text}' is not an origin",
                       "an origin is scheme://host[:port] with no path, like "
                       "https://shop.example, https://*.shop.example or http://localhost:*; "
                       'or "*" for any site')
            continue
        out.append(pattern)
    return tuple(out)


def _bots(at: At) -> Bots:
    d = Bots()
    if isinstance(at.value, str):
        action = at.choice(BOT_ACTIONS)
        return Bots(cast(Any, action), cast(Any, action)) if action else d
    if at.mapping(BOT_KINDS) is None:
        return d
    return Bots(
        cast(Any, at.get("crawlers").choice(BOT_ACTIONS, d.crawlers) or d.crawlers),
        cast(Any, at.get("headless").choice(BOT_ACTIONS, d.headless) or d.headless),
    )


def _auth(r: Reader, at: At) -> HmacAuth | BearerAuth | None:
    if at.mapping(("hmac", "tolerance", "bearer")) is None:
        return None
    hmac, bearer, tolerance = at.get("hmac"), at.get("bearer"), at.get("tolerance")
    if hmac.present == bearer.present:
        at.error(BAD_AUTH, "auth needs exactly one of hmac or bearer",
                 "auth: {hmac: ${SECRET}, tolerance: 5m} or auth: {bearer: ${TOKEN}}")
        return None
    if bearer.present:
        if tolerance.present:
            r.rep.error(tolerance.path, BAD_AUTH, "tolerance applies only to hmac",
                        "remove it", key=True)
        tokens = r.secrets(bearer, "bearer token")
        return BearerAuth(tokens) if tokens else None
    secrets = r.secrets(hmac, "hmac secret")
    seconds = tolerance.duration()
    if not secrets:
        return None
    return HmacAuth(secrets) if seconds is None else HmacAuth(secrets, seconds)


def events(r: Reader, section: At) -> Events:
    contracts: dict[str, Contract] = {}
    fallback = "reject"
    names = r.entries(section, _EVENT_NAME, BAD_EVENT_NAME,
                      "1 to 128 letters, digits, spaces and _ . : / -", skip="*")
    if section.present and isinstance(section.value, dict) and "*" in section.value:
        fallback = section.get("*").choice(FALLBACKS, fallback) or fallback
    for name, at in names:
        contract = _contract(r, name, at)
        if contract is not None:
            contracts[name] = contract
    return Events(contracts, cast(Any, fallback))


def _contract(r: Reader, name: str, at: At) -> Contract | None:
    if not at.present:
        return Contract(name)
    if at.mapping(CONTRACT_KEYS) is None:
        return None
    d = Contract(name)
    authority_at = at.get("authority")
    authority = authority_at.string()
    if authority is not None:
        r.refer("authority", authority, authority_at)
    elif not authority_at.present:
        for key in ("confirm_window", "enrich_from_browser"):
            if at.get(key).present:
                r.rep.warning(at.get(key).path, NEEDS_AUTHORITY,
                              f"{key} has no effect without an authority",
                              "add authority: <a webhook or segment source>")
    enrich = r.dotted_list(at.get("enrich_from_browser"))
    props: dict[str, FieldSpec] = {}
    for field_name, spec in (at.get("properties").mapping() or {}).items() \
            if at.get("properties").present else ():
        parsed = _field_spec(r, spec)
        if parsed is not None:
            props[field_name] = parsed
    additional = at.get("additional_properties").choice(ADDITIONAL, d.additional_properties)
    return Contract(
        name,
        version=at.get("version").integer(d.version, minimum=1) or d.version,
        authority=authority,
        confirm_window=r.positive(at.get("confirm_window"), d.confirm_window),
        enrich_from_browser=enrich,
        properties=props,
        additional_properties=cast(Any, additional or d.additional_properties),
    )


def _field_spec(r: Reader, at: At) -> FieldSpec | None:
    if not at.present:
        return FieldSpec()
    if at.mapping(FIELD_KEYS) is None:
        return None
    kind = at.get("type").string()
    if kind is not None and kind not in FIELD_TYPES:
        hint = (f"did you mean '{TYPE_ALIASES[kind]}'?" if kind in TYPE_ALIASES
                else suggest(kind, FIELD_TYPES) or r.options(FIELD_TYPES))
        at.get("type").error(UNKNOWN_FIELD_TYPE, f"unknown field type '{kind}'", hint)
        kind = None
    low, high = at.get("min").number(), at.get("max").number()
    if low is not None and high is not None and low > high:
        at.get("min").error(MIN_ABOVE_MAX, f"min {low:g} is greater than max {high:g}",
                            "swap them")
    for key, types in (("min", ("number", "integer")), ("max", ("number", "integer")),
                       ("max_length", ("string", "array")), ("pattern", ("string",))):
        if kind is not None and kind not in types and at.get(key).present:
            r.rep.error(at.get(key).path, CONSTRAINT_MISMATCH,
                        f"{key} does not apply to a {kind} field",
                        f"it applies to {' and '.join(types)} fields", key=True)
    enum = at.get("enum")
    values: list[Any] = []
    for item in enum.items() if enum.present else ():
        if isinstance(item.value, dict | list):
            item.wrong_type("a string, number or boolean")
        else:
            values.append(item.value)
    return FieldSpec(
        type=cast(Any, kind),
        required=at.get("required").boolean(False) or False,
        min=low,
        max=high,
        max_length=at.get("max_length").integer(minimum=0),
        pattern=at.get("pattern").regex(),
        enum=tuple(values) if enum.present else None,
    )
