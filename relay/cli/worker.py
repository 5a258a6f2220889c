"""The application hypercorn's worker processes import when ``relay serve --workers N``."""

from __future__ import annotations

import os

from relay.app import serving_app
from relay.observe.log import configure
from relay.observe.workers import Sharing

configure(os.environ.get("RELAY_LOG_LEVEL", "").strip().upper() or "INFO")
app = serving_app(
    os.environ.get("RELAY_RULES_DIR", "rules"),
    os.environ.get("RELAY_VAR_DIR", "var"),
    int(os.environ["RELAY_ADMIN_PORT"]) if "RELAY_ADMIN_PORT" in os.environ else None,
    refuse_weak_secrets=os.environ.get("RELAY_PUBLIC") == "1",
    sharing=Sharing.from_env(os.environ),
)
