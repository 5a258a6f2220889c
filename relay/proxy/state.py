"""The proxy's state in one relay app: the script cache, the SHA-256 of each script seen,
requests in flight per route, and the hook to the relay's explicit consent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from relay.observe.metrics import Metrics
from relay.proxy.cache import ScriptCache

ExplicitConsent = Callable[[str], Awaitable[Mapping[str, Any] | None]]


class ProxyState:
    """``explicit_consent(correlation_id)`` returns the latest explicit consent the relay
    holds for that browser (``{"ads": "granted", ...}``) or None; it is asked only for routes
    with a purpose and only when the request carries a valid correlation cookie. None (the
    default) reads the runtime's state store (``State.consent_for``, what the engine
    remembers from the browser's events).
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.cache = ScriptCache()
        self.digests: dict[str, str] = {}  # upstream URL -> sha256 of the last good script
        self.inflight: dict[str, int] = {}
        self.explicit_consent: ExplicitConsent | None = None
