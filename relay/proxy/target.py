"""Where a proxied request goes: the route it matches and the one upstream URL it may reach.

Pure functions, no I/O. The upstream URL is built from the route's upstream (scheme, host and
port never come from the request) and a validated remainder of the request path, then
checked again after parsing: anything that could change the scheme, host or port or leave
the route's upstream path prefix is refused.

    >>> ph = ProxyRoute("ph", "/ph/", "https://eu.i.posthog.com",
    ...                 paths=(SubPath("static/", "https://eu-assets.i.posthog.com/static/"),))
    >>> match({"ph": ph}, "/ph/static/array.js")
    (ProxyRoute(name='ph', ...), 'static/array.js')
    >>> str(upstream_url(ph, "static/array.js", b"v=1"))
    'https://eu-assets.i.posthog.com/static/array.js?v=1'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from urllib.parse import quote

import httpx

from relay.pipeline.params import CLICK_ID_SET
from relay.pipeline.url import filter_query
from relay.rules.model import ProxyRoute

# What stays unencoded in a forwarded path segment: RFC 3986 pchar without '%' and '/'.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"
# Raw bytes that never reach an upstream: encoded '/', '\' and '.', and '\' itself. The
# decoded checks below would catch most of them; refusing the raw form keeps it obvious.
_FORBIDDEN_RAW = (b"%2f", b"%5c", b"%2e", b"\\")


class Refused(ValueError):
    """The request path or query cannot be forwarded safely (answered 400)."""


def match(routes: Mapping[str, ProxyRoute], path: str) -> tuple[ProxyRoute, str] | None:
    """The route for a (decoded, mount-relative) request path and the rest of the path after
    a prefix route's path ('' for an exact route). The longest matching route path wins."""
    best: tuple[ProxyRoute, str] | None = None
    for route in routes.values():
        if route.prefix:
            if path.startswith(route.path):
                rest = path[len(route.path):]
            else:
                continue
        elif path == route.path:
            rest = ""
        else:
            continue
        if best is None or len(route.path) > len(best[0].path):
            best = (route, rest)
    return best


def check_raw_path(raw_path: bytes) -> None:
    """Refuse encodings that could change the path's structure once decoded upstream."""
    lowered = raw_path.lower()
    for bad in _FORBIDDEN_RAW:
        if bad in lowered:
            raise Refused(f"the path may not contain {bad.decode()!r}")


def _encode_rest(rest: str) -> str:
    """The decoded remainder, checked segment by segment and encoded again."""
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in rest):
        raise Refused("the path has control characters or a backslash")
    segments = rest.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", "..") or (not seg and not last):
            raise Refused("the path has an empty, '.' or '..' segment")
    return "/".join(quote(seg, safe=_SEGMENT_SAFE) for seg in segments)


def _base_for(route: ProxyRoute, rest: str) -> tuple[str, str | None]:
    """(upstream base, rest to append) for a route; None: the base is the whole URL (an
    exact route, or a sub-path matched exactly)."""
    if not route.prefix:
        return route.upstream, None
    for sub in route.paths:  # longest first
        if sub.path.endswith("/") and rest.startswith(sub.path):
            return sub.upstream, rest[len(sub.path):]
        if rest == sub.path:
            return sub.upstream, None
    return route.upstream, rest


@functools.lru_cache(maxsize=1024)
def _parse_base(base: str) -> tuple[httpx.URL, str]:
    """A route's (or sub-path's) upstream, parsed once: (URL, its raw path without query)."""
    url = httpx.URL(base)
    return url, url.raw_path.split(b"?", 1)[0].decode("ascii")


def upstream_url(route: ProxyRoute, rest: str, query: bytes) -> httpx.URL:
    """The URL to request upstream for a matched route, its path remainder and the
    (already cleaned) raw query. Raises ``Refused``."""
    base, tail = _base_for(route, rest)
    parsed_base, base_path = _parse_base(base)
    path = base_path
    if tail is not None:
        base_path = base_path if base_path.endswith("/") else base_path + "/"
        path = base_path + _encode_rest(tail)
    queries = [q for q in (parsed_base.query, query) if q]
    text = f"{parsed_base.scheme}://{parsed_base.netloc.decode('ascii')}{path}"
    if queries:
        text += "?" + "&".join(q.decode("latin-1") for q in queries)
    url = httpx.URL(text)
    same = (url.scheme, url.host, url.port) == (parsed_base.scheme, parsed_base.host,
                                                parsed_base.port)
    if not same or not url.raw_path.startswith(base_path.encode("ascii")):
        raise Refused("the path would leave the route's upstream")
    return url


def query_filter(route: ProxyRoute, keep_click_ids: bool) -> Callable[[str], bool]:
    """Which (lowercased) query parameter names to remove, as the ``url`` and ``click_ids``
    steps decide for events: click ids unless kept, then the route's ``query`` options."""
    keep, drop = route.keep_params, route.drop_params

    def remove(name: str) -> bool:
        if name in CLICK_ID_SET:
            return not keep_click_ids and (keep is None or name not in keep)
        if keep is not None:
            return name not in keep
        return name in drop

    return remove


def clean_query(route: ProxyRoute, query: bytes, keep_click_ids: bool) -> bytes:
    """The request's raw query without click ids and the route's dropped parameters."""
    if not query or route.strip_query:
        return b""
    text = "?" + query.decode("latin-1")
    cleaned, _ = filter_query(text, query_filter(route, keep_click_ids))
    return cleaned[1:].encode("latin-1")
