"""What the demo's handlers share: its configuration and the ``Demo`` object
(``app.state.demo``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx

from relay.demo.decisions import Decisions
from relay.demo.inbox import Inbox
from relay.demo.lineup import Vendor, lineup
from relay.demo.record import Recorder
from relay.rules.model import Rules
from relay.runtime import Runtime

RULES_DIR = Path(__file__).parent / "rules"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ADMIN_MOUNT = "/admin"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, slots=True)
class DemoConfig:
    workdir: Path  # spool, var and the archive file
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST

    @property
    def loopback(self) -> str:
        """The host this process reaches itself on (a wildcard bind is reached locally)."""
        if self.host in WILDCARD_HOSTS:
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host

    @property
    def base_url(self) -> str:
        return f"http://{self.loopback}:{self.port}"


def demo_env(config: DemoConfig) -> dict[str, str]:
    """The variables the demo rules use: where this process is, and fresh random secrets
    (the cookie's, the backend's, and the vendors' keys its stand-ins expect)."""
    return {
        "DEMO_HOST": config.loopback,
        "DEMO_PORT": str(config.port),
        "DEMO_VAR": str(config.workdir.resolve()),
        "DEMO_COOKIE_SECRET": secrets.token_urlsafe(32),
        "DEMO_BACKEND_SECRET": secrets.token_urlsafe(32),
        "DEMO_GA4_API_SECRET": secrets.token_urlsafe(16),
        "DEMO_POSTHOG_API_KEY": "phc_" + secrets.token_hex(20),
        "DEMO_META_ACCESS_TOKEN": "EAA" + secrets.token_hex(24),
        "DEMO_TIKTOK_ACCESS_TOKEN": secrets.token_hex(20),
    }


class Demo:
    """What the demo's handlers share (``app.state.demo``)."""

    def __init__(
        self,
        config: DemoConfig,
        runtime: Runtime,
        env: dict[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.env = env  # demo_env: what the rules read, secrets included
        self.backend_secret = env["DEMO_BACKEND_SECRET"]
        self.recorder = Recorder()
        self.decisions = Decisions(self.recorder)
        self.inbox = Inbox()
        self.rules_dir = RULES_DIR
        self.vendors: list[Vendor] = lineup(runtime.rules, config.base_url)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def rules(self) -> Rules:
        return self.runtime.rules

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def client(self) -> httpx.AsyncClient:
        """The backend's client for posting to the relay over loopback."""
        if self._client is None:
            # Loopback only: never through a proxy from the environment.
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=10.0, trust_env=False
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
