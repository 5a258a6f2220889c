"""``url``: remove query parameters from ``context.page.url``, ``referrer`` and ``search``.

    - url: {keep_params: [utm_source, utm_medium, utm_campaign]}   # everything else goes
    - url: {drop_params: [email, token]}                           # these (and click ids) go
    - url: strip_query                                             # query and fragment go

Ad click ids (``CLICK_ID_PARAMS``) are always removed unless named in ``keep_params``; they
travel in ``context.click_ids`` instead, under the ``click_ids`` step's consent gate.
Parameter names compare case-insensitively. Kept parameters keep their original encoding;
the fragment is kept except by ``strip_query``. The step works on the page's queries as
parsed once for the query steps (``relay.pipeline.query``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from relay.fieldset import FieldSet
from relay.pipeline.params import CLICK_ID_SET
from relay.pipeline.query import (
    PAGE_URL_FIELDS,
    Page,
    Query,
    QueryOp,
    Removed,
    param_name,
    run_ops,
)
from relay.rules.diagnostics import suggest
from relay.rules.fields import BAD_VALUE, MISSING_KEY, UNKNOWN_CHOICE, At
from relay.types import Event, StepContext

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
        name = param_name(key)
        if remove(name):
            removed.append((name, value))
        else:
            kept.append(pair)
    if not removed:
        return url, removed
    return base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment, removed


def _strip(event: Event, page: Page | None, ctx: StepContext) -> None:
    if page is None:
        return
    for field in PAGE_URL_FIELDS:
        value = page.current(field)
        if not isinstance(value, str):
            continue
        rest = value.partition("#")[0]
        base, _, query = rest.partition("?")
        n = sum(1 for pair in query.split("&") if pair)
        if base != value:
            page.set(field, base)
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


def _counted(ctx: StepContext, changes: list[tuple[str, Removed]]) -> None:
    for field, removed in changes:
        n = len(removed)
        ctx.count("url", n, f"removed {n} query parameter(s) from context.page.{field}")


@functools.lru_cache(maxsize=64)
def query_op(options: UrlOptions) -> QueryOp:
    """The step as an operation on the parsed page (``relay.pipeline.query``)."""
    if options.strip_query:
        return _strip
    keep = options.keep_params
    if keep is not None:
        def keep_only(q: Query) -> Removed:
            return q.keep_named(keep)

        def keep_params(event: Event, page: Page | None, ctx: StepContext) -> None:
            if page is not None:
                _counted(ctx, page.remove(keep_only))

        return keep_params
    names = options.drop_params | CLICK_ID_SET
    needles = drop_needles(options.drop_params)

    def drop_named(q: Query) -> Removed:
        return q.remove_named(names)

    def drop_params(event: Event, page: Page | None, ctx: StepContext) -> None:
        if page is not None:
            _counted(ctx, page.remove(drop_named, needles))

    return drop_params


def apply(event: Event, options: UrlOptions, ctx: StepContext) -> Event:
    return run_ops((query_op(options),), event, ctx)
