"""Segment: the names of Segment's spec that the relay maps, both ways.

``relay.ingest.segment_map`` reads Segment messages into envelopes with these tables.
"""

from __future__ import annotations

from typing import Final

MESSAGE_TYPES: Final = ("track", "page", "screen", "identify", "group", "alias")
# A message's type -> the relay's event name (a track names its own event).
EVENTS_BY_TYPE: Final = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
# Traits that say who the user is (Segment's reserved traits) -> ``user.*``.
IDENTITY_TRAITS: Final = (
    ("email", "email"),
    ("phone", "phone"),
    ("firstName", "first_name"),
    ("lastName", "last_name"),
    ("birthday", "date_of_birth"),
)
# ``traits.address.*`` -> ``user.address.*``.
ADDRESS_FIELDS: Final = (
    ("street", "street"),
    ("city", "city"),
    ("state", "region"),
    ("postalCode", "postal_code"),
    ("country", "country"),
)
