"""``click_ids``: keep ``context.click_ids`` only when a purpose is granted.

    - click_ids: {keep_for: ads}    # gclid, fbclid ... reach the destination only with ads consent
    - click_ids: drop

When the ids are removed, the same parameters are also removed from the page URL, referrer
and search, so they cannot reach the destination another way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from relay.fieldset import FieldSet
from relay.pipeline.params import CLICK_ID_PARAMS, CLICK_ID_SET
from relay.pipeline.query import Page, Query, QueryOp, Removed, run_ops
from relay.rules.fields import MISSING_KEY, UNKNOWN_CHOICE, At
from relay.types import Event, StepContext

DROP = "drop"
_FORMS = "use drop or {keep_for: PURPOSE}"


@dataclass(frozen=True, slots=True)
class ClickIdsOptions:
    keep_for: str | None = None  # a purpose name; None drops them always


def parse(at: At) -> ClickIdsOptions:
    if isinstance(at.value, str):
        if at.value != DROP:
            at.error(UNKNOWN_CHOICE, f"unknown value '{at.value}'", _FORMS)
        return ClickIdsOptions()
    if at.value is None:
        at.error(MISSING_KEY, "expected a value", _FORMS)
        return ClickIdsOptions()
    entries = at.mapping(allowed=("keep_for",), required=("keep_for",))
    if entries is None or "keep_for" not in entries:
        return ClickIdsOptions()
    return ClickIdsOptions(entries["keep_for"].string())


def _click_ids(q: Query) -> Removed:
    return q.remove_named(CLICK_ID_SET)


def paths(fields: FieldSet, options: ClickIdsOptions) -> FieldSet:
    """``drop`` removes ``context.click_ids``; ``keep_for`` keeps them (when granted)."""
    return fields if options.keep_for is not None else fields.drop("context.click_ids")


@functools.lru_cache(maxsize=64)
def query_op(options: ClickIdsOptions) -> QueryOp:
    """The step as an operation on the parsed page (``relay.pipeline.query``)."""
    keep_for = options.keep_for
    why = f"{keep_for} not granted" if keep_for else "drop"
    ids_note = f"removed context.click_ids ({why})"

    def click_ids(event: Event, page: Page | None, ctx: StepContext) -> None:
        if keep_for is not None and keep_for in ctx.granted:
            return
        context = event.get("context")
        if isinstance(context, dict) and "click_ids" in context:
            ids = context.pop("click_ids")
            ctx.count("click_ids", len(ids) if isinstance(ids, dict) and ids else 1, ids_note)
        if page is not None:
            for field, removed in page.remove(_click_ids, CLICK_ID_PARAMS):
                ctx.count("click_ids", len(removed),
                          f"removed click ids from context.page.{field} ({why})")

    return click_ids


def apply(event: Event, options: ClickIdsOptions, ctx: StepContext) -> Event:
    return run_ops((query_op(options),), event, ctx)
