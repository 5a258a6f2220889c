"""The page's query strings, parsed once per event for the ``url``, ``utm`` and ``click_ids``
steps.

Each of these steps removes query parameters from ``context.page.url``, ``referrer`` and
``search`` (``PAGE_URL_FIELDS``). Run one after the other, each would split every query
into its parameters, decode and lowercase their names, and join what is left. Here a field
is split once (``Query``), when the first step needs it; every step removes parameters from
that parsed form; and the field is written back once, at the end of the run, only when
something was removed. ``relay.pipeline.compile`` runs consecutive query steps of a pipeline
as one such run (``run_ops``); a step applied alone is a run of one.

The result is the one ``relay.pipeline.url.filter_query`` gives applied step after step
(tests/pipeline/test_query.py holds the two to it on generated URLs):

- a field is parsed only when it is a string with a ``?`` (else there is no query);
- the parameters are the non-empty ``&``-separated pieces of the query, between the first
  ``?`` and the first ``#``; a name compares decoded (``unquote_plus``) and lowercase;
- a field from which nothing was removed keeps its exact text (empty pieces included);
  otherwise it is written as the part before the query, ``?`` and the kept pieces joined by
  ``&`` (no ``?`` when none is left), then the fragment, as ``filter_query`` writes it.

Re-parsing that text would give the same pieces, so a later step working on the parsed form
sees what it would have seen in the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import unquote_plus

from relay.types import Event, StepContext

# The page fields that carry URLs or query strings (``search`` is Segment's ``?a=b`` field).
PAGE_URL_FIELDS = ("url", "referrer", "search")

Param = tuple[str, str]  # (the piece as sent, its name decoded and lowercase)
Removed = list[tuple[str, str]]  # (name, raw value) of each removed parameter, in order


def may_name(value: str, needles: tuple[str, ...]) -> bool:
    """False when no query parameter in ``value`` can have a name containing one of
    ``needles`` (ASCII, without spaces), a test much cheaper than splitting the query.

    Names compare decoded and lowercase. Without a ``%`` in ``value``, decoding only turns
    ``+`` into a space, which no needle contains, so a needle found in a name is found at the
    same place in the lowercased key, and so in ``value.lower()`` (a string lowercases
    character by character; only the Greek sigma looks at its neighbours). ``value`` may be a
    whole URL: its path and fragment only add candidates.

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


def param_name(key: str) -> str:
    """A parameter's name as the steps compare it: decoded and lowercase (decoding only when
    there is something to decode: this runs for every parameter of every page URL)."""
    return unquote_plus(key).lower() if "%" in key or "+" in key else key.lower()


class Query:
    """One field's text taken apart: the part before the query (``head``), its non-empty
    parameters, and the fragment with its ``#`` (``tail``)."""

    __slots__ = ("changed", "head", "params", "tail", "text")

    def __init__(self, text: str) -> None:
        rest, hash_, fragment = text.partition("#")
        head, _, query = rest.partition("?")
        self.text = text
        self.head = head
        self.tail = hash_ + fragment
        self.changed = False
        params: list[Param] = []
        if query:
            for piece in query.split("&"):
                if piece:
                    key = piece.partition("=")[0]
                    # param_name, inlined: this loop runs for every parameter of every page
                    name = unquote_plus(key).lower() if "%" in key or "+" in key else key.lower()
                    params.append((piece, name))
        self.params = params

    def _keep(self, kept: list[Param], removed: Removed) -> Removed:
        if removed:
            self.params = kept
            self.changed = True
        return removed

    def remove_named(self, names: frozenset[str]) -> Removed:
        """Remove the parameters named in ``names``."""
        kept: list[Param] = []
        removed: Removed = []
        for param in self.params:
            if param[1] in names:
                removed.append((param[1], param[0].partition("=")[2]))
            else:
                kept.append(param)
        return self._keep(kept, removed)

    def keep_named(self, names: frozenset[str]) -> Removed:
        """Remove the parameters not named in ``names``."""
        kept: list[Param] = []
        removed: Removed = []
        for param in self.params:
            if param[1] in names:
                kept.append(param)
            else:
                removed.append((param[1], param[0].partition("=")[2]))
        return self._keep(kept, removed)

    def remove_prefixed(self, prefix: str) -> Removed:
        """Remove the parameters whose name starts with ``prefix``."""
        kept: list[Param] = []
        removed: Removed = []
        for param in self.params:
            if param[1].startswith(prefix):
                removed.append((param[1], param[0].partition("=")[2]))
            else:
                kept.append(param)
        return self._keep(kept, removed)

    def value(self) -> str:
        """The field's text now (as ``filter_query`` writes it)."""
        if not self.changed:
            return self.text
        params = self.params
        query = "?" + "&".join([p[0] for p in params]) if params else ""
        return self.head + query + self.tail


Remove = Callable[[Query], Removed]


class Page:
    """``context.page`` during a run of query steps: its fields parsed on demand."""

    __slots__ = ("page", "parsed")

    def __init__(self, page: dict[str, object]) -> None:
        self.page = page
        self.parsed: dict[str, Query] = {}

    def query(self, field: str, needles: tuple[str, ...] | None) -> Query | None:
        """The parsed ``field``, or None when it has no query, or, with ``needles``, when
        ``may_name`` shows no parameter in it can be removed (then it is not parsed)."""
        q = self.parsed.get(field)
        if q is not None:
            return q
        value = self.page.get(field)
        if not isinstance(value, str) or "?" not in value:
            return None
        if needles is not None and not may_name(value, needles):
            return None
        q = self.parsed[field] = Query(value)
        return q

    def remove(
        self, remove: Remove, needles: tuple[str, ...] | None = None,
        fields: Sequence[str] = PAGE_URL_FIELDS,
    ) -> list[tuple[str, Removed]]:
        """``remove`` applied to each of ``fields``; per changed field, what was removed.
        With ``needles`` (one of them is in every name ``remove`` selects), a field not parsed
        yet that fails ``may_name`` is left alone."""
        changes: list[tuple[str, Removed]] = []
        for field in fields:
            q = self.query(field, needles)
            if q is not None and q.params:
                removed = remove(q)
                if removed:
                    changes.append((field, removed))
        return changes

    def current(self, field: str) -> object:
        """``field``'s value now, with what the steps so far removed."""
        q = self.parsed.get(field)
        return q.value() if q is not None else self.page.get(field)

    def set(self, field: str, value: str) -> None:
        """Write ``field`` now (and forget its parsed form)."""
        self.parsed.pop(field, None)
        self.page[field] = value

    def write(self) -> None:
        for field, q in self.parsed.items():
            if q.changed:
                self.page[field] = q.value()


QueryOp = Callable[[Event, "Page | None", StepContext], None]


def page_of(event: Event) -> Page | None:
    context = event.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    return Page(page) if isinstance(page, dict) else None


def run_ops(ops: Sequence[QueryOp], event: Event, ctx: StepContext) -> Event:
    """Run consecutive query steps on ``event``, its page's queries parsed once."""
    page = page_of(event)
    for op in ops:
        op(event, page, ctx)
    if page is not None:
        page.write()
    return event
