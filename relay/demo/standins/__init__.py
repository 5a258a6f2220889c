"""The demo's stand-in vendors: one module per vendor type, registered here by the
destination type they stand in for. Each answers the relay on the demo's own port as its
vendor does, in that vendor's wire format (``base`` says what they share)."""

from __future__ import annotations

from relay.demo.standins.base import StandIn
from relay.demo.standins.ga4 import Ga4StandIn
from relay.demo.standins.meta import MetaStandIn
from relay.demo.standins.plausible import PlausibleStandIn
from relay.demo.standins.posthog import PostHogStandIn
from relay.demo.standins.tiktok import TikTokStandIn

STANDINS: dict[str, type[StandIn]] = {
    "ga4": Ga4StandIn,
    "meta_capi": MetaStandIn,
    "plausible": PlausibleStandIn,
    "posthog": PostHogStandIn,
    "tiktok": TikTokStandIn,
}
