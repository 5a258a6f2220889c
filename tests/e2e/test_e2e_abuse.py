"""Abuse controls on ``relay serve``: the per-address rate limit (429 with ``Retry-After``,
shared by two relays on Redis), bots recognised by user agent (dropped or flagged, counted)
and the browser endpoint's origin allow-list (403)."""

from __future__ import annotations

import time

from .conftest import MakeRelay
from .rulesdir import edit
from .wire import archived, client, metric, page_view, post_browser, scrape, wait_until

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36")
# A token every 100 s: after the burst, nothing refills while the test runs.
SLOW = {"rate_limit": {"per_second": 0.01, "burst": 3}}


def test_after_the_burst_the_answer_is_429_with_retry_after(relays: MakeRelay) -> None:
    relay = relays(relay=SLOW)
    with client() as http:
        answers = [post_browser(http, relay, page_view()) for _ in range(3)]
        assert [r.status_code for r in answers] == [202, 202, 202], answers[-1].text
        refused = post_browser(http, relay, page_view())
        assert refused.status_code == 429, refused.text
        assert refused.json() == {"error": "rate limited: too many requests from this address"}
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        assert metric(scrape(http, relay), "relay_rate_limited_total", endpoint="browser") == 1


def test_two_relays_on_redis_share_one_bucket(relays: MakeRelay, redis_url: str) -> None:
    env = {"RELAY_STATE": redis_url}
    a = relays(env=env, name="a", relay={"rate_limit": {"per_second": 0.01, "burst": 4}})
    b = relays(env=env, name="b", relay={"rate_limit": {"per_second": 0.01, "burst": 4}})
    with client() as http:
        first = [post_browser(http, relay, page_view()).status_code for relay in (a, b, a, b)]
        assert first == [202, 202, 202, 202]
        assert post_browser(http, a, page_view()).status_code == 429
        assert post_browser(http, b, page_view()).status_code == 429
        limited = sum(metric(scrape(http, r), "relay_rate_limited_total") for r in (a, b))
        assert limited == 2


def test_a_crawler_is_dropped_and_a_headless_browser_flagged(relays: MakeRelay) -> None:
    relay = relays()
    crawled, headless = page_view(), page_view()
    with client() as http:
        r = post_browser(http, relay, crawled, headers={"User-Agent": GOOGLEBOT})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 0, "duplicates": 0, "rejected": [], "dropped_bot": 1}
        forged = {**headless, "context": {"bot": False, "page": {"url": "https://a.example/"}}}
        r = post_browser(http, relay, forged, headers={"User-Agent": HEADLESS})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        [copy] = wait_until(lambda: [e for e in archived(relay)
                                     if e["event_id"] == headless["event_id"]], 10,
                            "the headless browser's event in the archive")
        assert copy["context"]["bot"] is True  # set by the relay; the payload cannot say
        text = scrape(http, relay)
        assert metric(text, "relay_bot_events_total", source="browser", action="drop") == 1
        assert metric(text, "relay_bot_events_total", source="browser", action="flag") == 1
    time.sleep(1.0)  # a wrongly accepted crawler event would be archived by now
    assert not [e for e in archived(relay) if e["event_id"] == crawled["event_id"]]


def test_bots_keep_accepts_them_unmarked(relays: MakeRelay) -> None:
    relay = relays(start=False)
    edit(relay.rules_dir / "sources.yaml",
         lambda d: d["sources"]["browser"].update({"bots": "keep"}))
    relay.start()
    ev = page_view()
    with client() as http:
        r = post_browser(http, relay, ev, headers={"User-Agent": GOOGLEBOT})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        [copy] = wait_until(lambda: [e for e in archived(relay)
                                     if e["event_id"] == ev["event_id"]], 10, "the archive")
        assert "bot" not in copy.get("context", {})
        assert metric(scrape(http, relay), "relay_bot_events_total", action="keep") == 1


def test_a_foreign_origin_is_refused_and_an_allowed_one_accepted(relays: MakeRelay) -> None:
    relay = relays(start=False)
    edit(relay.rules_dir / "sources.yaml", lambda d: d["sources"]["browser"].update(
        {"allowed_origins": ["https://shop.example", "https://*.shop.example"]}))
    relay.start()
    with client() as http:
        r = post_browser(http, relay, page_view(), headers={"Origin": "https://evil.example"})
        assert r.status_code == 403, r.text
        assert r.json() == {"error": "origin https://evil.example may not post events here "
                                     "(sources.browser.allowed_origins)"}
        for origin in ("https://shop.example", "https://www.shop.example"):
            r = post_browser(http, relay, page_view(), headers={"Origin": origin})
            assert r.status_code == 202, r.text
        r = post_browser(http, relay, page_view(),
                         headers={"Referer": "https://evil.example/page"})
        assert r.status_code == 403, r.text
        assert metric(scrape(http, relay), "relay_origin_refused_total", source="browser") == 2


def test_the_shipped_rules_accept_their_own_host_and_refuse_other_sites(
    relays: MakeRelay
) -> None:
    relay = relays()
    own = relay.url("/e").split("/t/")[0]  # http://127.0.0.1:<port>
    with client() as http:
        assert post_browser(http, relay, page_view(), headers={"Origin": own}).status_code == 202
        r = post_browser(http, relay, page_view(), headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 202, r.text  # a development page on another port
        r = post_browser(http, relay, page_view(), headers={"Origin": "https://evil.example"})
        assert r.status_code == 403, r.text
