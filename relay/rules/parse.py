"""Parse the raw rules tree into typed ``Rules``, reporting every mistake with its place.

``parse_rules(read_rules_dir("rules"))`` reads each section through ``At``: a mistake is
reported and reading goes on, so one run lists them all. Names used elsewhere (a purpose, a
source, an event, a pipeline, a destination) are recorded while reading and checked at the
end against the names the files define, so a definition with its own mistake does not also
make every user of it an error. Codes R2xx are this module's; docs/errors.md lists them all.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from relay.rules.diagnostics import Reporter, suggest
from relay.rules.fields import BAD_VALUE, MISSING_KEY, At
from relay.rules.model import (
    DEFAULT_CONSENT_MAP,
    FIELD_TYPES,
    OUTCOMES,
    Admin,
    BearerAuth,
    ClientIP,
    Contract,
    Cookie,
    Destination,
    Events,
    Expectation,
    FieldSpec,
    Given,
    HmacAuth,
    Limits,
    Matcher,
    Pipeline,
    ProxyRoute,
    Purpose,
    RateLimit,
    RelaySettings,
    Retry,
    Rules,
    RuleTest,
    Source,
    Step,
)
from relay.rules.source import UNSET_VARIABLE, RawRules

if TYPE_CHECKING:
    from relay.types import DestinationDef, StepDef

UNKNOWN_SECTION = "R201"
UNKNOWN_SOURCE = "R202"
UNKNOWN_PIPELINE = "R203"
UNKNOWN_PURPOSE = "R204"
UNKNOWN_EVENT = "R205"
UNKNOWN_DESTINATION = "R206"
UNKNOWN_STEP = "R207"
UNKNOWN_DESTINATION_TYPE = "R208"
BAD_NAME = "R209"
BAD_PREFIX = "R210"
BAD_STATE_URL = "R211"
BAD_SPOOL_URL = "R212"
INSECURE_SAME_SITE = "R213"
HOPS_IGNORED = "R214"  # a warning
BAD_HEADER = "R215"
BAD_REGION = "R220"
SECOND_BROWSER = "R224"
WEBHOOK_WITHOUT_AUTH = "R225"
SEGMENT_WITHOUT_KEYS = "R226"
BAD_AUTH = "R227"
NOT_FOR_SOURCE_TYPE = "R228"
EMPTY_SECRET = "R229"
BAD_EVENT_NAME = "R230"
UNKNOWN_FIELD_TYPE = "R231"
MIN_ABOVE_MAX = "R232"
CONSTRAINT_MISMATCH = "R233"
BAD_AUTHORITY = "R234"
BAD_FIELD_PATH = "R235"
NEEDS_AUTHORITY = "R236"  # a warning
NOT_A_STEP = "R240"
MISSING_PURPOSE = "R250"
BATCH_TOO_LARGE = "R251"
BAD_PROXY_PATH = "R260"
BAD_UPSTREAM = "R261"
BAD_PIN = "R262"
PATH_CLASH = "R263"
UNKNOWN_OUTCOME = "R270"
DUPLICATE_TEST = "R271"
NO_EXPECTATION = "R272"
FIELDS_NOT_DELIVERED = "R273"

SECTIONS = ("relay", "purposes", "sources", "events", "pipelines", "destinations", "proxy", "tests")
RELAY_KEYS = (
    "prefix", "client_ip", "country_header", "cookie", "dedup_window", "dedup_max_keys",
    "state", "spool", "limits", "admin", "rate_limit", "consent_map",
)
COOKIE_KEYS = ("name", "max_age", "path", "domain", "same_site", "secure", "secret")
LIMIT_KEYS = ("body_bytes", "batch_events", "properties", "depth", "string_chars")
PURPOSE_KEYS = ("description", "default", "gpc", "pending_window")
SOURCE_KEYS = ("type", "auth", "write_keys")
CONTRACT_KEYS = (
    "version", "authority", "confirm_window", "enrich_from_browser", "properties",
    "additional_properties",
)
FIELD_KEYS = ("type", "required", "min", "max", "max_length", "pattern", "enum")
DESTINATION_KEYS = (
    "type", "purpose", "events", "when", "pipeline", "settings", "retry", "timeout",
    "concurrency", "batch_size", "circuit_breaker", "legal_basis", "retention",
)
RETRY_KEYS = ("attempts", "max_backoff", "max_age", "base_backoff")
PROXY_KEYS = ("path", "upstream", "purpose", "forward_ip", "cookies", "cache", "pin")
TEST_KEYS = ("name", "given", "expect")
GIVEN_KEYS = ("source", "headers", "event")

STATES = ("granted", "denied")
SOURCE_TYPES = ("browser", "webhook", "segment")
FALLBACKS = ("reject", "quarantine", "accept")
ADDITIONAL = ("drop", "keep", "reject")
SAME_SITE = ("lax", "strict", "none")
FORWARD_IP = ("strip", "truncate", "keep")
# GDPR Art. 6(1); the datamap prints it.
LEGAL_BASES = (
    "consent", "contract", "legal_obligation", "vital_interests", "public_task",
    "legitimate_interests",
)
UNGATED_TYPES = ("file", "log")  # the only destination types that may omit a purpose
RESERVED_PATHS = ("r.js", "e", "hook", "v1", "healthz")  # the relay's own endpoints
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

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9 _.:/-]{1,128}$")
_URL_PATH = re.compile(r"^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DOTTED = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_PIN = re.compile(r"^sha256-([A-Za-z0-9+/]+={0,2})$")


def parse_rules(raw: RawRules) -> Rules:
    """Type the raw tree of ``read_rules_dir``; mistakes go to ``raw.reporter``.

    The result is only meaningful when the reporter holds no errors (``load_rules`` checks).
    """
    return _Parser(raw).rules()


@dataclass(frozen=True, slots=True)
class _Ref:
    kind: str  # purpose | source | authority | event | pipeline | destination
    name: str
    at: At
    key: bool = False  # report at the key (a name used as a mapping key) rather than the value


_REF_CODES = {
    "purpose": UNKNOWN_PURPOSE, "source": UNKNOWN_SOURCE, "authority": UNKNOWN_SOURCE,
    "event": UNKNOWN_EVENT, "pipeline": UNKNOWN_PIPELINE, "destination": UNKNOWN_DESTINATION,
}
_REF_SECTIONS = {
    "purpose": "purposes", "source": "sources", "authority": "sources", "event": "events",
    "pipeline": "pipelines", "destination": "destinations",
}


def _steps() -> Mapping[str, StepDef]:
    # Imported here, not at the top: relay.pipeline imports relay.rules.fields.
    from relay.pipeline import STEPS

    return STEPS


def _destination_types() -> Mapping[str, DestinationDef]:
    from relay.destinations import DESTINATIONS

    return DESTINATIONS


def _parse_when(at: At) -> tuple[Matcher, ...]:
    from relay.match import parse_when

    return parse_when(at)


def _options(choices: Any) -> str:
    return f"expected one of: {', '.join(sorted(choices))}"


class _Parser:
    def __init__(self, raw: RawRules) -> None:
        self.raw = raw
        self.rep: Reporter = raw.reporter
        self.refs: list[_Ref] = []
        self.root = At(raw.tree, (), self.rep)

    # -- helpers ------------------------------------------------------------------------

    def ref(self, kind: str, at: At) -> str | None:
        name = at.string()
        if name is not None:
            self.refs.append(_Ref(kind, name, at))
        return name

    def entries(
        self, at: At, pattern: re.Pattern[str] = _NAME, code: str = BAD_NAME,
        hint: str = "use letters, digits, '_', '.' and '-', at most 64 characters",
        skip: str = "",
    ) -> list[tuple[str, At]]:
        """A named section's entries; a key that is not a usable name is reported."""
        if not at.present:
            return []
        children = at.mapping()
        out: list[tuple[str, At]] = []
        for key, child in (children or {}).items():
            if key == skip:
                continue
            if pattern.match(key):
                out.append((key, child))
            else:
                self.rep.error(child.path, code, f"'{key}' is not a valid name", hint, key=True)
        return out

    def header(self, at: At) -> str | None:
        text = at.string()
        if text is not None and not _HEADER.match(text):
            at.error(BAD_HEADER, f"'{text}' is not an HTTP header name",
                     "use letters, digits and '-', like CF-IPCountry")
            return None
        return text

    def secrets(self, at: At, what: str) -> tuple[str, ...]:
        """A secret or a list of them (newest last); empty ones (an unset ``${VAR:-}``) drop."""
        items = at.items() if isinstance(at.value, list) else [at]
        found = tuple(s for s in (i.string(allow_empty=True) for i in items) if s)
        unset = any(d.code == UNSET_VARIABLE and d.path[: len(at.path)] == at.path
                    for d in self.rep.diagnostics)
        if not found and not unset:
            at.error(EMPTY_SECRET, f"the {what} is empty",
                     "set the environment variable it comes from")
        return found

    def positive(self, at: At, default: float) -> float:
        seconds = at.duration(default)
        if seconds is not None and seconds <= 0:
            at.error(BAD_VALUE, "must be more than zero")
            return default
        return default if seconds is None else seconds

    def url_path(self, at: At, code: str, example: str) -> str | None:
        text = at.string()
        if text is not None and not _URL_PATH.match(text):
            at.error(code, f"'{text}' is not a path that starts with '/' and does not end with '/'",
                     f"like {example}")
            return None
        return text

    # -- the whole -----------------------------------------------------------------------

    def rules(self) -> Rules:
        for key in self.raw.tree:
            if key not in SECTIONS:
                self.rep.error((key,), UNKNOWN_SECTION, f"unknown section '{key}'",
                               suggest(key, SECTIONS) or _options(SECTIONS), key=True)
        get = self.root.get
        rules = Rules(
            relay=self.relay(get("relay")),
            purposes=self.purposes(get("purposes")),
            sources=self.sources(get("sources")),
            events=self.events(get("events")),
            pipelines=self.pipelines(get("pipelines")),
            destinations=self.destinations(get("destinations")),
            proxy=self.proxy(get("proxy")),
            tests=self.tests(get("tests")),
            version=self.raw.digest,
            files=tuple(self.raw.files),
            secret_paths=frozenset(self.raw.secret_paths),
            raw=self.raw.tree,
        )
        self.check_refs(rules)
        return rules

    def check_refs(self, rules: Rules) -> None:
        for ref in self.refs:
            section = self.raw.tree.get(_REF_SECTIONS[ref.kind])
            known = {k for k in section if k != "*"} if isinstance(section, dict) else set()
            noun = "source" if ref.kind == "authority" else ref.kind
            if ref.name in known:
                source = rules.sources.get(ref.name)
                if ref.kind == "authority" and source is not None and source.type == "browser":
                    ref.at.error(BAD_AUTHORITY, f"source '{ref.name}' is a browser source",
                                 "the authority must be a webhook or segment source")
                continue
            if ref.kind == "event" and rules.events.fallback == "accept":
                continue  # events without a contract are accepted, so any name can arrive
            hint = suggest(ref.name, known) or (
                f"defined {noun}s: {', '.join(sorted(known))}" if known
                else f"no {noun}s are defined; add it under '{_REF_SECTIONS[ref.kind]}:'"
            )
            self.rep.error(ref.at.path, _REF_CODES[ref.kind], f"unknown {noun} '{ref.name}'",
                           hint, key=ref.key)

    # -- relay --------------------------------------------------------------------------

    def relay(self, at: At) -> RelaySettings:
        d = RelaySettings()
        if not at.present or at.mapping(RELAY_KEYS) is None:
            return d
        get = at.get
        prefix = self.url_path(get("prefix"), BAD_PREFIX, "/t")
        return RelaySettings(
            prefix=prefix or d.prefix,
            client_ip=self.client_ip(get("client_ip")),
            country_header=self.header(get("country_header")),
            cookie=self.cookie(get("cookie")),
            dedup_window=self.positive(get("dedup_window"), d.dedup_window),
            dedup_max_keys=get("dedup_max_keys").integer(d.dedup_max_keys, minimum=1)
            or d.dedup_max_keys,
            state=self.store_url(get("state"), d.state, spool=False),
            spool=self.store_url(get("spool"), d.spool, spool=True),
            limits=self.limits(get("limits")),
            admin=self.admin(get("admin")),
            rate_limit=self.rate_limit(get("rate_limit")),
            consent_map=self.consent_map(get("consent_map")),
        )

    def client_ip(self, at: At) -> ClientIP:
        if not at.present or at.mapping(("header", "trusted_hops")) is None:
            return ClientIP()
        header = self.header(at.get("header"))
        hops = at.get("trusted_hops")
        if hops.present and (header or "").lower() != "x-forwarded-for":
            self.rep.warning(hops.path, HOPS_IGNORED,
                             "trusted_hops only applies to the X-Forwarded-For header",
                             "remove it")
        return ClientIP(header, hops.integer(1, minimum=1) or 1)

    def cookie(self, at: At) -> Cookie:
        d = Cookie()
        if not at.present or at.mapping(COOKIE_KEYS) is None:
            return d
        name = at.get("name").string()
        if name is not None and not _HEADER.match(name):  # a cookie name is an HTTP token
            at.get("name").error(BAD_VALUE, f"'{name}' is not a valid cookie name",
                                 "use letters, digits, '_' and '-', like _rc")
            name = None
        path = at.get("path").string()
        if path is not None and not path.startswith("/"):
            at.get("path").error(BAD_VALUE, f"'{path}' does not start with '/'", "like /")
            path = None
        same_site = at.get("same_site").choice(SAME_SITE, d.same_site) or d.same_site
        secure = at.get("secure").boolean(d.secure)
        if same_site == "none" and secure is False:
            at.get("same_site").error(INSECURE_SAME_SITE,
                                      "browsers drop SameSite=None cookies that are not Secure",
                                      "set secure: true or same_site: lax")
        secret = at.get("secret")
        secrets: tuple[str, ...] = ()
        if secret.present:
            items = secret.items() if isinstance(secret.value, list) else [secret]
            secrets = tuple(s for s in (i.string(allow_empty=True) for i in items) if s)
        return Cookie(
            name=name or d.name,
            max_age=self.positive(at.get("max_age"), d.max_age),
            path=path or d.path,
            domain=at.get("domain").string(),
            same_site=cast(Any, same_site),
            secure=d.secure if secure is None else secure,
            secrets=secrets,
        )

    def store_url(self, at: At, default: str, *, spool: bool) -> str:
        text = at.string()
        if text is None:
            return default
        if text.startswith(("redis://", "rediss://", "unix://")) and len(text.split("://")[1]):
            return text
        if spool and text.startswith("sqlite:///") and text[len("sqlite:///"):].strip("/"):
            return text
        if not spool and text == "memory":
            return text
        if spool:
            at.error(BAD_SPOOL_URL, f"'{text}' is not a spool URL",
                     "use sqlite:///relative/path.db, sqlite:////absolute/path.db "
                     "or redis://host:6379/0")
        else:
            at.error(BAD_STATE_URL, f"'{text}' is not a state store",
                     "use memory or redis://host:6379/0")
        return default

    def limits(self, at: At) -> Limits:
        d = Limits()
        if not at.present or at.mapping(LIMIT_KEYS) is None:
            return d
        values = {k: at.get(k).integer(getattr(d, k), minimum=1) for k in LIMIT_KEYS}
        return Limits(**{k: getattr(d, k) if v is None else v for k, v in values.items()})

    def admin(self, at: At) -> Admin:
        d = Admin()
        if not at.present or at.mapping(("host", "port", "token")) is None:
            return d
        port = at.get("port").integer(d.port, minimum=0)
        if port is not None and port > 65535:
            at.get("port").error(BAD_VALUE, f"port {port} is above 65535")
            port = None
        token = at.get("token").string(allow_empty=True)
        return Admin(at.get("host").string(d.host) or d.host,
                     d.port if port is None else port, token or None)

    def rate_limit(self, at: At) -> RateLimit:
        d = RateLimit()
        if not at.present or at.mapping(("per_second", "burst")) is None:
            return d
        rate = at.get("per_second").number(d.per_second)
        if rate is not None and rate < 0:
            at.get("per_second").error(BAD_VALUE, "must not be negative", "0 turns it off")
            rate = None
        burst = at.get("burst").integer(d.burst, minimum=1)
        return RateLimit(d.per_second if rate is None else rate, burst or d.burst)

    def consent_map(self, at: At) -> dict[str, str]:
        merged = dict(DEFAULT_CONSENT_MAP)
        for key, child in (at.mapping() or {}).items() if at.present else ():
            if child.value is None:
                merged.pop(key, None)  # `ad_personalization: null` unmaps a default key
            elif (purpose := self.ref("purpose", child)) is not None:
                merged[key] = purpose
        return merged

    # -- purposes and sources --------------------------------------------------------------

    def purposes(self, section: At) -> dict[str, Purpose]:
        out: dict[str, Purpose] = {}
        for name, at in self.entries(section):
            if at.present and at.mapping(PURPOSE_KEYS) is None:
                continue
            gpc = at.get("gpc").choice(STATES)
            out[name] = Purpose(
                name,
                description=at.get("description").string("", allow_empty=True) or "",
                defaults=self.regions(at.get("default")),
                gpc=cast(Any, gpc),
                pending_window=self.positive(at.get("pending_window"),
                                             Purpose(name).pending_window),
            )
        return out

    def regions(self, at: At) -> dict[str, Any]:
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
            self.rep.error(child.path, BAD_REGION, f"unknown region code '{key}'", hint, key=True)
        return out

    def sources(self, section: At) -> dict[str, Source]:
        out: dict[str, Source] = {}
        for name, at in self.entries(section):
            if at.mapping(SOURCE_KEYS, ("type",)) is None:
                continue
            kind = at.get("type").choice(SOURCE_TYPES)
            auth_at, keys_at = at.get("auth"), at.get("write_keys")
            auth = self.auth(auth_at) if auth_at.present else None
            keys = self.secrets(keys_at, "write key") if keys_at.present else ()
            if kind is None:
                continue
            if kind == "webhook" and not auth_at.present:
                at.error(WEBHOOK_WITHOUT_AUTH, "a webhook source needs auth",
                         "add auth: {hmac: ${SECRET}} or auth: {bearer: ${TOKEN}}")
            if kind == "segment" and not keys_at.present:
                at.error(SEGMENT_WITHOUT_KEYS, "a segment source needs write_keys",
                         'add write_keys: ["${SEGMENT_WRITE_KEY}"]')
            for present, key, only in ((auth_at, "auth", "webhook"),
                                       (keys_at, "write_keys", "segment")):
                if present.present and kind != only:
                    self.rep.error(present.path, NOT_FOR_SOURCE_TYPE,
                                   f"{key} does not apply to a {kind} source",
                                   f"only {only} sources take {key}", key=True)
            browser = next((s for s in out.values() if s.type == "browser"), None)
            if kind == "browser" and browser is not None:
                at.get("type").error(SECOND_BROWSER,
                                     f"a second browser source (sources.{browser.name} is one)",
                                     "browsers post to one endpoint; keep one browser source")
            out[name] = Source(name, cast(Any, kind), auth, keys)
        return out

    def auth(self, at: At) -> HmacAuth | BearerAuth | None:
        if at.mapping(("hmac", "tolerance", "bearer")) is None:
            return None
        hmac, bearer, tolerance = at.get("hmac"), at.get("bearer"), at.get("tolerance")
        if hmac.present == bearer.present:
            at.error(BAD_AUTH, "auth needs exactly one of hmac or bearer",
                     "auth: {hmac: ${SECRET}, tolerance: 5m} or auth: {bearer: ${TOKEN}}")
            return None
        if bearer.present:
            if tolerance.present:
                self.rep.error(tolerance.path, BAD_AUTH, "tolerance applies only to hmac",
                               "remove it", key=True)
            tokens = self.secrets(bearer, "bearer token")
            return BearerAuth(tokens) if tokens else None
        secrets = self.secrets(hmac, "hmac secret")
        seconds = tolerance.duration()
        if not secrets:
            return None
        return HmacAuth(secrets) if seconds is None else HmacAuth(secrets, seconds)

    # -- events -------------------------------------------------------------------------

    def events(self, section: At) -> Events:
        contracts: dict[str, Contract] = {}
        fallback = "reject"
        names = self.entries(section, _EVENT_NAME, BAD_EVENT_NAME,
                             "1 to 128 letters, digits, spaces and _ . : / -", skip="*")
        if section.present and isinstance(section.value, dict) and "*" in section.value:
            fallback = section.get("*").choice(FALLBACKS, fallback) or fallback
        for name, at in names:
            contract = self.contract(name, at)
            if contract is not None:
                contracts[name] = contract
        return Events(contracts, cast(Any, fallback))

    def contract(self, name: str, at: At) -> Contract | None:
        if not at.present:
            return Contract(name)
        if at.mapping(CONTRACT_KEYS) is None:
            return None
        d = Contract(name)
        authority_at = at.get("authority")
        authority = authority_at.string()
        if authority is not None:
            self.refs.append(_Ref("authority", authority, authority_at))
        elif not authority_at.present:
            for key in ("confirm_window", "enrich_from_browser"):
                if at.get(key).present:
                    self.rep.warning(at.get(key).path, NEEDS_AUTHORITY,
                                     f"{key} has no effect without an authority",
                                     "add authority: <a webhook or segment source>")
        enrich = self.dotted_list(at.get("enrich_from_browser"))
        props: dict[str, FieldSpec] = {}
        for field_name, spec in (at.get("properties").mapping() or {}).items() \
                if at.get("properties").present else ():
            parsed = self.field_spec(spec)
            if parsed is not None:
                props[field_name] = parsed
        additional = at.get("additional_properties").choice(ADDITIONAL, d.additional_properties)
        return Contract(
            name,
            version=at.get("version").integer(d.version, minimum=1) or d.version,
            authority=authority,
            confirm_window=self.positive(at.get("confirm_window"), d.confirm_window),
            enrich_from_browser=enrich,
            properties=props,
            additional_properties=cast(Any, additional or d.additional_properties),
        )

    def dotted_list(self, at: At) -> tuple[str, ...]:
        out: list[str] = []
        for item in at.items() if at.present else ():
            text = item.string()
            if text is not None and not _DOTTED.match(text):
                item.error(BAD_FIELD_PATH, f"'{text}' is not a dotted field path",
                           "like context.page.url")
            elif text is not None:
                out.append(text)
        return tuple(out)

    def field_spec(self, at: At) -> FieldSpec | None:
        if not at.present:
            return FieldSpec()
        if at.mapping(FIELD_KEYS) is None:
            return None
        kind = at.get("type").string()
        if kind is not None and kind not in FIELD_TYPES:
            hint = (f"did you mean '{TYPE_ALIASES[kind]}'?" if kind in TYPE_ALIASES
                    else suggest(kind, FIELD_TYPES) or _options(FIELD_TYPES))
            at.get("type").error(UNKNOWN_FIELD_TYPE, f"unknown field type '{kind}'", hint)
            kind = None
        low, high = at.get("min").number(), at.get("max").number()
        if low is not None and high is not None and low > high:
            at.get("min").error(MIN_ABOVE_MAX, f"min {low:g} is greater than max {high:g}",
                                "swap them")
        for key, types in (("min", ("number", "integer")), ("max", ("number", "integer")),
                           ("max_length", ("string", "array")), ("pattern", ("string",))):
            if kind is not None and kind not in types and at.get(key).present:
                self.rep.error(at.get(key).path, CONSTRAINT_MISMATCH,
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

    # -- pipelines and destinations -----------------------------------------------------

    def pipelines(self, section: At) -> dict[str, Pipeline]:
        out: dict[str, Pipeline] = {}
        registry = _steps()
        for name, at in self.entries(section):
            steps: list[Step] = []
            for item in at.items() if at.present else ():
                if not isinstance(item.value, dict) or len(item.value) != 1:
                    item.error(NOT_A_STEP, "a step is a mapping with one key, the step kind",
                               "write it like '- ip: truncate'")
                    continue
                kind, value = next(iter(item.value.items()))
                options = At(value, (*item.path, kind), self.rep)
                if kind not in registry:
                    self.rep.error(options.path, UNKNOWN_STEP, f"unknown step '{kind}'",
                                   suggest(kind, registry) or _options(registry), key=True)
                    continue
                steps.append(Step(kind, registry[kind].parse(options), item.path))
            out[name] = Pipeline(name, tuple(steps))
        return out

    def destinations(self, section: At) -> dict[str, Destination]:
        out: dict[str, Destination] = {}
        registry = _destination_types()
        for name, at in self.entries(section):
            if at.mapping(DESTINATION_KEYS, ("type",)) is None:
                continue
            get = at.get
            kind = get("type").string()
            ddef = registry.get(kind) if kind is not None else None
            if kind is not None and ddef is None:
                near = suggest(kind, registry)
                get("type").error(UNKNOWN_DESTINATION_TYPE, f"unknown destination type '{kind}'",
                                  f"{near + ' ' if near else ''}known types: "
                                  f"{', '.join(sorted(registry))}")
            purpose = self.ref("purpose", get("purpose")) if get("purpose").present else None
            if not get("purpose").present and ddef is not None and kind not in UNGATED_TYPES:
                at.error(MISSING_PURPOSE, "missing required key 'purpose'",
                         "every destination except file and log is gated by a purpose")
            events = self.destination_events(get("events"))
            when = _parse_when(get("when")) if get("when").present else ()
            pipeline = self.ref("pipeline", get("pipeline")) if get("pipeline").present else None
            settings = ddef.parse_settings(get("settings")) if ddef is not None else None
            batch = get("batch_size").integer(minimum=1)
            if ddef is not None and batch is not None and batch > ddef.max_batch:
                get("batch_size").error(BATCH_TOO_LARGE,
                                        f"{kind} takes at most {ddef.max_batch} events a batch",
                                        f"use {ddef.max_batch} or less")
                batch = None
            breaker = get("circuit_breaker")
            if breaker.present:
                breaker.mapping(("failures", "cooldown"))
            d = Destination(name, kind or "", purpose)
            legal = get("legal_basis").choice(LEGAL_BASES)
            dest = Destination(
                name, kind or "", purpose, events, when, pipeline, settings,
                retry=self.retry(get("retry")),
                timeout=self.positive(get("timeout"), d.timeout),
                concurrency=get("concurrency").integer(d.concurrency, minimum=1) or d.concurrency,
                batch_size=batch,
                breaker_failures=breaker.get("failures").integer(d.breaker_failures, minimum=1)
                or d.breaker_failures,
                breaker_cooldown=self.positive(breaker.get("cooldown"), d.breaker_cooldown),
                legal_basis=legal,
                retention=get("retention").string(),
            )
            if ddef is not None:
                out[name] = dest
        return out

    def destination_events(self, at: At) -> tuple[str, ...] | None:
        if not at.present or at.value == "*":
            return None
        if isinstance(at.value, str):
            at = At([at.value], at.path, self.rep)  # one event name, as a list of one
        names: list[str] = []
        for item in at.items():
            name = item.string()
            if name == "*":
                return None
            if name is not None:
                self.refs.append(_Ref("event", name, item))
                names.append(name)
        return tuple(names)

    def retry(self, at: At) -> Retry:
        d = Retry()
        if not at.present or at.mapping(RETRY_KEYS) is None:
            return d
        base = self.positive(at.get("base_backoff"), d.base_backoff)
        cap = self.positive(at.get("max_backoff"), d.max_backoff)
        if base > cap:
            at.get("base_backoff").error(MIN_ABOVE_MAX,
                                         f"base_backoff {base:g}s is above max_backoff {cap:g}s",
                                         "lower base_backoff or raise max_backoff")
        return Retry(
            attempts=at.get("attempts").integer(d.attempts, minimum=1) or d.attempts,
            max_backoff=cap,
            max_age=self.positive(at.get("max_age"), d.max_age),
            base_backoff=base,
        )

    # -- proxy and tests ----------------------------------------------------------------

    def proxy(self, section: At) -> dict[str, ProxyRoute]:
        out: dict[str, ProxyRoute] = {}
        paths: dict[str, str] = {}
        for name, at in self.entries(section):
            if at.mapping(PROXY_KEYS, ("path", "upstream")) is None:
                continue
            path = self.url_path(at.get("path"), BAD_PROXY_PATH, "/lib/gtag.js")
            if path is not None and path.split("/")[1] in RESERVED_PATHS:
                at.get("path").error(PATH_CLASH, f"'{path}' is one of the relay's own endpoints",
                                     "pick another path, like /lib/...")
                path = None
            elif path is not None and path in paths:
                at.get("path").error(PATH_CLASH, f"'{path}' is also proxy.{paths[path]}.path",
                                     "give each route its own path")
            elif path is not None:
                paths[path] = name
            upstream = self.upstream(at.get("upstream"))
            purpose = self.ref("purpose", at.get("purpose")) if at.get("purpose").present else None
            forward = at.get("forward_ip").choice(FORWARD_IP, "strip")
            pin = self.pin(at.get("pin"))
            route = ProxyRoute(
                name, path or "", upstream or "", purpose, cast(Any, forward),
                at.get("cookies").string_list() or (), at.get("cache").duration(), pin,
            )
            if path is not None and upstream is not None:
                out[name] = route
        return out

    def upstream(self, at: At) -> str | None:
        text = at.string()
        if text is None:
            return None
        try:
            parts = urlsplit(text)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
            ok = ok and not parts.fragment and parts.username is None
        except ValueError:
            ok = False
        if not ok:
            at.error(BAD_UPSTREAM, f"'{text}' is not an http(s) URL with a host",
                     "like https://www.googletagmanager.com/gtag/js")
            return None
        return text

    def pin(self, at: At) -> str | None:
        text = at.string()
        if text is None:
            return None
        m = _PIN.match(text)
        try:
            ok = m is not None and len(base64.b64decode(m.group(1), validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            at.error(BAD_PIN, f"'{text}' is not a sha256 pin",
                     "write sha256- and the base64 SHA-256 of the upstream body, "
                     "like an integrity attribute")
            return None
        return text

    def tests(self, section: At) -> tuple[RuleTest, ...]:
        out: list[RuleTest] = []
        names: set[str] = set()
        for at in section.items() if section.present else ():
            if at.mapping(TEST_KEYS, TEST_KEYS) is None:
                continue
            name = at.get("name").string()
            if name is not None and name in names:
                at.get("name").error(DUPLICATE_TEST, f"two tests are named '{name}'",
                                     "give each test its own name")
            names.add(name or "")
            given_at = at.get("given")
            items = given_at.items() if isinstance(given_at.value, list) else [given_at]
            if not items:
                given_at.error(BAD_VALUE, "given needs at least one event")
            given = [g for g in (self.given(i) for i in items if i.present) if g is not None]
            expect = self.expect(at.get("expect"))
            if name is not None and expect is not None and len(given) == len(items):
                out.append(RuleTest(name, tuple(given), expect, at.path))
        return tuple(out)

    def given(self, at: At) -> Given | None:
        if at.mapping(GIVEN_KEYS, ("source", "event")) is None:
            return None
        source = self.ref("source", at.get("source"))
        headers: dict[str, str] = {}
        header_at = at.get("headers")
        for key, value in (header_at.mapping() or {}).items() if header_at.present else ():
            text = value.string(allow_empty=True)
            if text is not None:
                headers[key] = text
        event = at.get("event")
        if not isinstance(event.value, dict):
            event.wrong_type("a mapping (the event envelope)")
            return None
        return Given(source, event.value, headers) if source is not None else None

    def expect(self, at: At) -> dict[str, Expectation] | None:
        entries = at.mapping()
        if entries is None:
            return None
        if not entries:
            at.error(NO_EXPECTATION, "the test expects nothing",
                     "name each destination and its outcome, like {ga4: delivered}")
            return None
        out: dict[str, Expectation] = {}
        for destination, child in entries.items():
            self.refs.append(_Ref("destination", destination, child, key=True))
            outcome_at, fields = child, None
            if isinstance(child.value, dict):
                if child.mapping(("outcome", "fields"), ("outcome",)) is None:
                    continue
                outcome_at = child.get("outcome")
                fields = self.expected_fields(child.get("fields"))
            outcome = outcome_at.string()
            if outcome is not None and outcome not in OUTCOMES:
                outcome_at.error(UNKNOWN_OUTCOME, f"unknown outcome '{outcome}'",
                                 suggest(outcome, OUTCOMES) or _options(OUTCOMES))
                continue
            if outcome is None:
                if not outcome_at.present:
                    child.error(MISSING_KEY, "missing the expected outcome")
                continue
            if fields is not None and outcome != "delivered":
                self.rep.error(child.get("fields").path, FIELDS_NOT_DELIVERED,
                               f"fields can only be checked on a delivered copy, not {outcome}",
                               "remove fields or expect delivered", key=True)
            out[destination] = Expectation(cast(Any, outcome), fields)
        return out

    def expected_fields(self, at: At) -> dict[str, Any] | None:
        if not at.present:
            return None
        out: dict[str, Any] = {}
        for path, child in (at.mapping() or {}).items():
            if _DOTTED.match(path):
                out[path] = child.value
            else:
                self.rep.error(child.path, BAD_FIELD_PATH, f"'{path}' is not a dotted field path",
                               "like properties.value", key=True)
        return out

