"""Relay: a first-party edge relay for web tracking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.version import __version__

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["__version__", "create_app"]


def create_app(rules_dir: str = "rules", **kwargs: Any) -> Starlette:
    """The relay as an ASGI app to mount under its prefix.

    ``app.mount("/t", relay.create_app("rules"))``; see ``relay.app.create_app``.
    """
    from relay.app import create_app as _create_app

    return _create_app(rules_dir, **kwargs)
