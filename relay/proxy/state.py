"""The proxy's state in one relay app: the script cache, the SHA-256 of each script seen,
each route's gate (requests in flight and waiting), and the hook to the relay's explicit consent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from relay.observe.metrics import Metrics
from relay.proxy.cache import ScriptCache
from relay.proxy.gate import Gate
from relay.rules.model import ProxyRoute

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
        # (route name, rest of the path, raw query) -> (the route, its cache key)
        self.keys: dict[tuple[str, str, bytes], tuple[ProxyRoute, str]] = {}
        self.gates: dict[str, Gate] = {}  # by route name; kept over rule reloads
        self.explicit_consent: ExplicitConsent | None = None

    def gate(self, route: ProxyRoute) -> Gate:
        """The route's gate, its limits as the current rules say."""
        gate = self.gates.get(route.name)
        if gate is None:
            gate = self.gates[route.name] = Gate(route.concurrency, route.waiters)
        elif (gate.limit, gate.size) != (route.concurrency, route.waiters):
            gate.resize(route.concurrency, route.waiters)
        return gate

    @property
    def inflight(self) -> dict[str, int]:
        """Requests in flight per route (routes that have had any)."""
        return {name: gate.inflight for name, gate in self.gates.items()}
