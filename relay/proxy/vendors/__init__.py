"""The vendor hit formats a proxy route can rewrite (``vendor:`` in its rules).

One module per vendor, each pure: ``decode(body, headers, query) -> Payload`` reads the body
the way the vendor's library sends it, the ``Shape`` of its events maps the vendor's field
names to the envelope's paths (so the route's pipeline steps run on them), and
``encode(payload) -> Encoded`` writes it back in the same format. ``answer(query)`` is what
the vendor answers a hit it took, for the consent gate. Adding a vendor: one module, one
line below, one name in ``relay.rules.model.PROXY_VENDORS``, one test module.
"""

from __future__ import annotations

from relay.proxy.vendors import ga4, matomo, mixpanel, plausible, posthog, segment
from relay.proxy.vendors.base import VendorFormat

VENDORS: dict[str, VendorFormat] = {
    "posthog": posthog.FORMAT,
    "mixpanel": mixpanel.FORMAT,
    "ga4": ga4.FORMAT,
    "plausible": plausible.FORMAT,
    "matomo": matomo.FORMAT,
    "segment": segment.FORMAT,
}
