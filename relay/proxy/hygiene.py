"""A route's pipeline on a vendor's hits: each event read as an envelope (its ``Shape``),
run through the pipeline's steps, capped by the route's own options, and written back.

Pure: no I/O. The route's options are a ceiling over the pipeline, so the stricter of the
two wins: ``forward_ip`` for every IP in the payload (``strip`` removes them, ``truncate``
cuts them to /24 or /48), ``user_agent`` for every user agent (``strip`` removes,
``generalize`` reduces it as the header is), and click ids leave only when the route keeps
them (``click_ids: {keep_for: ...}`` granted).

    >>> h = Hygiene((), frozenset(), ProxyRoute("ph", "/ph/", "https://eu.i.posthog.com"))
    >>> event = {"properties": {"$ip": "203.0.113.7", "plan": "pro"}}
    >>> clean_item(event, Shape(fields=(Field("context.ip", "properties.$ip"),),
    ...                         properties="properties"), h)
    >>> event
    {'properties': {'plan': 'pro'}}
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

from relay import pipeline
from relay.paths import MISSING, delete, get, set_
from relay.personal import truncate
from relay.pipeline.params import CLICK_ID_SET
from relay.proxy.headers import generalize_user_agent
from relay.proxy.vendors.base import Payload, Shape
from relay.rules.model import ProxyRoute, Step
from relay.types import Event, StepContext

HintPolicy = Literal["keep", "coarse", "drop"]
_STRICTNESS: tuple[HintPolicy, ...] = ("keep", "coarse", "drop")
_ROUTE_HINTS: dict[str, HintPolicy] = {"pass": "keep", "generalize": "coarse", "strip": "drop"}
# A user agent to see what the pipeline does to one (the client hints follow it).
PROBE_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36")


class Hygiene:
    """The steps of the route's pipeline (none without one), the purposes granted for this
    request, and the route's ceiling. ``ctx.counts`` adds up what was changed."""

    def __init__(
        self,
        steps: Sequence[Step],
        granted: frozenset[str],
        route: ProxyRoute,
        keep_click_ids: bool = False,
    ) -> None:
        self.steps = tuple(steps)
        self.route = route
        self.keep_click_ids = keep_click_ids
        self.ctx = StepContext(destination=f"proxy {route.name}", granted=granted)

    def run(self, envelope: Event, ctx: StepContext | None = None) -> Event:
        """``envelope`` after the steps and the route's ceiling. A step that drops the
        event leaves nothing of it: every field it held is removed."""
        ctx = ctx or self.ctx
        result = pipeline.run(self.steps, envelope, ctx)
        out: Event = {} if result is None else result
        self._ceiling(out, ctx)
        return out

    def _ceiling(self, envelope: Event, ctx: StepContext) -> None:
        context = envelope.get("context")
        if not isinstance(context, dict):
            return
        route = self.route
        if "ip" in context and route.forward_ip != "keep":
            ip = context["ip"]
            short = truncate(ip.strip()) if isinstance(ip, str) else None
            if route.forward_ip == "strip" or short is None:
                del context["ip"]
                ctx.count("ip", 1, f"removed an IP (route {route.name}: forward_ip)")
            elif short != ip:
                context["ip"] = short
                ctx.count("ip", 1, f"truncated an IP (route {route.name}: forward_ip)")
        if "user_agent" in context and route.user_agent != "pass":
            ua = context["user_agent"]
            if route.user_agent == "strip" or not isinstance(ua, str):
                del context["user_agent"]
                ctx.count("user_agent", 1, f"removed a user agent (route {route.name})")
            else:
                context["user_agent"] = generalize_user_agent(ua)
                ctx.count("user_agent", 1, f"generalized a user agent (route {route.name})")
        if "click_ids" in context and not self.keep_click_ids:
            ids = context.pop("click_ids")
            n = len(ids) if isinstance(ids, dict) and ids else 1
            ctx.count("click_ids", n, f"removed click ids (route {route.name}: click_ids)")

    def role(self, path: str, value: Any) -> Any:
        """What the pipeline (and the ceiling) makes of ``value`` as the envelope's ``path``:
        the new value, or ``MISSING`` when it is removed."""
        envelope: Event = {}
        set_(envelope, path, value)
        return get(self.run(envelope), path)

    @functools.cached_property
    def hints(self) -> HintPolicy:
        """What happens to client hints: what happens to a user agent. Kept when it is kept,
        coarse when it becomes a device or a generalized string, dropped when it goes."""
        probe = StepContext(destination=self.ctx.destination, granted=self.ctx.granted)
        result = pipeline.run(self.steps, {"context": {"user_agent": PROBE_UA}}, probe) or {}
        ua = get(result, "context.user_agent")
        if ua == PROBE_UA:
            steps: HintPolicy = "keep"
        elif ua is not MISSING or get(result, "context.device") is not MISSING:
            steps = "coarse"
        else:
            steps = "drop"
        route = _ROUTE_HINTS[self.route.user_agent]
        return steps if _STRICTNESS.index(steps) > _STRICTNESS.index(route) else route


def clean(payload: Payload, hygiene: Hygiene) -> None:
    """Every event of ``payload``, in place."""
    for item, shape in payload.items:
        clean_item(item, shape, hygiene)


def _is_click_key(key: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        if key.startswith(prefix) and key[len(prefix):].lower() in CLICK_ID_SET:
            return key[len(prefix):].lower()
    return None


def clean_item(item: dict[str, Any], shape: Shape, h: Hygiene) -> None:
    """One vendor event, in place (see ``Shape``)."""
    for f in shape.also:  # the fields with a second meaning, each on its own
        value = get(item, f.theirs)
        if value is MISSING or value is None:
            continue
        new = h.role(f.ours, value)
        if new is MISSING:
            delete(item, f.theirs)
        else:
            set_(item, f.theirs, new)
    for where in shape.click_ids:
        found = item if where == "" else get(item, where)
        if not isinstance(found, dict):
            continue
        for key in list(found):
            name = _is_click_key(key, shape.click_prefixes)
            if name is None or found[key] is None:
                continue
            if h.role(f"context.click_ids.{name}", found[key]) is MISSING:
                del found[key]
    if shape.hints and h.hints != "keep":
        for path in shape.hints:
            if h.hints == "drop" or path not in shape.coarse_hints:
                delete(item, path)
                parent = path.rpartition(".")[0]
                if parent and get(item, parent) == {}:
                    delete(item, parent)
    _primary(item, shape, h)


def _primary(item: dict[str, Any], shape: Shape, h: Hygiene) -> None:
    envelope: Event = {}
    for f in shape.fields:
        value = get(item, f.theirs)
        if value is not MISSING and value is not None:
            set_(envelope, f.ours, value)
            delete(item, f.theirs)
    user = _dict(item, shape.user)
    if user is not None:
        lifted = envelope.setdefault("user", {})
        if isinstance(lifted, dict):
            for key in list(user):
                if key not in lifted and not shape.system(key):
                    lifted[key] = user.pop(key)
    props = _dict(item, shape.properties)
    if props is not None:
        envelope["properties"] = {
            key: props.pop(key) for key in list(props)
            if not shape.system(key) and _is_click_key(key, ("",)) is None
        }
    out = h.run(envelope)
    mapped_user = {f.ours[5:] for f in shape.fields if f.ours.startswith("user.")}
    if user is not None and isinstance(out.get("user"), dict):
        for key, value in out["user"].items():
            if key not in mapped_user:
                user[key] = value
    if props is not None and isinstance(out.get("properties"), dict):
        props.update(out["properties"])
    for f in shape.fields:
        value = get(out, f.ours)
        if value is not MISSING and value is not None:
            set_(item, f.theirs, value)


def _dict(item: dict[str, Any], path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    found = item if path == "" else get(item, path)
    return found if isinstance(found, dict) else None
