"""Rule directories for a test: the shipped ``rules/`` plus what the test adds.

Sections merge key by key across files (``relay.rules.source``), so additions go into one
extra file, ``zz-e2e.yaml``; a shipped key can only be changed with ``edit``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .relayproc import SHIPPED_RULES
from .vendor import StandInVendor

EXTRA_FILE = "zz-e2e.yaml"

# Fast retries for tests: the shipped defaults (1 s base, 10 min cap, a 30 s breaker
# cooldown) are right for production and far too slow for a bounded test.
FAST_RETRY: dict[str, Any] = {"attempts": 10, "base_backoff": "100ms", "max_backoff": "1s",
                              "max_age": "1h"}
FAST_BREAKER: dict[str, Any] = {"failures": 5, "cooldown": "1s"}


def webhook(vendor: StandInVendor | str, *, events: str | list[str] = "*",
            purpose: str = "analytics", pipeline: str | None = "minimize", timeout: str = "2s",
            retry: dict[str, Any] | None = None, concurrency: int | None = None,
            **extra: Any) -> dict[str, Any]:
    """A webhook destination aimed at ``vendor`` (its secret and batch mode included), or
    at a URL where no vendor runs yet (unsigned, one event per request)."""
    if isinstance(vendor, str):
        settings: dict[str, Any] = {"url": vendor}
    else:
        settings = {"url": vendor.url}
        if vendor.secret is not None:
            settings["secret"] = vendor.secret
        if vendor.batch:
            settings["batch"] = True
    dest: dict[str, Any] = {
        "type": "webhook", "purpose": purpose, "events": events, "settings": settings,
        "timeout": timeout, "retry": retry or dict(FAST_RETRY),
        "circuit_breaker": dict(FAST_BREAKER), "legal_basis": "consent", "retention": "1 day",
    }
    if pipeline is not None:
        dest["pipeline"] = pipeline
    if concurrency is not None:
        dest["concurrency"] = concurrency
    dest.update(extra)
    return dest


def make_rules(directory: Path, **sections: Any) -> Path:
    """Copy the shipped rules into ``directory`` and add ``sections`` (``destinations={...}``,
    ``relay={...}``, ``events={...}``) in one extra file."""
    directory.mkdir(parents=True, exist_ok=True)
    for src in sorted(SHIPPED_RULES.iterdir()):
        if src.suffix in (".yaml", ".yml"):
            shutil.copyfile(src, directory / src.name)
    extra = {k: v for k, v in sections.items() if v}
    if extra:
        write_yaml(directory / EXTRA_FILE, extra)
    return directory


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a rules file, let ``change`` modify the tree, write it back (comments are lost)."""
    data = yaml.safe_load(path.read_text()) or {}
    change(data)
    write_yaml(path, data)
