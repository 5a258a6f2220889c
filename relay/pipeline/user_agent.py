"""``user_agent``: replace ``context.user_agent`` by a coarse ``context.device``, drop or keep it.

    - user_agent: device
    # "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) ... Mobile/15E148 Safari/604.1"
    # -> context.device = {type: mobile, os: iOS, browser: Mobile Safari}

Parsing a user agent costs about 0.65 ms, many times the rest of the pipeline, so results are
cached by the user-agent string (there are few distinct ones in real traffic).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, cast

import user_agents

from relay.fieldset import LEAF, Branch, FieldSet
from relay.pipeline.fields import parse_choice
from relay.rules.fields import At
from relay.types import Event, StepContext

UaMode = Literal["device", "drop", "keep"]
UA_MODES: tuple[UaMode, ...] = ("device", "drop", "keep")
UA_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class UserAgentOptions:
    mode: UaMode = "device"


def parse(at: At) -> UserAgentOptions:
    return UserAgentOptions(cast(UaMode, parse_choice(at, UA_MODES, "drop")))


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def device(ua: str) -> tuple[str, str, str]:
    """(type, os family, browser family) of a user-agent string; type is one of mobile,
    tablet, desktop, bot or other."""
    parsed = user_agents.parse(ua)
    if parsed.is_bot:
        kind = "bot"
    elif parsed.is_tablet:
        kind = "tablet"
    elif parsed.is_mobile:
        kind = "mobile"
    elif parsed.is_pc:
        kind = "desktop"
    else:
        kind = "other"
    return kind, str(parsed.os.family), str(parsed.browser.family)


DEVICE = Branch({"type": LEAF, "os": LEAF, "browser": LEAF})


def paths(fields: FieldSet, options: UserAgentOptions) -> FieldSet:
    """``device`` replaces ``context.user_agent`` by ``context.device.{type, os, browser}``
    (beside what ``context.device`` held), ``drop`` removes it, ``keep`` keeps it."""
    if options.mode == "keep" or not fields.has("context.user_agent"):
        return fields
    out = fields.drop("context.user_agent")
    return out.merge("context.device", DEVICE) if options.mode == "device" else out


def apply(event: Event, options: UserAgentOptions, ctx: StepContext) -> Event:
    context = event.get("context")
    if options.mode == "keep" or not isinstance(context, dict) or "user_agent" not in context:
        return event
    ua = context.pop("user_agent")
    if options.mode == "device" and isinstance(ua, str):
        kind, os, browser = device(ua)
        existing = context.get("device")
        base = existing if isinstance(existing, dict) else {}
        context["device"] = {**base, "type": kind, "os": os, "browser": browser}
        ctx.count("user_agent", 1, "replaced context.user_agent by context.device")
    else:
        ctx.count("user_agent", 1, "dropped context.user_agent")
    return event
