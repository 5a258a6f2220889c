"""Destination types: one module each, registered here by name (the rule key ``type``).

Each module holds pure ``parse_settings`` / ``build_request`` / ``classify`` functions (or a
``write`` for local sinks) and one ``DESTINATION`` definition; ``relay.dispatch`` does the I/O.
"""

from __future__ import annotations

from relay.destinations import file, log, matomo, mixpanel, posthog, webhook
from relay.types import DestinationDef

DESTINATIONS: dict[str, DestinationDef] = {
    "file": file.DESTINATION,
    "log": log.DESTINATION,
    "matomo": matomo.DESTINATION,
    "mixpanel": mixpanel.DESTINATION,
    "posthog": posthog.DESTINATION,
    "webhook": webhook.DESTINATION,
}
