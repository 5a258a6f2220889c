"""The ``proxy:`` section: first-party routes to vendor scripts and hit endpoints."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from relay.rules.codes import BAD_PIN, BAD_PROXY_PATH, BAD_UPSTREAM, PATH_CLASH
from relay.rules.fields import At
from relay.rules.model import ProxyRoute

if TYPE_CHECKING:
    from relay.rules.parse import Reader

PROXY_KEYS = ("path", "upstream", "purpose", "forward_ip", "cookies", "cache", "pin")
FORWARD_IP = ("strip", "truncate", "keep")
RESERVED_PATHS = ("r.js", "e", "hook", "v1", "healthz")  # the relay's own endpoints

_PIN = re.compile(r"^sha256-([A-Za-z0-9+/]+={0,2})$")


def routes(r: Reader, section: At) -> dict[str, ProxyRoute]:
    out: dict[str, ProxyRoute] = {}
    paths: dict[str, str] = {}
    for name, at in r.entries(section):
        if at.mapping(PROXY_KEYS, ("path", "upstream")) is None:
            continue
        path = r.url_path(at.get("path"), BAD_PROXY_PATH, "/lib/gtag.js")
        if path is not None and path.split("/")[1] in RESERVED_PATHS:
            at.get("path").error(PATH_CLASH, f"'{path}' is one of the relay's own endpoints",
                                 "pick another path, like /lib/...")
            path = None
        elif path is not None and path in paths:
            at.get("path").error(PATH_CLASH, f"'{path}' is also proxy.{paths[path]}.path",
                                 "give each route its own path")
        elif path is not None:
            paths[path] = name
        upstream = _upstream(r, at.get("upstream"))
        purpose = r.ref("purpose", at.get("purpose")) if at.get("purpose").present else None
        forward = at.get("forward_ip").choice(FORWARD_IP, "strip")
        pin = _pin(r, at.get("pin"))
        route = ProxyRoute(
            name, path or "", upstream or "", purpose, cast(Any, forward),
            at.get("cookies").string_list() or (), at.get("cache").duration(), pin,
        )
        if path is not None and upstream is not None:
            out[name] = route
    return out


def _upstream(r: Reader, at: At) -> str | None:
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


def _pin(r: Reader, at: At) -> str | None:
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
