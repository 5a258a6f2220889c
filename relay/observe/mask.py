"""Masking for what people look at (the debug view, quarantine, log lines that quote a
client's text): no raw IP, email, phone, user agent, identifier or cookie value."""

from __future__ import annotations

import re
from typing import Any

from relay.observe.log import digest

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"[^\s@/?&=]+@[^\s@/?&=]+\.[A-Za-z]{2,}")
_LONG_DIGITS = re.compile(r"\+?\d[\d\s().-]{7,}\d")


def _mask_text(text: str) -> str:
    return _LONG_DIGITS.sub("[digits]", _EMAIL.sub("[email]", text))


def mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    return value


def mask_event(event: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to show: no raw IP, user agent, user identifier or cookie value."""
    out: dict[str, Any] = mask_value(
        {k: v for k, v in event.items() if k not in ("user", "correlation_id")}
    )
    ctx = out.get("context")
    if isinstance(ctx, dict):
        if isinstance(ctx.get("ip"), str):
            ctx["ip"] = "ip#" + digest(ctx["ip"], 8)
        if isinstance(ctx.get("user_agent"), str):
            ctx["user_agent"] = "ua#" + digest(ctx["user_agent"], 8)
    user = event.get("user")
    if isinstance(user, dict):
        out["user"] = {
            k: (v if isinstance(v, str) and _HEX64.match(v) else "#" + digest(str(v), 8))
            for k, v in user.items()
        }
    if isinstance(event.get("correlation_id"), str):
        out["correlation_id"] = "cid#" + digest(event["correlation_id"])
    return out
