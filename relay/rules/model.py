"""The typed, frozen configuration that rule files are parsed into.

Runtime code reads only these objects, never raw dicts. Defaults are named constants so the
README's rule reference and the parser agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from relay.rules.diagnostics import Diagnostic, Path

DEFAULT_PREFIX = "/t"
DEFAULT_COOKIE_NAME = "_rc"
DEFAULT_COOKIE_MAX_AGE = 30 * 60.0
DEFAULT_DEDUP_WINDOW = 48 * 3600.0
DEFAULT_STATE = "memory"
DEFAULT_SPOOL = "sqlite:///var/spool.db"
DEFAULT_SPOOL_CLAIM_AFTER = 30.0  # a Redis spool's copies idle this long are claimed by others
DEFAULT_SPOOL_WAIT_TIMEOUT = 0.1
DEFAULT_LEDGER = "sqlite:///var/ledger.db"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")  # a ledger every replica shares
DEFAULT_LEDGER_RETENTION = 30 * 24 * 3600.0
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 9901
DEFAULT_CONFIRM_WINDOW = 30 * 60.0
DEFAULT_PENDING_WINDOW = 10 * 60.0

# SPEC section 3 limits.
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_BATCH = 50
DEFAULT_MAX_PROPERTIES = 100
DEFAULT_MAX_DEPTH = 5
DEFAULT_MAX_STRING = 2048
DEFAULT_BODY_SECONDS = 30
DEFAULT_DEDUP_MAX_KEYS = 1_000_000
DEFAULT_RATE_PER_SECOND = (
    0.0  # off: behind a CDN without client_ip set, every user shares one address
)
DEFAULT_RATE_BURST = 100

# Retry policy defaults (SPEC section 5).
DEFAULT_ATTEMPTS = 10
DEFAULT_MAX_BACKOFF = 600.0
DEFAULT_MAX_AGE = 24 * 3600.0
DEFAULT_BASE_BACKOFF = 1.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 2
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_COOLDOWN = 30.0

# First-party proxy routes (issue 3).
DEFAULT_PROXY_TIMEOUT = 10.0
DEFAULT_PROXY_MAX_BODY = 64 * 1024
DEFAULT_PROXY_CONCURRENCY = 32
PROXY_QUEUE_FACTOR = 4  # queue.size defaults to this many waiters per concurrency slot
DEFAULT_PROXY_QUEUE_WAIT = 2.0
DEFAULT_PROXY_CACHE_MAX_BYTES = 2 * 1024 * 1024  # one cached object
PROXY_CACHE_TOTAL_BYTES = 32 * 1024 * 1024  # all cached objects of a process together
DEFAULT_PROXY_METHODS: tuple[str, ...] = ("GET", "POST")
# The vendors whose hit formats a proxy route can rewrite (``vendor:``); relay.proxy.vendors
# has one module per name.
PROXY_VENDORS: tuple[str, ...] = ("posthog", "mixpanel", "ga4", "plausible", "matomo", "segment")

# Google Consent Mode keys -> purposes (SPEC section 3); overridable with relay.consent_map.
DEFAULT_CONSENT_MAP: dict[str, str] = {
    "analytics_storage": "analytics",
    "ad_storage": "ads",
    "ad_user_data": "ads",
    "ad_personalization": "ads",
}

ConsentState = Literal["granted", "denied"]
SourceType = Literal["browser", "webhook", "segment"]
FieldType = Literal["string", "number", "integer", "boolean", "object", "array"]
Additional = Literal["drop", "keep", "reject"]
Fallback = Literal["reject", "quarantine", "accept"]
MatchOp = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "matches"]
Outcome = Literal["delivered", "suppressed", "dropped", "held", "duplicate", "rejected"]

FIELD_TYPES: tuple[FieldType, ...] = ("string", "number", "integer", "boolean", "object", "array")
MATCH_OPS: tuple[MatchOp, ...] = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "matches")
OUTCOMES: tuple[Outcome, ...] = (
    "delivered",
    "suppressed",
    "dropped",
    "held",
    "duplicate",
    "rejected",
)


@dataclass(frozen=True, slots=True)
class ClientIP:
    """Where the client address comes from. ``header=None`` means the TCP peer."""

    header: str | None = None
    trusted_hops: int = 1


@dataclass(frozen=True, slots=True)
class Cookie:
    name: str = DEFAULT_COOKIE_NAME
    max_age: float = DEFAULT_COOKIE_MAX_AGE
    path: str = "/"
    domain: str | None = None
    same_site: Literal["lax", "strict", "none"] = "lax"
    secure: bool = True
    # Newest last; the newest signs, all verify. Empty: ``relay serve`` generates one in var/.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    body_bytes: int = DEFAULT_MAX_BODY
    batch_events: int = DEFAULT_MAX_BATCH
    properties: int = DEFAULT_MAX_PROPERTIES
    depth: int = DEFAULT_MAX_DEPTH
    string_chars: int = DEFAULT_MAX_STRING
    body_seconds: int = DEFAULT_BODY_SECONDS  # the whole body must arrive within it (408)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per client address on the browser endpoint (``relay.state.ratelimit``);
    ``per_second`` 0 turns it off."""

    per_second: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_RATE_BURST


@dataclass(frozen=True, slots=True)
class Admin:
    host: str = DEFAULT_ADMIN_HOST
    port: int = DEFAULT_ADMIN_PORT
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Ledger:
    """``relay.ledger``: where the delivery ledger lives (None: ``ledger: off``) and how long
    it keeps what it recorded."""

    url: str | None = DEFAULT_LEDGER
    retention: float = DEFAULT_LEDGER_RETENTION


@dataclass(frozen=True, slots=True)
class SpoolWait:
    """``relay.spool_wait``: a Redis spool's put returns only once ``replicas`` Redis replicas
    have the write (``WAIT``), or fails after ``timeout`` seconds."""

    replicas: int
    timeout: float = DEFAULT_SPOOL_WAIT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Sample:
    """``relay.sample``: a minimized sample of incoming events for ``relay diff``."""

    path: str
    rate: float = 0.01
    max_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelaySettings:
    prefix: str = DEFAULT_PREFIX
    client_ip: ClientIP = field(default_factory=ClientIP)
    country_header: str | None = None
    cookie: Cookie = field(default_factory=Cookie)
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    dedup_max_keys: int = DEFAULT_DEDUP_MAX_KEYS
    state: str = DEFAULT_STATE
    spool: str = DEFAULT_SPOOL
    spool_claim_after: float = DEFAULT_SPOOL_CLAIM_AFTER
    spool_wait: SpoolWait | None = None  # off unless set
    spool_max_bytes: int | None = None  # no limit but the disk
    ledger: Ledger = field(default_factory=Ledger)
    sample: Sample | None = None  # off unless set
    limits: Limits = field(default_factory=Limits)
    admin: Admin = field(default_factory=Admin)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    consent_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CONSENT_MAP))


@dataclass(frozen=True, slots=True)
class Purpose:
    name: str
    description: str = ""
    # Region code (ISO country, or the groups EU / EEA / UK) -> state; "*" is everyone else.
    defaults: dict[str, ConsentState] = field(default_factory=lambda: {"*": "granted"})
    gpc: ConsentState | None = None
    pending_window: float = DEFAULT_PENDING_WINDOW
    # Strictly necessary for what the user asked for: only the policy lint reads it (R307).
    essential: bool = False


@dataclass(frozen=True, slots=True)
class HmacAuth:
    secrets: tuple[str, ...]
    tolerance: float = 300.0


@dataclass(frozen=True, slots=True)
class BearerAuth:
    tokens: tuple[str, ...]


BotAction = Literal["drop", "flag", "keep"]
BOT_ACTIONS: tuple[BotAction, ...] = ("drop", "flag", "keep")
# Declared crawlers (Googlebot, bingbot, ...) are never people: dropped, as GA4 does. Headless
# browsers may be the site's own synthetic checks and tests: flagged (context.bot), kept.
DEFAULT_CRAWLER_ACTION: BotAction = "drop"
DEFAULT_HEADLESS_ACTION: BotAction = "flag"


@dataclass(frozen=True, slots=True)
class Bots:
    """``sources.<browser>.bots``: what happens to events from a recognised bot."""

    crawlers: BotAction = DEFAULT_CRAWLER_ACTION
    headless: BotAction = DEFAULT_HEADLESS_ACTION


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    type: SourceType
    auth: HmacAuth | BearerAuth | None = None
    write_keys: tuple[str, ...] = ()
    # Browser sources: the page origins that may post (None: the relay's own host and
    # loopback pages; relay.ingest.origin), and what happens to bots' events.
    allowed_origins: tuple[str, ...] | None = None
    bots: Bots = field(default_factory=Bots)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: FieldType | None = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Contract:
    name: str
    version: int = 1
    authority: str | None = None  # a source name; browser copies are held until it confirms
    confirm_window: float = DEFAULT_CONFIRM_WINDOW
    enrich_from_browser: tuple[str, ...] = ()
    properties: dict[str, FieldSpec] = field(default_factory=dict)
    additional_properties: Additional = "keep"


@dataclass(frozen=True, slots=True)
class Events:
    contracts: dict[str, Contract] = field(default_factory=dict)
    fallback: Fallback = "reject"  # the "*" entry


@dataclass(frozen=True, slots=True)
class Step:
    """One pipeline step: ``kind`` names a function in ``relay.pipeline.STEPS``."""

    kind: str
    options: Any
    path: Path = ()


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class Matcher:
    path: str
    op: MatchOp
    value: Any = None  # a compiled pattern for ``matches``


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = DEFAULT_ATTEMPTS
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_age: float = DEFAULT_MAX_AGE
    base_backoff: float = DEFAULT_BASE_BACKOFF


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    type: str
    purpose: str | None  # None: not consent-gated (only for type file/log of non-personal data)
    events: tuple[str, ...] | None = None  # None means "*"
    when: tuple[Matcher, ...] = ()
    pipeline: str | None = None
    settings: Any = None  # typed by the destination module's parse_settings
    retry: Retry = field(default_factory=Retry)
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    batch_size: int | None = None  # None: the destination module's own limit
    breaker_failures: int = DEFAULT_BREAKER_FAILURES
    breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN
    legal_basis: str | None = None
    retention: str | None = None
    deletion: Any = None  # typed by the type's Deletion.parse; None: no deletion settings


@dataclass(frozen=True, slots=True)
class SubPath:
    """Within a prefix route, a sub-path sent to another upstream base.

    ``path`` is relative to the route's path; it ends with ``/`` for a subtree (whose rest is
    appended to ``upstream``) and is matched exactly otherwise.
    """

    path: str
    upstream: str


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """A first-party proxy route. ``path`` ending with ``/`` forwards the whole subtree."""

    name: str
    path: str
    upstream: str
    purpose: str | None = None
    forward_ip: Literal["strip", "truncate", "keep"] = "strip"
    cookies: tuple[str, ...] = ()  # names or globs, both ways
    cache: float | None = None  # seconds; GET responses kept in memory
    pin: str | None = None  # "sha256-<base64>" of the cached script
    paths: tuple[SubPath, ...] = ()
    user_agent: Literal["pass", "generalize", "strip"] = "generalize"
    forward_country: str | None = None  # the header name the CDN country is sent under
    keep_params: frozenset[str] | None = None  # query: None keeps all but drop_params
    drop_params: frozenset[str] = frozenset()
    strip_query: bool = False
    click_ids: str | None = None  # keep click-id parameters only when this purpose is granted
    cache_max_bytes: int = DEFAULT_PROXY_CACHE_MAX_BYTES
    timeout: float = DEFAULT_PROXY_TIMEOUT
    max_body: int = DEFAULT_PROXY_MAX_BODY
    concurrency: int = DEFAULT_PROXY_CONCURRENCY
    queue_size: int | None = None  # requests waiting for a slot; None: PROXY_QUEUE_FACTOR x
    queue_wait: float = DEFAULT_PROXY_QUEUE_WAIT  # longest wait (never past ``timeout``)
    methods: tuple[str, ...] = DEFAULT_PROXY_METHODS
    vendor: str | None = None  # one of PROXY_VENDORS: the body is decoded and cleaned
    pipeline: str | None = None  # a pipeline name, run on the vendor's hits (needs vendor)

    @property
    def prefix(self) -> bool:
        return self.path.endswith("/")

    @property
    def waiters(self) -> int:
        return PROXY_QUEUE_FACTOR * self.concurrency if self.queue_size is None else self.queue_size

    @property
    def wait(self) -> float:
        return min(self.queue_wait, self.timeout)


@dataclass(frozen=True, slots=True)
class Expectation:
    outcome: Outcome
    fields: dict[str, Any] | None = None  # dotted path -> exact value sent


@dataclass(frozen=True, slots=True)
class Given:
    source: str
    event: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleTest:
    name: str
    given: tuple[Given, ...]  # expectations are about the last one
    expect: dict[str, Expectation]
    path: Path = ()


@dataclass(frozen=True, slots=True)
class Rules:
    relay: RelaySettings = field(default_factory=RelaySettings)
    purposes: dict[str, Purpose] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    events: Events = field(default_factory=Events)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)
    proxy: dict[str, ProxyRoute] = field(default_factory=dict)
    tests: tuple[RuleTest, ...] = ()
    version: str = ""  # a digest of the rule files' contents
    files: tuple[str, ...] = ()
    secret_paths: frozenset[Path] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The ${VAR} names each substituted value came from (relay.rules.source.RawRules).
    variables: dict[Path, tuple[str, ...]] = field(default_factory=dict, compare=False,
                                                   repr=False)
    # Policy warnings (relay.rules.policy): what validates but must not face the internet.
    policy: tuple[Diagnostic, ...] = ()
