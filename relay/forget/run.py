"""``forget``: the relay part, then the vendors', as one receipt (``relay.forget.receipt``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from relay.forget import local, vendors
from relay.ledger import Ledger
from relay.observe.log import LOG
from relay.personal import Subjects, normalize_identifier
from relay.rules.model import Rules
from relay.spool.base import Spool
from relay.state import State
from relay.types import ForgetContext

KINDS = ("id", "email", "phone")


def subject_of(given: Mapping[str, str], subjects: Subjects) -> str:
    """The keyed hash the receipt names the person by (the newest secret's)."""
    hashes = subjects.of(dict(given))
    if not hashes:
        raise ValueError("an empty identifier names nobody")
    return hashes[0]


def scrubber(given: Mapping[str, str], subject: str) -> Callable[[str], str]:
    """Replaces the identifier (as given, trimmed and normalized) with the subject hash."""
    forms = set()
    for kind, value in given.items():
        forms |= {value.strip(), normalize_identifier(value, kind == "phone")}
    found = sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)
    if not found:
        return lambda text: text
    pattern = re.compile("|".join(map(re.escape, found)), re.IGNORECASE)
    return lambda text: pattern.sub(f"[subject {subject[:12]}]", text)


def read_file(path: str) -> bytes:
    return Path(path).read_bytes()


async def forget(
    given: Mapping[str, str], *, rules: Rules, subjects: Subjects, spool: Spool,
    state: State | None, ledger: Ledger | None, client: httpx.AsyncClient,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Forget the person ``given`` names (one of ``{"id"|"email"|"phone": value}``): the
    relay's copies and links, then each destination's deletion. The receipt."""
    if len(given) != 1 or next(iter(given)) not in KINDS:
        raise ValueError("forget takes one of user id, email or phone")
    subject = subject_of(given, subjects)
    part = await local.purge(given, subjects, spool, state, ledger)
    ctx = ForgetContext(now(), read_file)
    destinations = await vendors.ask(rules, given, client, ctx, scrubber(given, subject))
    LOG.info("forget: subject %s: %d event(s), relay %s; %s", subject, part.events,
             "complete" if part.complete else "NOT complete",
             ", ".join(f"{d['name']} {d['status']}" for d in destinations) or "no destinations")
    return {"subject": subject, "relay": part.report(), "destinations": destinations}
