"""Bots, recognised from the user agent (pure, cached): ``bot_kind``.

- ``crawler``: what the user-agent parser (``ua-parser``, the one ``relay.pipeline.user_agent``
  uses) calls a spider: Googlebot, bingbot, AhrefsBot, facebookexternalhit, ...;
- ``headless``: a browser that says it runs without a screen (``HeadlessChrome``,
  ``PhantomJS``, ``SlimerJS``, ``HtmlUnit``): synthetic monitors and scrapers, and the
  relay's own browser tests.

Tools that are not browsers (curl, HTTP libraries) are neither: they are not pretending to be
visitors, and the README's quick start posts with curl. A parse costs about 0.65 ms, so it
shares the pipeline's cache, keyed by the user-agent string, and the answer has its own.

    >>> bot_kind("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    'crawler'
    >>> bot_kind("Mozilla/5.0 (X11; Linux x86_64) ... HeadlessChrome/131.0.0.0 Safari/537.36")
    'headless'
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

from relay.pipeline.user_agent import UA_CACHE_SIZE, device
from relay.rules.model import BotAction, Bots

BotKind = Literal["crawler", "headless"]
MAX_UA_CHARS: Final = 1024  # longer user agents are cut before parsing (no browser sends one)
_HEADLESS: Final = re.compile(r"HeadlessChrome/|PhantomJS/|SlimerJS/|HtmlUnit")


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def bot_kind(user_agent: str) -> BotKind | None:
    """``crawler``, ``headless`` or None (a person's browser, or no browser at all)."""
    ua = user_agent[:MAX_UA_CHARS]
    if _HEADLESS.search(ua):
        return "headless"
    if device(ua)[0] == "bot":
        return "crawler"
    return None


def action(bots: Bots, user_agent: str | None) -> tuple[BotKind, BotAction] | None:
    """The bot's kind and what the source does with its events; None for no bot."""
    kind = bot_kind(user_agent) if user_agent else None
    if kind is None:
        return None
    return kind, bots.crawlers if kind == "crawler" else bots.headless
