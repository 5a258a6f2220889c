"""``url``: remove query parameters from ``context.page.url``, ``referrer`` and ``search``.

    - url: {keep_params: [utm_source, utm_medium, utm_campaign]}   # everything else goes
    - url: {drop_params: [email, token]}                           # these (and click ids) go
    - url: strip_query                                             # query and fragment go

Ad click ids (``CLICK_ID_PARAMS``) are always removed unless named in ``keep_params``; they
travel in ``context.click_ids`` instead, under the ``click_ids`` step's consent gate.
Parameter names compare case-insensitively. Kept parameters keep their original encoding;
the fragment is kept except by ``strip_query``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from relay.fieldset import FieldSet
from relay.pipeline.params import CLICK_ID_SET
from relay.rules.diagnostics import suggest
from relay.rules.fields import BAD_VALUE, MISSING_KEY, UNKNOWN_CHOICE, At
from relay.types import Event, StepContext

# The page fields that carry URLs or query strings (``search`` is Segment's ``?a=b`` field).
PAGE_URL_FIELDS = ("url", "referrer", "search")
STRIP_QUERY = "strip_query"
_FORMS = "use strip_query, {keep_params: [...]} or {drop_params: [...]}"


@dataclass(frozen=True, slots=True)
class UrlOptions:
    keep_params: frozenset[str] | None = None  # None: keep all but drop_params
    drop_params: frozenset[str] = frozenset()
    strip_query: bool = False


def parse(at: At) -> UrlOptions:
    if isinstance(at.value, str):
        if at.value != STRIP_QUERY:
            hint = suggest(at.value, [STRIP_QUERY]) or _FORMS
            at.error(UNKNOWN_CHOICE, f"unknown value '{at.value}'", hint)
        return UrlOptions(strip_query=True)
    entries = at.mapping(allowed=("keep_params", "drop_params"))
    if entries is None:
        return UrlOptions(strip_query=True)
    if len(entries) != 1:
        at.error(
            MISSING_KEY if not entries else BAD_VALUE,
            "expected exactly one of keep_params or drop_params",
            _FORMS,
        )
    keep = entries.get("keep_params")
    drop = entries.get("drop_params")
    keep_names = keep.string_list() if keep is not None else None
    drop_names = drop.string_list() if drop is not None else None
    return UrlOptions(
        keep_params=frozenset(n.lower() for n in keep_names) if keep_names is not None else None,
        drop_params=frozenset(n.lower() for n in drop_names or ()),
    )


def filter_query(url: str, remove: Callable[[str], bool]) -> tuple[str, list[tuple[str, str]]]:
    """``url`` without the query parameters whose name ``remove`` selects, and the removed
    ``(name, raw value)`` pairs. Works on a bare query string (``?a=1``) too.

        >>> filter_query("https://a.example/p?x=1&gclid=abc#top", lambda n: n == "gclid")
        ('https://a.example/p?x=1#top', [('gclid', 'abc')])
    """
    rest, hash_, fragment = url.partition("#")
    base, _, query = rest.partition("?")
    if not query:
        return url, []
    kept: list[str] = []
    removed: list[tuple[str, str]] = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        # Names compare decoded and lowercase (decoding only when there is something to
        # decode: this loop runs for every parameter of every page URL).
        name = unquote_plus(key).lower() if "%" in key or "+" in key else key.lower()
        if remove(name):
            removed.append((name, value))
        else:
            kept.append(pair)
    if not removed:
        return url, removed
    return base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment, removed


def may_name(value: str, needles: tuple[str, ...]) -> bool:
    """False when no query parameter in ``value`` can have a name containing one of
    ``needles`` (ASCII, without spaces), a test much cheaper than splitting the query.

    Names compare decoded and lowercase (as in ``filter_query``). Without a ``%`` in ``value``,
    decoding only turns ``+`` into a space, which no needle contains, so a needle found in a
    name is found at the same place in the lowercased key, and so in ``value.lower()`` (a
    string lowercases character by character; only the Greek sigma looks at its neighbours).
    ``value`` may be a whole URL: its path and fragment only add candidates.

        >>> may_name("https://a.example/?UTM_Source=x", ("utm_",))
        True
        >>> may_name("https://a.example/?%75tm_source=x", ("utm_",))  # u, encoded
        True
        >>> may_name("https://a.example/?q=blue+shoes", ("utm_",))
        False
    """
    if "%" in value:
        return True
    lowered = value.lower()
    for needle in needles:  # noqa: SIM110 (a plain loop: any() over a generator costs 4x)
        if needle in lowered:
            return True
    return False


def clean_page(
    event: Event,
    remove: Callable[[str], bool],
    fields: tuple[str, ...] = PAGE_URL_FIELDS,
    needles: tuple[str, ...] | None = None,
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Apply ``filter_query`` to ``context.page.<field>`` in place; per changed field, what
    was removed. With ``needles`` (one of them is in every name ``remove`` selects), a field
    that fails ``may_name`` is left alone without splitting its query."""
    context = event.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    if not isinstance(page, dict):
        return []
    changes: list[tuple[str, list[tuple[str, str]]]] = []
    for field in fields:
        value = page.get(field)
        if not isinstance(value, str) or "?" not in value:
            continue
        if needles is not None and not may_name(value, needles):
            continue
        page[field], removed = filter_query(value, remove)
        if removed:
            changes.append((field, removed))
    return changes


def _strip(event: Event, ctx: StepContext) -> None:
    context = event.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    if not isinstance(page, dict):
        return
    for field in PAGE_URL_FIELDS:
        value = page.get(field)
        if not isinstance(value, str):
            continue
        rest = value.partition("#")[0]
        base, _, query = rest.partition("?")
        n = sum(1 for pair in query.split("&") if pair)
        if base != value:
            page[field] = base
            ctx.count("url", max(n, 1), f"removed the query of context.page.{field}")


@functools.lru_cache(maxsize=64)
def drop_needles(drop: frozenset[str]) -> tuple[str, ...] | None:
    """The ``may_name`` needles of ``drop_params`` mode: the names it removes, when they are
    all ASCII without spaces (else None: no fast path)."""
    names = drop | CLICK_ID_SET
    if all(name.isascii() and " " not in name for name in names):
        return tuple(sorted(names))
    return None


def paths(fields: FieldSet, options: UrlOptions) -> FieldSet:
    """The same fields: only the values of the page's URLs change."""
    return fields


def apply(event: Event, options: UrlOptions, ctx: StepContext) -> Event:
    if options.strip_query:
        _strip(event, ctx)
        return event
    keep, drop = options.keep_params, options.drop_params
    if keep is not None:
        changes = clean_page(event, lambda name: name not in keep)
    else:
        changes = clean_page(
            event, lambda name: name in drop or name in CLICK_ID_SET, needles=drop_needles(drop)
        )
    for field, removed in changes:
        n = len(removed)
        ctx.count("url", n, f"removed {n} query parameter(s) from context.page.{field}")
    return event
