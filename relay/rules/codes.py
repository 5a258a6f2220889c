"""The section codes (R2xx) and policy codes (R3xx) of the rule parsers, in one table;
docs/errors.md explains each.

The shared codes (R1xx) live in ``relay.rules.fields`` and the file codes (R0xx) in
``relay.rules.source``. ``relay.rules.parse`` re-exports these, so the docs check sees them all.
"""

from __future__ import annotations

__all__ = [
    "ADS_WITHOUT_ADS_PURPOSE",
    "BAD_AUTH",
    "BAD_AUTHORITY",
    "BAD_EVENT_NAME",
    "BAD_FIELD_PATH",
    "BAD_HEADER",
    "BAD_LEDGER",
    "BAD_NAME",
    "BAD_ORIGIN",
    "BAD_PIN",
    "BAD_PIN_USE",
    "BAD_PREFIX",
    "BAD_PROXY_PATH",
    "BAD_PROXY_SUBPATH",
    "BAD_REGION",
    "BAD_SPOOL_URL",
    "BAD_STATE_URL",
    "BAD_UPSTREAM",
    "BATCH_TOO_LARGE",
    "CACHE_NOT_GET",
    "CONSTRAINT_MISMATCH",
    "COUNTRY_WITHOUT_HEADER",
    "DUPLICATE_TEST",
    "EMPTY_SECRET",
    "FIELDS_NOT_DELIVERED",
    "GRANTED_IN_EU",
    "HOPS_IGNORED",
    "INSECURE_SAME_SITE",
    "IP_TO_ADS",
    "MIN_ABOVE_MAX",
    "MISSING_PURPOSE",
    "NEEDS_AUTHORITY",
    "NOT_A_STEP",
    "NOT_FOR_SOURCE_TYPE",
    "NO_DELETION",
    "NO_EXPECTATION",
    "NO_LEGAL_BASIS",
    "NO_RETENTION",
    "OPEN_BROWSER_ORIGINS",
    "OPEN_CONTRACT_TO_VENDOR",
    "PATH_CLASH",
    "PIPELINE_WITHOUT_VENDOR",
    "SECOND_BROWSER",
    "SEGMENT_WITHOUT_KEYS",
    "UNHASHED_IDENTIFIER",
    "UNKNOWN_DESTINATION",
    "UNKNOWN_DESTINATION_TYPE",
    "UNKNOWN_EVENT",
    "UNKNOWN_FIELD_TYPE",
    "UNKNOWN_OUTCOME",
    "UNKNOWN_PIPELINE",
    "UNKNOWN_PURPOSE",
    "UNKNOWN_SECTION",
    "UNKNOWN_SOURCE",
    "UNKNOWN_STEP",
    "UNKNOWN_VENDOR",
    "WEAK_SECRET",
    "WEBHOOK_WITHOUT_AUTH",
]

# References between sections
UNKNOWN_SECTION = "R201"
UNKNOWN_SOURCE = "R202"
UNKNOWN_PIPELINE = "R203"
UNKNOWN_PURPOSE = "R204"
UNKNOWN_EVENT = "R205"
UNKNOWN_DESTINATION = "R206"
UNKNOWN_STEP = "R207"
UNKNOWN_DESTINATION_TYPE = "R208"
BAD_NAME = "R209"
# relay
BAD_PREFIX = "R210"
BAD_STATE_URL = "R211"
BAD_SPOOL_URL = "R212"
INSECURE_SAME_SITE = "R213"
HOPS_IGNORED = "R214"  # a warning
BAD_HEADER = "R215"
BAD_LEDGER = "R216"
# purposes
BAD_REGION = "R220"
# sources
BAD_ORIGIN = "R222"
SECOND_BROWSER = "R224"
WEBHOOK_WITHOUT_AUTH = "R225"
SEGMENT_WITHOUT_KEYS = "R226"
BAD_AUTH = "R227"
NOT_FOR_SOURCE_TYPE = "R228"
EMPTY_SECRET = "R229"
# events
BAD_EVENT_NAME = "R230"
UNKNOWN_FIELD_TYPE = "R231"
MIN_ABOVE_MAX = "R232"
CONSTRAINT_MISMATCH = "R233"
BAD_AUTHORITY = "R234"
BAD_FIELD_PATH = "R235"
NEEDS_AUTHORITY = "R236"  # a warning
# pipelines
NOT_A_STEP = "R240"
# destinations
MISSING_PURPOSE = "R250"
BATCH_TOO_LARGE = "R251"
NO_DELETION = "R252"
# proxy
BAD_PROXY_PATH = "R260"
BAD_UPSTREAM = "R261"
BAD_PIN = "R262"
PATH_CLASH = "R263"
BAD_PROXY_SUBPATH = "R264"
CACHE_NOT_GET = "R265"
BAD_PIN_USE = "R266"
COUNTRY_WITHOUT_HEADER = "R267"  # a warning
UNKNOWN_VENDOR = "R268"
PIPELINE_WITHOUT_VENDOR = "R269"
# tests
UNKNOWN_OUTCOME = "R270"
DUPLICATE_TEST = "R271"
NO_EXPECTATION = "R272"
FIELDS_NOT_DELIVERED = "R273"
# Policy (R3xx): warnings that `relay check --strict` treats as errors. A weak secret also
# stops `relay serve` on a non-loopback address (relay.rules.policy); the others are the
# privacy lint, computed with the datamap (relay.datamap.policy).
WEAK_SECRET = "R301"
ADS_WITHOUT_ADS_PURPOSE = "R302"
UNHASHED_IDENTIFIER = "R303"
IP_TO_ADS = "R304"
NO_LEGAL_BASIS = "R305"
NO_RETENTION = "R306"
GRANTED_IN_EU = "R307"
OPEN_CONTRACT_TO_VENDOR = "R308"
# Abuse controls on the public surface (R32x).
OPEN_BROWSER_ORIGINS = "R320"
