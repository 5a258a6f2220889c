"""One worker process of ``relay serve --workers N`` (started by ``relay.cli.master``): the
relay, made from what the main process put in the environment, under the chosen server on
the main process's listening sockets."""

from __future__ import annotations

import os
import socket

from relay.cli.servers import Server, run


def main(server: Server, sockets: list[socket.socket]) -> None:
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
    run(server, app, sockets)
