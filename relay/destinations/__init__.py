"""Destination types: one module each, registered here by name (the rule key ``type``).

Each module holds pure ``parse_settings`` / ``build_request`` / ``classify`` functions (or a
``write`` for local sinks) and one ``DESTINATION`` definition; ``relay.dispatch`` does the I/O.
"""

from __future__ import annotations

from relay.destinations import (
    file,
    ga4,
    log,
    matomo,
    meta_capi,
    mixpanel,
    plausible,
    posthog,
    segment,
    tiktok,
    webhook,
)
from relay.types import DestinationDef

DESTINATIONS: dict[str, DestinationDef] = {
    "file": file.DESTINATION,
    "ga4": ga4.DESTINATION,
    "log": log.DESTINATION,
    "matomo": matomo.DESTINATION,
    "meta_capi": meta_capi.DESTINATION,
    "mixpanel": mixpanel.DESTINATION,
    "plausible": plausible.DESTINATION,
    "posthog": posthog.DESTINATION,
    "segment": segment.DESTINATION,
    "tiktok": tiktok.DESTINATION,
    "webhook": webhook.DESTINATION,
}
