"""``utm``: move ``utm_*`` parameters out of the page URL, into ``context.campaign`` or away.

    - utm: collapse
    # context.page.url "https://shop.example/?utm_source=news&utm_campaign=bf&id=3"
    # -> url "https://shop.example/?id=3", context.campaign {source: news, name: bf}

``collapse`` maps utm_source, utm_medium, utm_campaign, utm_term and utm_content to
``context.campaign.{source, medium, name, term, content}`` (other ``utm_x`` to
``campaign.x``) without overriding campaign fields already set; ``drop`` only removes them.
They are removed from ``referrer`` and ``search`` too, and only the page URL (or, without
one, ``search``) feeds the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote_plus

from relay.fieldset import LEAF, Branch, FieldSet
from relay.pipeline.fields import parse_choice
from relay.pipeline.query import Page, Query, QueryOp, Removed, run_ops
from relay.rules.fields import At
from relay.types import Event, StepContext

UtmMode = Literal["collapse", "drop"]
UTM_MODES: tuple[UtmMode, ...] = ("collapse", "drop")
CAMPAIGN_KEYS = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}
_NEEDLES = ("utm_",)  # in every name _utm removes: see relay.pipeline.query.may_name


@dataclass(frozen=True, slots=True)
class UtmOptions:
    mode: UtmMode = "collapse"


def parse(at: At) -> UtmOptions:
    return UtmOptions(cast(UtmMode, parse_choice(at, UTM_MODES, "drop")))


def _utm(q: Query) -> Removed:
    return q.remove_prefixed("utm_")


CAMPAIGN = Branch({key: LEAF for key in CAMPAIGN_KEYS.values()}, other=LEAF)  # utm_x -> x


def paths(fields: FieldSet, options: UtmOptions) -> FieldSet:
    """``collapse`` adds ``context.campaign.{source, medium, name, term, content}`` and any
    other ``utm_x`` as ``context.campaign.x``, from the page URL or ``search``; ``drop``
    changes only values."""
    if options.mode == "drop" or not (fields.has("context.page.url")
                                      or fields.has("context.page.search")):
        return fields
    return fields.merge("context.campaign", CAMPAIGN)


def _collapse(event: Event, by_field: dict[str, Removed]) -> None:
    found: dict[str, Any] = {}
    for name, raw in by_field.get("url") or by_field.get("search") or ():
        key = CAMPAIGN_KEYS.get(name) or name[4:]
        if key and key not in found:
            value = unquote_plus(raw) if "%" in raw or "+" in raw else raw
            if value:
                found[key] = value
    if found:
        context = event["context"]  # a page query changed, so it is a dict
        campaign = context.get("campaign")
        if isinstance(campaign, dict):
            for key, value in found.items():
                campaign.setdefault(key, value)
        else:
            context["campaign"] = found


def _drop(event: Event, page: Page | None, ctx: StepContext) -> None:
    changes = page.remove(_utm, _NEEDLES) if page is not None else None
    if changes:
        total = sum(len(removed) for _, removed in changes)
        ctx.count("utm", total, f"dropped {total} utm parameter(s) from context.page")


def _move(event: Event, page: Page | None, ctx: StepContext) -> None:
    changes = page.remove(_utm, _NEEDLES) if page is not None else None
    if changes:
        by_field = dict(changes)
        total = sum(map(len, by_field.values()))
        _collapse(event, by_field)
        ctx.count("utm", total,
                  f"moved {total} utm parameter(s) from context.page to context.campaign")


def query_op(options: UtmOptions) -> QueryOp:
    """The step as an operation on the parsed page (``relay.pipeline.query``)."""
    return _drop if options.mode == "drop" else _move


def apply(event: Event, options: UtmOptions, ctx: StepContext) -> Event:
    return run_ops((query_op(options),), event, ctx)
