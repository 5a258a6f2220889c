"""The ``relay:`` section: prefix, client address, cookie, stores, limits, admin, consent map."""

from __future__ import annotations

from typing import Any, cast

from relay.rules.codes import (
    BAD_LEDGER,
    BAD_PREFIX,
    BAD_SPOOL_LIMIT,
    BAD_SPOOL_URL,
    BAD_SPOOL_WAIT,
    BAD_STATE_URL,
    HOPS_IGNORED,
    INSECURE_SAME_SITE,
)
from relay.rules.fields import BAD_VALUE, At
from relay.rules.model import (
    DEFAULT_CONSENT_MAP,
    DEFAULT_SPOOL_WAIT_TIMEOUT,
    POSTGRES_PREFIXES,
    Admin,
    ClientIP,
    Cookie,
    Ledger,
    Limits,
    RateLimit,
    RelaySettings,
    Sample,
    SpoolWait,
)
from relay.rules.reader import Reader

RELAY_KEYS = (
    "prefix", "client_ip", "country_header", "cookie", "dedup_window", "dedup_max_keys",
    "state", "spool", "spool_claim_after", "spool_wait", "spool_max_bytes", "ledger", "sample",
    "limits", "admin", "rate_limit", "consent_map",
)
COOKIE_KEYS = ("name", "max_age", "path", "domain", "same_site", "secure", "secret")
LIMIT_KEYS = ("body_bytes", "batch_events", "properties", "depth", "string_chars",
              "body_seconds")
SAME_SITE = ("lax", "strict", "none")


def relay(r: Reader, at: At) -> RelaySettings:
    d = RelaySettings()
    if not at.present or at.mapping(RELAY_KEYS) is None:
        return d
    get = at.get
    prefix = r.url_path(get("prefix"), BAD_PREFIX, "/t")
    return RelaySettings(
        prefix=prefix or d.prefix,
        client_ip=_client_ip(r, get("client_ip")),
        country_header=r.header(get("country_header")),
        cookie=_cookie(r, get("cookie")),
        dedup_window=r.positive(get("dedup_window"), d.dedup_window),
        dedup_max_keys=get("dedup_max_keys").integer(d.dedup_max_keys, minimum=1)
        or d.dedup_max_keys,
        state=_store_url(r, get("state"), d.state, spool=False),
        spool=_store_url(r, get("spool"), d.spool, spool=True),
        spool_claim_after=r.positive(get("spool_claim_after"), d.spool_claim_after),
        spool_wait=_spool_wait(r, get("spool_wait")),
        spool_max_bytes=_spool_max_bytes(get("spool_max_bytes")),
        ledger=_ledger(r, get("ledger")),
        sample=_sample(get("sample")),
        limits=_limits(r, get("limits")),
        admin=_admin(r, get("admin")),
        rate_limit=_rate_limit(r, get("rate_limit")),
        consent_map=_consent_map(r, get("consent_map")),
    )


def _client_ip(r: Reader, at: At) -> ClientIP:
    if not at.present or at.mapping(("header", "trusted_hops")) is None:
        return ClientIP()
    header = r.header(at.get("header"))
    hops = at.get("trusted_hops")
    if hops.present and (header or "").lower() != "x-forwarded-for":
        r.rep.warning(hops.path, HOPS_IGNORED,
                      "trusted_hops only applies to the X-Forwarded-For header",
                      "remove it")
    return ClientIP(header, hops.integer(1, minimum=1) or 1)


def _cookie(r: Reader, at: At) -> Cookie:
    d = Cookie()
    if not at.present or at.mapping(COOKIE_KEYS) is None:
        return d
    name = at.get("name").string()
    if name is not None and not r.is_token(name):  # a cookie name is an HTTP token
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
        max_age=r.positive(at.get("max_age"), d.max_age),
        path=path or d.path,
        domain=at.get("domain").string(),
        same_site=cast(Any, same_site),
        secure=d.secure if secure is None else secure,
        secrets=secrets,
    )


SPOOL_MIN_BYTES = 1024 * 1024


def _spool_max_bytes(at: At) -> int | None:
    value = at.value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < SPOOL_MIN_BYTES:
        at.error(BAD_SPOOL_LIMIT, f"spool_max_bytes is a whole number of bytes, at least "
                 f"{SPOOL_MIN_BYTES} (1 MiB), got {value!r}", "like 1073741824 for 1 GiB")
        return None
    return value


def _store_url(r: Reader, at: At, default: str, *, spool: bool) -> str:
    text = at.string()
    if text is None:
        return default
    if text.startswith(("redis://", "rediss://", "unix://")) and len(text.split("://")[1]):
        return text
    if (spool and text.startswith("sqlite:///") and text[len("sqlite:///"):].strip("/")
            and not text.endswith("/")):  # a file, not a directory
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


def _spool_wait(r: Reader, at: At) -> SpoolWait | None:
    if not at.present:
        return None
    if not isinstance(at.value, dict):
        at.error(BAD_SPOOL_WAIT, "expected a mapping with replicas and timeout",
                 "spool_wait: {replicas: 1, timeout: 100ms}")
        return None
    if at.mapping(("replicas", "timeout"), ("replicas",)) is None:
        return None
    replicas = at.get("replicas").integer(None, minimum=1)
    timeout = at.get("timeout")
    seconds = timeout.duration(None)
    if seconds is not None and not 0 < seconds <= 10:
        timeout.error(BAD_SPOOL_WAIT, "the wait for Redis replicas is above 0 and at most 10s",
                      "like 100ms: every accepted request waits for it")
        seconds = None
    if replicas is None:
        return None
    return SpoolWait(replicas, DEFAULT_SPOOL_WAIT_TIMEOUT if seconds is None else seconds)


def _ledger(r: Reader, at: At) -> Ledger:
    d = Ledger()
    if not at.present:
        return d
    if at.value is False or at.value == "off":  # YAML reads a bare off as false
        return Ledger(url=None)
    if not isinstance(at.value, dict):
        at.error(BAD_LEDGER, "expected off, or a mapping with url and retention",
                 "ledger: {url: sqlite:///var/ledger.db, retention: 30d}, or ledger: off")
        return d
    if at.mapping(("url", "retention")) is None:
        return d
    url = at.get("url").string()
    if url is not None and not _ledger_url(url):
        at.get("url").error(BAD_LEDGER, "the ledger is a SQLite file or a PostgreSQL database",
                            "url: sqlite:///var/ledger.db (relative to --var), "
                            "sqlite:////abs/path/ledger.db, or "
                            "postgresql://user:password@host:5432/database (shared by replicas)")
        url = None
    return Ledger(url=url or d.url, retention=r.positive(at.get("retention"), d.retention))


def _ledger_url(url: str) -> bool:
    """A SQLite file (``sqlite:///path``) or a PostgreSQL connection URI (``postgresql://``
    or ``postgres://``, as libpq reads them)."""
    if url.startswith("sqlite:///"):
        return bool(url[len("sqlite:///"):].strip("/")) and not url.endswith("/")
    return url.startswith(POSTGRES_PREFIXES) and not any(c.isspace() for c in url)


def _sample(at: At) -> Sample | None:
    if not at.present or at.mapping(("path", "rate", "max_bytes"), ("path",)) is None:
        return None
    path = at.get("path").string()
    d = Sample("")
    rate = d.rate
    given = at.get("rate")
    if given.present:
        value = given.value
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
            rate = float(value)
        else:
            given.error(BAD_VALUE, "the sample rate is a fraction above 0 and at most 1",
                        "like 0.01 for one event in a hundred")
    size = at.get("max_bytes").integer(d.max_bytes, minimum=1) or d.max_bytes
    return Sample(path, rate, size) if path else None


def _limits(r: Reader, at: At) -> Limits:
    d = Limits()
    if not at.present or at.mapping(LIMIT_KEYS) is None:
        return d
    values = {k: at.get(k).integer(getattr(d, k), minimum=1) for k in LIMIT_KEYS}
    return Limits(**{k: getattr(d, k) if v is None else v for k, v in values.items()})


def _admin(r: Reader, at: At) -> Admin:
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


def _rate_limit(r: Reader, at: At) -> RateLimit:
    d = RateLimit()
    if not at.present or at.mapping(("per_second", "burst")) is None:
        return d
    rate = at.get("per_second").number(d.per_second)
    if rate is not None and rate < 0:
        at.get("per_second").error(BAD_VALUE, "must not be negative", "0 turns it off")
        rate = None
    burst = at.get("burst").integer(d.burst, minimum=1)
    return RateLimit(d.per_second if rate is None else rate, burst or d.burst)


def _consent_map(r: Reader, at: At) -> dict[str, str]:
    merged = dict(DEFAULT_CONSENT_MAP)
    for key, child in (at.mapping() or {}).items() if at.present else ():
        if child.value is None:
            merged.pop(key, None)  # `ad_personalization: null` unmaps a default key
        elif (purpose := r.ref("purpose", child)) is not None:
            merged[key] = purpose
    return merged
