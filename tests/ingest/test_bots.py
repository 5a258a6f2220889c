from __future__ import annotations

import pytest

from relay.ingest.bots import action, bot_kind
from relay.rules.model import Bots

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
           "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


@pytest.mark.parametrize(("ua", "kind"), [
    (CHROME, None),
    (IPHONE, None),
    ("curl/8.5.0", None),  # not a browser, not pretending to be a visitor
    ("python-httpx/0.28.1", None),
    (HEADLESS, "headless"),
    ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
     "PhantomJS/2.1.1 Safari/538.1", "headless"),
    (GOOGLEBOT, "crawler"),
    (BINGBOT, "crawler"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "crawler"),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "crawler"),
])
def test_bot_kind(ua: str, kind: str | None) -> None:
    assert bot_kind(ua) == kind


def test_answers_are_cached_by_the_user_agent() -> None:
    bot_kind.cache_clear()
    for _ in range(3):
        bot_kind(GOOGLEBOT)
    info = bot_kind.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_the_action_by_kind_defaults_drop_crawlers_and_flag_headless_browsers() -> None:
    assert action(Bots(), GOOGLEBOT) == ("crawler", "drop")
    assert action(Bots(), HEADLESS) == ("headless", "flag")
    assert action(Bots("keep", "drop"), HEADLESS) == ("headless", "drop")
    assert action(Bots(), CHROME) is None
    assert action(Bots(), None) is None
