"""Query parameters the steps know by name: the ad click identifiers.

The envelope copies them from the page URL's query into ``context.click_ids``; the ``url``
step and the proxy strip them from URLs; ``click_ids`` decides who may receive them.
"""

from __future__ import annotations

from typing import Final

CLICK_ID_PARAMS: Final = (
    "gclid",  # Google Ads
    "gbraid",  # Google Ads (iOS, app to web)
    "wbraid",  # Google Ads (iOS, web to app)
    "dclid",  # Google Display & Video 360
    "fbclid",  # Meta
    "msclkid",  # Microsoft Ads
    "ttclid",  # TikTok
    "li_fat_id",  # LinkedIn
    "twclid",  # X / Twitter
    "epik",  # Pinterest
    "rdt_cid",  # Reddit
    "yclid",  # Yandex
    "igshid",  # Instagram share id
    "sccid",  # Snapchat (sent as ScCid)
)
CLICK_ID_SET: Final = frozenset(CLICK_ID_PARAMS)
