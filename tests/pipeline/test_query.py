"""The query steps run on one parse of the page (``relay.pipeline.query``) give what they gave
applied one after the other on the text, each through ``filter_query`` (hypothesis)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relay import pipeline
from relay.pipeline import click_ids, fields, hash, redact, url, utm
from relay.pipeline.params import CLICK_ID_SET
from relay.pipeline.query import PAGE_URL_FIELDS, Query
from relay.rules.model import Step
from relay.types import StepContext
from tests.pipeline.test_properties import ANY_URL

QUERY_STEPS = st.sampled_from([
    Step("url", url.UrlOptions()),
    Step("url", url.UrlOptions(keep_params=frozenset({"utm_source", "q", "gclid"}))),
    Step("url", url.UrlOptions(keep_params=frozenset({"utm_source", "utm_medium"}))),
    Step("url", url.UrlOptions(drop_params=frozenset({"email", "token"}))),
    Step("url", url.UrlOptions(strip_query=True)),
    Step("utm", utm.UtmOptions("collapse")),
    Step("utm", utm.UtmOptions("drop")),
    Step("click_ids", click_ids.ClickIdsOptions(None)),
    Step("click_ids", click_ids.ClickIdsOptions("ads")),
])
# Steps between query steps end a run of them (the redact step reads the page's URLs).
OTHER_STEPS = st.sampled_from([
    Step("redact", redact.RedactOptions()),
    Step("hash", hash.HashOptions(("user.email",))),
    Step("drop", fields.DropOptions(("context.page.referrer",))),
])
def outside(names: frozenset[str]) -> Callable[[str], bool]:
    return lambda name: name not in names


def filter_url(event: dict[str, Any], step: Step, ctx: StepContext) -> None:
    """The ``url`` step as documented, through ``filter_query`` on each field's text."""
    options = step.options
    page = event["context"]["page"]
    for field in PAGE_URL_FIELDS:
        value = page.get(field)
        if not isinstance(value, str):
            continue
        if options.strip_query:
            base = value.partition("#")[0].partition("?")[0]
            n = sum(1 for p in value.partition("#")[0].partition("?")[2].split("&") if p)
            if base != value:
                page[field] = base
                ctx.count("url", max(n, 1), f"removed the query of context.page.{field}")
            continue
        if "?" not in value:
            continue
        keep, drop = options.keep_params, options.drop_params | CLICK_ID_SET
        if keep is not None:
            new, removed = url.filter_query(value, outside(keep))
        else:
            new, removed = url.filter_query(value, drop.__contains__)
        page[field] = new
        if removed:
            ctx.count("url", len(removed),
                      f"removed {len(removed)} query parameter(s) from context.page.{field}")


def event_of(u: str, referrer: str, search: str, ids: bool) -> dict[str, Any]:
    ev: dict[str, Any] = {"event": "page_view",
                          "context": {"page": {"url": u, "referrer": referrer, "search": search,
                                               "title": "t"}}}
    if ids:
        ev["context"]["click_ids"] = {"gclid": "abc"}
    ev["user"] = {"email": "Ann@Example.com"}
    return ev


@given(st.lists(QUERY_STEPS | OTHER_STEPS, min_size=1, max_size=5), ANY_URL, ANY_URL, ANY_URL,
       st.booleans(), st.booleans())
def test_one_parse_gives_what_the_steps_give_one_after_the_other(
    steps: list[Step], u: str, referrer: str, search: str, ids: bool, ads: bool
) -> None:
    granted = frozenset({"ads"}) if ads else frozenset()
    before = event_of(u, referrer, search, ids)
    alone, alone_ctx = copy.deepcopy(before), StepContext("d", granted)
    for step in steps:
        out = pipeline.STEPS[step.kind].apply(alone, step.options, alone_ctx)
        assert out is alone  # the steps change the event in place
    fused, fused_ctx = copy.deepcopy(before), StepContext("d", granted)
    assert pipeline.run(tuple(steps), fused, fused_ctx) is fused
    assert fused == alone
    assert (fused_ctx.counts, fused_ctx.notes) == (alone_ctx.counts, alone_ctx.notes)


@given(st.lists(QUERY_STEPS.filter(lambda s: s.kind == "url"), min_size=1, max_size=3),
       ANY_URL, ANY_URL, ANY_URL)
def test_url_as_filter_query_on_the_text(steps: list[Step], u: str, referrer: str,
                                         search: str) -> None:
    before = event_of(u, referrer, search, False)
    expected, expected_ctx = copy.deepcopy(before), StepContext("d")
    for step in steps:
        filter_url(expected, step, expected_ctx)
    out, ctx = copy.deepcopy(before), StepContext("d")
    pipeline.run(tuple(steps), out, ctx)
    assert out == expected
    assert (ctx.counts, ctx.notes) == (expected_ctx.counts, expected_ctx.notes)


@given(ANY_URL, st.frozensets(st.sampled_from(["utm_source", "q", "gclid", "a+b", "%"])))
def test_a_query_rewritten_parses_to_what_was_kept(u: str, keep: frozenset[str]) -> None:
    q = Query(u)
    q.keep_named(keep)
    again = Query(q.value())
    assert again.params == q.params
    assert q.value() == url.filter_query(u, lambda n: n not in keep)[0]


def test_a_pipeline_is_compiled_once_per_steps_tuple() -> None:
    steps = (Step("url", url.UrlOptions(strip_query=True)),)
    pipeline.run(steps, {"event": "e"}, StepContext("d"))
    compiled = pipeline._compiled[id(steps)][1]
    pipeline.run(steps, {"event": "e"}, StepContext("d"))
    assert pipeline._compiled[id(steps)][1] is compiled
    other = (Step("url", url.UrlOptions(strip_query=True)),)  # equal, but another pipeline
    pipeline.run(other, {"event": "e"}, StepContext("d"))
    assert pipeline._compiled[id(other)][1] is not compiled
