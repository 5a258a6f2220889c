from __future__ import annotations

from typing import Any

import pytest

from relay.pipeline import ip
from relay.rules.diagnostics import Reporter
from relay.rules.fields import At
from relay.types import StepContext


def parse(value: Any) -> tuple[ip.IpOptions, list[str]]:
    rep = Reporter()
    opts = ip.parse(At(value, ("pipelines", "p", 0, "ip"), rep))
    return opts, [d.render() for d in rep.diagnostics]


def run(address: Any, mode: ip.IpMode) -> tuple[dict[str, Any], StepContext]:
    ctx = StepContext("d")
    event = {"event": "e", "context": {"ip": address, "country": "DE"}}
    out = ip.apply(event, ip.IpOptions(mode), ctx)
    return out, ctx


def test_parse() -> None:
    assert parse("truncate") == (ip.IpOptions("truncate"), [])
    assert parse("strip") == (ip.IpOptions("strip"), [])
    assert parse("keep") == (ip.IpOptions("keep"), [])
    opts, errors = parse("trunc")
    assert opts.mode == "strip"  # the safe default while the rules are rejected
    assert len(errors) == 1
    assert "R105 pipelines.p[0].ip: unknown value 'trunc'" in errors[0]
    _, errors = parse(None)
    assert "R103" in errors[0]
    _, errors = parse(["truncate"])
    assert "R102" in errors[0]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.0.0.255", "10.0.0.0"),
        (" 1.2.3.4 ", "1.2.3.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:0db8:85a3:ffff::1", "2001:db8:85a3::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("fe80::1%eth0", "fe80::"),
    ],
)
def test_truncate(address: str, expected: str) -> None:
    out, ctx = run(address, "truncate")
    assert out["context"]["ip"] == expected
    assert ctx.counts == {"ip": 1}
    assert ctx.notes == ["truncated context.ip"]


def test_already_truncated_is_not_counted() -> None:
    out, ctx = run("203.0.113.0", "truncate")
    assert out["context"]["ip"] == "203.0.113.0"
    assert ctx.counts == {}


@pytest.mark.parametrize("bad", ["256.1.1.1", "1.2.3", "1.2.3.4:80", "nope", "", 12345, None])
def test_truncate_removes_what_is_not_an_address(bad: Any) -> None:
    out, ctx = run(bad, "truncate")
    assert "ip" not in out["context"]
    assert ctx.counts == {"ip": 1}


def test_strip_and_keep() -> None:
    out, ctx = run("203.0.113.77", "strip")
    assert out["context"] == {"country": "DE"}
    assert ctx.counts == {"ip": 1}
    out, ctx = run("203.0.113.77", "keep")
    assert out["context"]["ip"] == "203.0.113.77"
    assert ctx.counts == {}


def test_no_ip_no_change() -> None:
    ctx = StepContext("d")
    assert ip.apply({"event": "e"}, ip.IpOptions("strip"), ctx) == {"event": "e"}
    assert ip.apply({"event": "e", "context": {}}, ip.IpOptions("truncate"), ctx) == {
        "event": "e",
        "context": {},
    }
    assert ctx.counts == {}
