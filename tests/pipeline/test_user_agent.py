from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import user_agent
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def parse(value: Any) -> tuple[user_agent.UserAgentOptions, list[str]]:
    rep = Reporter()
    opts = user_agent.parse(At(value, ("pipelines", "p", 1, "user_agent"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def test_parse() -> None:
    assert parse("device") == (user_agent.UserAgentOptions("device"), [])
    assert parse("drop")[0].mode == "drop"
    assert parse("keep")[0].mode == "keep"
    opts, errors = parse("devise")
    assert opts.mode == "drop"
    assert "did you mean 'device'?" in errors[0]


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (IPHONE, {"type": "mobile", "os": "iOS", "browser": "Mobile Safari"}),
        (WINDOWS_CHROME, {"type": "desktop", "os": "Windows", "browser": "Chrome"}),
        (IPAD, {"type": "tablet", "os": "iOS", "browser": "Mobile Safari"}),
        (GOOGLEBOT, {"type": "bot", "os": "Other", "browser": "Googlebot"}),
        ("", {"type": "other", "os": "Other", "browser": "Other"}),
    ],
)
def test_device(ua: str, expected: dict[str, str]) -> None:
    ctx = StepContext("d")
    event = {"event": "e", "context": {"user_agent": ua}}
    out = user_agent.apply(event, user_agent.UserAgentOptions("device"), ctx)
    assert out["context"] == {"device": expected}
    assert ctx.counts == {"user_agent": 1}
    assert ctx.notes == ["replaced context.user_agent by context.device"]
    assert ua not in str(out) or ua == ""


def test_device_merges_into_an_existing_device() -> None:
    event = {"event": "e", "context": {"user_agent": IPHONE, "device": {"model": "x"}}}
    out = user_agent.apply(event, user_agent.UserAgentOptions("device"), StepContext("d"))
    assert out["context"]["device"]["model"] == "x"
    assert out["context"]["device"]["type"] == "mobile"


def test_parse_is_cached() -> None:
    user_agent.device.cache_clear()
    for _ in range(3):
        user_agent.device(WINDOWS_CHROME)
    info = user_agent.device.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 1, 4096)


def test_drop_and_keep() -> None:
    ctx = StepContext("d")
    out = user_agent.apply(
        {"context": {"user_agent": IPHONE}}, user_agent.UserAgentOptions("drop"), ctx
    )
    assert out == {"context": {}}
    assert ctx.counts == {"user_agent": 1}
    ctx = StepContext("d")
    out = user_agent.apply(
        {"context": {"user_agent": IPHONE}}, user_agent.UserAgentOptions("keep"), ctx
    )
    assert out["context"]["user_agent"] == IPHONE
    assert ctx.counts == {}


def test_non_string_user_agent_is_dropped() -> None:
    ctx = StepContext("d")
    out = user_agent.apply(
        {"context": {"user_agent": ["x"]}}, user_agent.UserAgentOptions("device"), ctx
    )
    assert out == {"context": {}}
    assert ctx.counts == {"user_agent": 1}
