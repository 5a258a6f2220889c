from __future__ import annotations

from typing import Any

from relay.rules.diagnostics import Reporter
from relay.rules.fields import At


def parse(parse_settings: Any, value: Any) -> tuple[Any, list[str]]:
    """Run a ``parse_settings`` on ``value``: (settings, rendered errors)."""
    rep = Reporter()
    settings = parse_settings(At(value, ("destinations", "d", "settings"), rep))
    return settings, [f"{d.code} {'.'.join(map(str, d.path))}: {d.message}" for d in rep.errors]
