"""The running relay, through its admin listener: what ``relay forget`` and ``relay dlq``
use when a relay answers at the rules' admin address (``relay.admin``: host, port, token),
so that they act on what it holds in memory rather than beside it."""

from __future__ import annotations

from typing import Any

import httpx

from relay.rules.model import Rules

PROBE_TIMEOUT = 2.0  # seconds: no answer this fast is no relay on this machine
CALL_TIMEOUT = 300.0  # a forget waits for every vendor's deletion API
WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}


class AdminRefused(Exception):
    """A relay answers at the admin address but refuses the request (its token differs)."""


def admin_url(rules: Rules, port: int | None = None) -> str:
    """``http://host:port`` of the admin listener; a wildcard bind is reached on loopback."""
    admin = rules.relay.admin
    host = WILDCARDS.get(admin.host, admin.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port if port is not None else admin.port}"


class AdminClient:
    """The admin listener of a running relay, with the rules' admin token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base, headers=headers, trust_env=False,
                                    timeout=CALL_TIMEOUT)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a 2xx; ``AdminRefused`` otherwise (with the relay's words)."""
        response = self._client.request(method, path, **kwargs)
        if response.status_code == 401:
            raise AdminRefused(f"the relay at {self.base} refuses the admin token (relay.admin"
                               ".token of these rules differs from the running relay's)")
        if not 200 <= response.status_code < 300:
            raise AdminRefused(f"the relay at {self.base} answered {path} with HTTP"
                               f" {response.status_code}: {response.text[:300]}")
        return response.json()


def running_relay(rules: Rules, port: int | None = None) -> AdminClient | None:
    """The admin listener when a relay answers at the rules' admin address, else None.

    A relay that answers but refuses the token raises ``AdminRefused``: working on the files
    beside it would miss what it holds in memory, so the caller must not fall back."""
    base = admin_url(rules, port)
    client = AdminClient(base, rules.relay.admin.token)
    try:
        response = client._client.get("/readyz", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        client.close()
        return None
    if response.status_code == 401:
        client.close()
        raise AdminRefused(f"a relay answers at {base} but refuses the admin token (relay.admin"
                           ".token of these rules differs from the running relay's)")
    if response.status_code not in (200, 503) or "rules_version" not in response.text:
        client.close()
        return None  # something else listens there: not a relay
    return client
