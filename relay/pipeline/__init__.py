"""Transform steps: pure functions over one destination's copy of an event.

A pipeline in the rules is a list of one-key mappings, ``- ip: truncate``; the key names a
step in ``STEPS``, whose ``parse`` types the options (reporting mistakes with their path),
whose ``apply`` runs them, and whose ``paths`` says what they do to the fields an event can
carry (for the datamap, ``relay.datamap``). Steps may mutate the event they are given (the
engine hands every destination its own copy) and count every field they remove, hash,
truncate or redact through ``ctx.count``. Adding a step: one module, one line below, one
test module.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.pipeline import click_ids, fields, hash, ip, redact, url, user_agent, utm
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


def run(steps: Sequence[Step], event: Event, ctx: StepContext) -> Event | None:
    """Run ``steps`` in order on ``event``; a step returning None drops the event."""
    for step in steps:
        result = STEPS[step.kind].apply(event, step.options, ctx)
        if result is None:
            return None
        event = result
    return event
