"""The relay's HMAC signature scheme, for backend webhooks in and webhook destinations out
(so a relay can feed another relay)::

    X-Relay-Signature: t=1764331200,v1=<hex HMAC-SHA256(secret, "1764331200." + body)>

Several ``v1=`` values may be sent (the sender signing with old and new secrets while rotating);
the verifier accepts the header when any of them matches any of its secrets.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Relay-Signature"


def sign(secret: str, body: bytes, t: int) -> str:
    """The ``X-Relay-Signature`` value for ``body`` sent at unix time ``t``."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def verify(
    secrets: Sequence[str] | str, header: str | None, body: bytes, now: float, tolerance: float
) -> bool:
    """True when ``header`` signs ``body`` with one of ``secrets`` and its ``t`` is within
    ``tolerance`` seconds of ``now`` (either side). Comparisons are constant-time."""
    if not header:
        return False
    if isinstance(secrets, str):
        secrets = (secrets,)
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                t = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value)
    if t is None or not candidates or abs(now - t) > tolerance:
        return False
    ok = False
    for secret in secrets:
        expected = sign(secret, body, t).rpartition("v1=")[2]
        for candidate in candidates:
            # No early exit: every pair is compared, so timing does not tell which matched.
            ok |= hmac.compare_digest(expected, candidate)
    return ok
