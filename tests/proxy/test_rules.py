"""The ``proxy:`` keys of issue 3: typed with their defaults, each mistake with its code."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.registry import check_rules
from relay.rules import Diagnostic, Rules
from relay.rules.diagnostics import dotted
from relay.rules.model import (
    DEFAULT_PROXY_CACHE_MAX_BYTES,
    DEFAULT_PROXY_CONCURRENCY,
    DEFAULT_PROXY_MAX_BODY,
    DEFAULT_PROXY_TIMEOUT,
    SubPath,
)

BASE = """\
relay: {country_header: CF-IPCountry}
purposes:
  analytics: {default: {EU: denied, "*": granted}}
  ads: {default: {EU: denied, "*": granted}, gpc: denied}
"""
PIN = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def check(tmp_path: Path, snippet: str, base: str = BASE) -> tuple[Rules | None, list[Diagnostic]]:
    (tmp_path / "0_base.yaml").write_text(base)
    (tmp_path / "1_proxy.yaml").write_text(snippet)
    return check_rules(tmp_path, {})


def codes(diagnostics: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(d.code, dotted(d.path)) for d in diagnostics]


def test_defaults(tmp_path: Path) -> None:
    rules, diagnostics = check(tmp_path, "proxy:\n  p: {path: /p.js, upstream: 'https://x.example/p.js'}\n")
    assert diagnostics == [] and rules is not None
    p = rules.proxy["p"]
    assert not p.prefix and p.paths == ()
    assert (p.forward_ip, p.user_agent, p.forward_country, p.cookies) == ("strip", "generalize",
                                                                          None, ())
    assert (p.cache, p.pin, p.cache_max_bytes) == (None, None, DEFAULT_PROXY_CACHE_MAX_BYTES)
    assert (p.timeout, p.max_body, p.concurrency) == (
        DEFAULT_PROXY_TIMEOUT, DEFAULT_PROXY_MAX_BODY, DEFAULT_PROXY_CONCURRENCY)
    assert (p.waiters, p.wait) == (4 * DEFAULT_PROXY_CONCURRENCY, 2.0)  # 4x, 2 s
    assert p.methods == ("GET", "POST")
    assert (p.keep_params, p.drop_params, p.strip_query, p.click_ids) == (
        None, frozenset(), False, None)


def test_every_key(tmp_path: Path) -> None:
    rules, diagnostics = check(tmp_path, f"""
proxy:
  ph:
    path: /ph/
    upstream: https://eu.i.posthog.com
    paths: {{"static/": "https://eu-assets.i.posthog.com/static/", decide: "https://d.example/d?v=3"}}
    purpose: analytics
    forward_ip: truncate
    user_agent: pass
    forward_country: X-Country
    cookies: [ph_*]
    query: {{drop_params: [Email]}}
    click_ids: {{keep_for: ads}}
    cache: 10m
    cache_max_bytes: 500000
    timeout: 3s
    max_body: 0
    concurrency: 4
    queue: {{size: 10, wait: 500ms}}
    methods: [get, POST, OPTIONS]
  lib: {{path: /lib/x.js, upstream: "https://cdn.example/x.js?v=1", cache: 1h, pin: "{PIN}"}}
""")
    assert diagnostics == [] and rules is not None
    ph = rules.proxy["ph"]
    assert ph.prefix
    assert ph.paths == (SubPath("static/", "https://eu-assets.i.posthog.com/static/"),
                        SubPath("decide", "https://d.example/d?v=3"))
    assert (ph.purpose, ph.forward_ip, ph.user_agent, ph.forward_country) == (
        "analytics", "truncate", "pass", "X-Country")
    assert ph.cookies == ("ph_*",) and ph.drop_params == frozenset({"email"})
    assert (ph.click_ids, ph.cache, ph.cache_max_bytes) == ("ads", 600.0, 500000)
    assert (ph.timeout, ph.max_body, ph.concurrency) == (3.0, 0, 4)
    assert (ph.queue_size, ph.queue_wait, ph.waiters, ph.wait) == (10, 0.5, 10, 0.5)
    assert ph.methods == ("GET", "POST", "OPTIONS")
    assert rules.proxy["lib"].pin == PIN


@pytest.mark.parametrize(("snippet", "expected"), [
    ("p: {path: /x/../y, upstream: 'https://x.example/'}", [("R260", "proxy.p.path")]),
    ("p: {path: /x//y, upstream: 'https://x.example/'}", [("R260", "proxy.p.path")]),
    ("p: {path: /x%2e, upstream: 'https://x.example/'}", [("R260", "proxy.p.path")]),
    ("p: {path: /, upstream: 'https://x.example/'}", [("R260", "proxy.p.path")]),
    ("p: {path: /hook/, upstream: 'https://x.example/'}", [("R263", "proxy.p.path")]),
    ("p: {path: /x/, upstream: 'https://x.example/?a=1'}", [("R261", "proxy.p.upstream")]),
    ("p: {path: /x, upstream: 'https://x.example/a b'}", [("R261", "proxy.p.upstream")]),
    ("p: {path: /x, upstream: 'https://u:p@x.example/'}", [("R261", "proxy.p.upstream")]),
    ("p: {path: /x, upstream: 'https://x.example/', paths: {a/: 'https://a.example/'}}",
     [("R264", "proxy.p.paths")]),
    ("p: {path: /x/, upstream: 'https://x.example/', paths: {/a/: 'https://a.example/'}}",
     [("R264", "proxy.p.paths./a/")]),
    ("p: {path: /x/, upstream: 'https://x.example/', paths: {../a: 'https://a.example/'}}",
     [("R264", "proxy.p.paths.../a")]),
    ("p: {path: /x/, upstream: 'https://x.example/', paths: {a/: 'ftp://a.example/'}}",
     [("R261", "proxy.p.paths.a/")]),
    ("p: {path: /x, upstream: 'https://x.example/', cache: 1h, methods: [POST]}",
     [("R265", "proxy.p.cache")]),
    (f"p: {{path: /x, upstream: 'https://x.example/', pin: '{PIN}'}}", [("R266", "proxy.p.pin")]),
    (f"p: {{path: /x/, upstream: 'https://x.example/', cache: 1h, pin: '{PIN}'}}",
     [("R266", "proxy.p.pin")]),
    ("p: {path: /x, upstream: 'https://x.example/', methods: [FETCH]}",
     [("R105", "proxy.p.methods[0]")]),
    ("p: {path: /x, upstream: 'https://x.example/', user_agent: device}",
     [("R105", "proxy.p.user_agent")]),
    ("p: {path: /x, upstream: 'https://x.example/', forward_country: 'X Country'}",
     [("R215", "proxy.p.forward_country")]),
    ("p: {path: /x, upstream: 'https://x.example/', cache_max_bytes: 999999999}",
     [("R104", "proxy.p.cache_max_bytes")]),
    ("p: {path: /x, upstream: 'https://x.example/', concurrency: 0}",
     [("R104", "proxy.p.concurrency")]),
    ("p: {path: /x, upstream: 'https://x.example/', timeout: 0}", [("R104", "proxy.p.timeout")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: {size: -1}}",
     [("R104", "proxy.p.queue.size")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: {size: many}}",
     [("R102", "proxy.p.queue.size")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: {wait: 0}}",
     [("R104", "proxy.p.queue.wait")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: {wait: soon}}",
     [("R106", "proxy.p.queue.wait")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: {length: 3}}",
     [("R101", "proxy.p.queue.length")]),
    ("p: {path: /x, upstream: 'https://x.example/', queue: 8}", [("R102", "proxy.p.queue")]),
    ("p: {path: /x, upstream: 'https://x.example/', click_ids: {keep_for: adz}}",
     [("R204", "proxy.p.click_ids.keep_for")]),
    ("p: {path: /x, upstream: 'https://x.example/', query: {drop: [a]}}",
     [("R103", "proxy.p.query"), ("R101", "proxy.p.query.drop")]),
    ("p: {path: /x, upstream: 'https://x.example/', upstrem: 'https://y.example/'}",
     [("R101", "proxy.p.upstrem")]),
])
def test_mistakes(tmp_path: Path, snippet: str, expected: list[tuple[str, str]]) -> None:
    rules, diagnostics = check(tmp_path, "proxy:\n  " + snippet + "\n")
    assert rules is None
    assert codes(diagnostics) == expected


def test_forward_country_without_a_country_header_warns(tmp_path: Path) -> None:
    base = BASE.replace("relay: {country_header: CF-IPCountry}\n", "")
    rules, diagnostics = check(
        tmp_path, "proxy:\n  p: {path: /x, upstream: 'https://x.example/', forward_country: X-C}\n",
        base=base)
    assert rules is not None
    assert [(d.severity, d.code) for d in diagnostics] == [("warning", "R267")]


# -- vendor: and pipeline: (issue 8) ------------------------------------------------------

PIPELINES = BASE + """\
pipelines:
  minimize:
    - ip: truncate
"""


def test_vendor_and_pipeline(tmp_path: Path) -> None:
    rules, diagnostics = check(tmp_path, """
proxy:
  ph: {path: /ph/, upstream: "https://eu.i.posthog.com", vendor: posthog, pipeline: minimize}
  mp: {path: /mp/, upstream: "https://api-js.mixpanel.com", vendor: mixpanel}
  lib: {path: /lib.js, upstream: "https://cdn.example/lib.js"}
""", base=PIPELINES)
    assert diagnostics == [] and rules is not None
    assert (rules.proxy["ph"].vendor, rules.proxy["ph"].pipeline) == ("posthog", "minimize")
    assert (rules.proxy["mp"].vendor, rules.proxy["mp"].pipeline) == ("mixpanel", None)
    assert (rules.proxy["lib"].vendor, rules.proxy["lib"].pipeline) == (None, None)


@pytest.mark.parametrize(("snippet", "expected", "hint"), [
    ("p: {path: /x/, upstream: 'https://x.example/', vendor: posthg}",
     [("R268", "proxy.p.vendor")], "did you mean 'posthog'?"),
    ("p: {path: /x/, upstream: 'https://x.example/', vendor: amplitude}",
     [("R268", "proxy.p.vendor")], "posthog, mixpanel, ga4, plausible, matomo, segment"),
    ("p: {path: /x/, upstream: 'https://x.example/', vendor: posthog, pipeline: minimise}",
     [("R203", "proxy.p.pipeline")], "did you mean 'minimize'?"),
    ("p: {path: /x/, upstream: 'https://x.example/', pipeline: minimize}",
     [("R269", "proxy.p.pipeline")], "add vendor:"),
    ("p: {path: /x/, upstream: 'https://x.example/', vendor: [posthog]}",
     [("R102", "proxy.p.vendor")], None),
])
def test_vendor_mistakes(tmp_path: Path, snippet: str, expected: list[tuple[str, str]],
                         hint: str | None) -> None:
    rules, diagnostics = check(tmp_path, "proxy:\n  " + snippet + "\n", base=PIPELINES)
    assert rules is None
    assert codes(diagnostics) == expected
    if hint is not None:
        assert hint in (diagnostics[0].hint or "")
    rendered = diagnostics[0].render()
    assert rendered.startswith(str(tmp_path / "1_proxy.yaml") + ":2:")


def test_queue_wait_never_past_the_timeout(tmp_path: Path) -> None:
    rules, diagnostics = check(tmp_path, "proxy:\n  p: {path: /p, upstream: 'https://x.example/',"
                               " timeout: 1s, concurrency: 3, queue: {wait: 5s}}\n")
    assert diagnostics == [] and rules is not None
    assert (rules.proxy["p"].waiters, rules.proxy["p"].wait) == (12, 1.0)
