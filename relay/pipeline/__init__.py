"""Transform steps: pure functions over one destination's copy of an event.

A pipeline in the rules is a list of one-key mappings, ``- ip: truncate``; the key names a
step in ``STEPS``, whose ``parse`` types the options (reporting mistakes with their path),
whose ``apply`` runs them, and whose ``paths`` says what they do to the fields an event can
carry (for the datamap, ``relay.datamap``). Steps may mutate the event they are given (the
engine hands every destination its own copy) and count every field they remove, hash,
truncate or redact through ``ctx.count``. Adding a step: one module, one line below, one
test module.

``run`` compiles a pipeline once (``compile_steps``): options prepared where a step has a
binder (``BINDERS``), and consecutive query steps (``QUERY_STEPS``: url, utm, click_ids)
sharing one parse of the page's URLs (``relay.pipeline.query``). ``benchmarks/pipeline.py``
measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from relay.pipeline import click_ids, fields, hash, ip, query, redact, url, user_agent, utm
from relay.rules.model import Step
from relay.types import Event, StepContext, StepDef

STEPS: dict[str, StepDef] = {
    "ip": StepDef(ip.parse, ip.apply, ip.paths,
                  "strip | truncate (v4 /24, v6 /48) | keep context.ip"),
    "user_agent": StepDef(user_agent.parse, user_agent.apply, user_agent.paths,
                          "device (type, os, browser family) | drop | keep"),
    "url": StepDef(url.parse, url.apply, url.paths,
                   "{keep_params: [...]} | {drop_params: [...]} | strip_query"),
    "utm": StepDef(utm.parse, utm.apply, utm.paths,
                   "collapse (utm_* -> context.campaign) | drop"),
    "click_ids": StepDef(click_ids.parse, click_ids.apply, click_ids.paths,
                         "{keep_for: PURPOSE} | drop: context.click_ids"),
    "hash": StepDef(hash.parse, hash.apply, hash.paths, "[paths]: normalized, then SHA-256 hex"),
    "redact": StepDef(redact.parse, redact.apply, redact.paths,
                      "free_text: emails, phones, cards in strings"),
    "drop": StepDef(fields.parse_drop, fields.apply_drop, fields.paths_drop, "[paths] to remove"),
    "allow": StepDef(fields.parse_allow, fields.apply_allow, fields.paths_allow,
                     "[paths] to keep; the rest goes"),
    "set": StepDef(fields.parse_set, fields.apply_set, fields.paths_set, "{path: value} to set"),
}


Bound = Callable[[Event, StepContext], "Event | None"]  # a step with its options bound
# The steps that only remove page query parameters: consecutive ones run on one parse.
QUERY_STEPS: dict[str, Callable[[Any], query.QueryOp]] = {
    "url": url.query_op, "utm": utm.query_op, "click_ids": click_ids.query_op,
}
# Steps that prepare their options once (the others are called with them as they are).
BINDERS: dict[str, Callable[[Any], Bound]] = {"hash": hash.bind, "allow": fields.bind_allow}
COMPILED_MAX = 64  # pipelines kept compiled (a few per rules version; reloads add more)
_compiled: dict[int, tuple[Sequence[Step], Bound]] = {}


def _bind(step: Step) -> Bound:
    binder = BINDERS.get(step.kind)
    if binder is not None:
        return binder(step.options)
    apply, options = STEPS[step.kind].apply, step.options
    return lambda event, ctx: apply(event, options, ctx)


def _query_run(ops: tuple[query.QueryOp, ...]) -> Bound:
    return lambda event, ctx: query.run_ops(ops, event, ctx)


def compile_steps(steps: Sequence[Step]) -> Bound:
    """``steps`` as one function of (event, ctx), what ``run`` runs: each step's options
    prepared once, and each run of consecutive query steps (``QUERY_STEPS``) sharing one
    parse of the page's URLs (``relay.pipeline.query``). The same result as calling the
    steps' ``apply`` one after the other."""
    bound: list[Bound] = []
    ops: list[query.QueryOp] = []
    for step in steps:
        make_op = QUERY_STEPS.get(step.kind)
        if make_op is not None:
            ops.append(make_op(step.options))
            continue
        if ops:
            bound.append(_query_run(tuple(ops)))
            ops = []
        bound.append(_bind(step))
    if ops:
        bound.append(_query_run(tuple(ops)))
    fns = tuple(bound)

    def run_all(event: Event, ctx: StepContext) -> Event | None:
        for fn in fns:
            result = fn(event, ctx)
            if result is None:
                return None
            event = result
        return event

    return run_all


def run(steps: Sequence[Step], event: Event, ctx: StepContext) -> Event | None:
    """Run ``steps`` in order on ``event``; a step returning None drops the event.

    A tuple of steps (a pipeline of the rules) is compiled once (``compile_steps``) and kept while
    it lives: looked up by identity, so a reload's new pipelines compile on first use."""
    if type(steps) is not tuple:
        return compile_steps(steps)(event, ctx)
    entry = _compiled.get(id(steps))
    if entry is None or entry[0] is not steps:
        if len(_compiled) >= COMPILED_MAX:
            del _compiled[next(iter(_compiled))]  # the oldest
        entry = _compiled[id(steps)] = (steps, compile_steps(steps))
    return entry[1](event, ctx)
