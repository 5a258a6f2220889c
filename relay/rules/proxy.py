"""The ``proxy:`` section: first-party routes to vendor scripts and hit endpoints.

    proxy:
      gtag: {path: /lib/gtag.js, upstream: "https://www.googletagmanager.com/gtag/js", cache: 1h}
      ph:                                   # a prefix route: the whole /ph/ subtree
        path: /ph/
        upstream: "https://eu.i.posthog.com"
        paths: {"static/": "https://eu-assets.i.posthog.com/static/"}
        purpose: analytics

``relay.proxy`` serves them; the README's proxy section explains every key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, cast
from urllib.parse import urlsplit

from relay.rules.codes import (
    BAD_PIN,
    BAD_PIN_USE,
    BAD_PROXY_PATH,
    BAD_PROXY_SUBPATH,
    BAD_UPSTREAM,
    CACHE_NOT_GET,
    COUNTRY_WITHOUT_HEADER,
    PATH_CLASH,
    PIPELINE_WITHOUT_VENDOR,
    UNKNOWN_VENDOR,
)
from relay.rules.diagnostics import suggest
from relay.rules.fields import BAD_VALUE, UNKNOWN_CHOICE, At
from relay.rules.model import (
    DEFAULT_PROXY_QUEUE_WAIT,
    PROXY_CACHE_TOTAL_BYTES,
    PROXY_VENDORS,
    ProxyRoute,
    SubPath,
)
from relay.rules.reader import Reader

PROXY_KEYS = (
    "path", "upstream", "paths", "purpose", "forward_ip", "user_agent", "forward_country",
    "cookies", "query", "click_ids", "cache", "cache_max_bytes", "pin", "timeout", "max_body",
    "concurrency", "queue", "methods", "vendor", "pipeline",
)
FORWARD_IP = ("strip", "truncate", "keep")
USER_AGENT = ("pass", "generalize", "strip")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
RESERVED_PATHS = ("r.js", "e", "hook", "v1", "healthz")  # the relay's own endpoints

# RFC 3986 path characters without '%': a route path is written plainly.
_SEGMENT = r"[A-Za-z0-9._~!$&'()*+,;=:@-]+"
_PATH = re.compile(rf"^/{_SEGMENT}(/{_SEGMENT})*/?$")
_SUBPATH = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*/?$")
_PIN = re.compile(r"^sha256-([A-Za-z0-9+/]+={0,2})$")


def _dots(path: str) -> bool:
    return any(seg in (".", "..") for seg in path.split("/"))


def routes(r: Reader, section: At) -> dict[str, ProxyRoute]:
    out: dict[str, ProxyRoute] = {}
    paths: dict[str, str] = {}
    country_header = r.root.get("relay").get("country_header").value
    for name, at in r.entries(section):
        if at.mapping(PROXY_KEYS, ("path", "upstream")) is None:
            continue
        get = at.get
        path = _path(get("path"))
        if path is not None and path.split("/")[1] in RESERVED_PATHS:
            get("path").error(PATH_CLASH, f"'{path}' is one of the relay's own endpoints",
                              "pick another path, like /lib/...")
            path = None
        elif path is not None and path in paths:
            get("path").error(PATH_CLASH, f"'{path}' is also proxy.{paths[path]}.path",
                              "give each route its own path")
        elif path is not None:
            paths[path] = name
        prefix = path is not None and path.endswith("/")
        upstream = _upstream(get("upstream"), base=prefix)
        subpaths = _subpaths(get("paths"), prefix) if get("paths").present else ()
        purpose = r.ref("purpose", get("purpose")) if get("purpose").present else None
        methods = _methods(get("methods"))
        cache = get("cache").duration()
        if cache is not None and "GET" not in methods:
            get("cache").error(CACHE_NOT_GET, "cache applies to GET, which the route refuses",
                               "add GET to methods or remove cache")
        pin = _pin(get("pin"))
        if pin is not None and (cache is None or prefix):
            get("pin").error(BAD_PIN_USE, "a pin is checked on one cached script",
                             "use it with cache: on a route whose path does not end with '/'")
        country = r.header(get("forward_country"))
        if country is not None and not country_header:
            r.rep.warning(get("forward_country").path, COUNTRY_WITHOUT_HEADER,
                          "forward_country has no effect without relay.country_header",
                          "set relay.country_header, like CF-IPCountry")
        vendor = _vendor(get("vendor"))
        pipeline = r.ref("pipeline", get("pipeline")) if get("pipeline").present else None
        if pipeline is not None and vendor is None and not get("vendor").present:
            get("pipeline").error(
                PIPELINE_WITHOUT_VENDOR, "a pipeline runs on a vendor's hits, and the route "
                "names no vendor",
                f"add vendor: (one of {', '.join(PROXY_VENDORS)}) so the relay can read the "
                "bodies, or remove pipeline")
        d = ProxyRoute(name, "", "")
        route = ProxyRoute(
            name, path or "", upstream or "", purpose,
            forward_ip=cast(Any, get("forward_ip").choice(FORWARD_IP, d.forward_ip)),
            cookies=get("cookies").string_list() or (),
            cache=cache,
            pin=pin,
            paths=subpaths,
            user_agent=cast(Any, get("user_agent").choice(USER_AGENT, d.user_agent)),
            forward_country=country,
            click_ids=_click_ids(r, get("click_ids")),
            cache_max_bytes=_cache_max_bytes(get("cache_max_bytes"), d.cache_max_bytes),
            timeout=r.positive(get("timeout"), d.timeout),
            max_body=get("max_body").integer(d.max_body, minimum=0) or 0,
            concurrency=get("concurrency").integer(d.concurrency, minimum=1) or d.concurrency,
            **_queue(r, get("queue")),
            methods=methods,
            vendor=vendor,
            pipeline=pipeline,
            **_query(r, get("query")),
        )
        if path is not None and upstream is not None:
            out[name] = route
    return out


def _queue(r: Reader, at: At) -> dict[str, Any]:
    """``queue: {size: N, wait: 2s}``: how many requests may wait for a slot, and how long."""
    if not at.present or at.mapping(("size", "wait")) is None:
        return {}
    out: dict[str, Any] = {}
    if at.get("size").present:
        out["queue_size"] = at.get("size").integer(None, minimum=0)
        if out["queue_size"] is None:
            del out["queue_size"]
    if at.get("wait").present:
        out["queue_wait"] = r.positive(at.get("wait"), DEFAULT_PROXY_QUEUE_WAIT)
    return out


def _vendor(at: At) -> str | None:
    text = at.string()
    if text is not None and text not in PROXY_VENDORS:
        at.error(UNKNOWN_VENDOR, f"unknown vendor '{text}'",
                 suggest(text, PROXY_VENDORS)
                 or f"the relay reads the hits of: {', '.join(PROXY_VENDORS)}")
        return None
    return text


def _path(at: At) -> str | None:
    text = at.string()
    if text is not None and (not _PATH.match(text) or _dots(text)):
        at.error(BAD_PROXY_PATH, f"'{text}' is not a route path",
                 "start with '/', like /lib/gtag.js; end with '/' to forward a subtree, "
                 "like /ph/ (no '%', '.' or '..' segments)")
        return None
    return text


def _upstream(at: At, *, base: bool) -> str | None:
    text = at.string()
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        ok = ok and not parts.fragment and parts.username is None
        ok = ok and not any(c.isspace() or c == "\\" for c in text)
    except ValueError:
        ok = False
    if not ok:
        at.error(BAD_UPSTREAM, f"'{text}' is not an http(s) URL with a host",
                 "like https://www.googletagmanager.com/gtag/js")
        return None
    if base and parts.query:
        at.error(BAD_UPSTREAM, f"'{text}' has a query, but sub-paths are appended to it",
                 "remove the query, or route one path without a trailing '/'")
        return None
    return text


def _subpaths(at: At, prefix: bool) -> tuple[SubPath, ...]:
    entries = at.mapping()
    if entries is None:
        return ()
    if not prefix:
        at.error(BAD_PROXY_SUBPATH, "paths needs a prefix route",
                 "end the route's path with '/', like /ph/")
        return ()
    out: list[SubPath] = []
    for key, child in entries.items():
        if not _SUBPATH.match(key) or _dots(key):
            at.rep.error(child.path, BAD_PROXY_SUBPATH, f"'{key}' is not a sub-path",
                         "relative to the route's path, like static/ (a subtree) or "
                         "decide (one path)", key=True)
            continue
        upstream = _upstream(child, base=key.endswith("/"))
        if upstream is not None:
            out.append(SubPath(key, upstream))
    # Longest first: the most specific sub-path wins.
    return tuple(sorted(out, key=lambda s: -len(s.path)))


def _methods(at: At) -> tuple[str, ...]:
    if not at.present:
        return ProxyRoute("", "", "").methods
    out: list[str] = []
    for item in at.items() if isinstance(at.value, list) else [at]:
        text = item.string()
        if text is None:
            continue
        if text.upper() not in METHODS:
            item.error(UNKNOWN_CHOICE, f"unknown method '{text}'",
                       f"expected one of: {', '.join(METHODS)}")
        elif text.upper() not in out:
            out.append(text.upper())
    return tuple(out) if out else ProxyRoute("", "", "").methods


def _query(r: Reader, at: At) -> dict[str, Any]:
    if not at.present:
        return {}
    options = r.catalog.steps["url"].parse(at)  # the url step's options
    return {"keep_params": options.keep_params, "drop_params": options.drop_params,
            "strip_query": options.strip_query}


def _click_ids(r: Reader, at: At) -> str | None:
    if not at.present:
        return None
    keep_for: str | None = r.catalog.steps["click_ids"].parse(at).keep_for  # the step's own
    if keep_for is not None:
        r.refer("purpose", keep_for, at.get("keep_for"))
    return keep_for


def _cache_max_bytes(at: At, default: int) -> int:
    size = at.integer(default, minimum=1)
    if size is not None and size > PROXY_CACHE_TOTAL_BYTES:
        at.error(BAD_VALUE, f"{size} bytes is above the cache's total of "
                 f"{PROXY_CACHE_TOTAL_BYTES} bytes", "scripts are small; use the default")
        return default
    return default if size is None else size


def _pin(at: At) -> str | None:
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
