"""Relay: a first-party edge relay for web tracking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(rules_dir: str = "rules", **kwargs: Any) -> Starlette:
    """The relay as an ASGI app to mount under its prefix.

    ``app.mount("/t", relay.create_app("rules"))``; see ``relay.app.create_app``.
    """
    from relay.app import create_app as _create_app

    return _create_app(rules_dir, **kwargs)
