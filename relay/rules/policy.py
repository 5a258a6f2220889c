"""Policy checks: what validates, but must not face the internet.

Secrets are never defaults. Each hmac secret and bearer token of a ``webhook`` source and
each write key of a ``segment`` source must be at least ``MIN_SECRET_BYTES`` long and none
of the example values the relay ships with (``EXAMPLE_SECRETS``, or anything that starts
with "change-me"): anyone who read the README could sign purchases with those. A weak one is
a warning (R301) naming the source and the environment variable to set; ``relay check
--strict`` makes it an error, and ``relay serve`` refuses to start on any address but
loopback (``relay.cli.serve``). A missing secret is an error already (R003, R225, R226,
R229). The cookie secret is not checked: ``relay serve`` generates one when it is unset.

    rules/sources.yaml:9:18: R301 sources.backend.auth.hmac: source 'backend': the hmac
        secret is an example value shipped with the relay (set BACKEND_SIGNING_SECRET to a
        random value of at least 16 bytes, like the output of `openssl rand -hex 32`)

A message never quotes the secret, so ``relay.rules.check_rules`` does not scrub it.
"""

from __future__ import annotations

import re

from relay.rules.codes import WEAK_SECRET
from relay.rules.fields import At
from relay.rules.reader import Reader

MIN_SECRET_BYTES = 16
# Every example source secret shipped in rules/, docs/*.md and README.md (the demo's rules
# get fresh random ones per run). tests/rules/test_policy.py scans those files to keep this
# list complete; a value is never removed, since old deployments may still run on it.
EXAMPLE_SECRETS = frozenset({
    "change-me-backend-secret",
})
_EXAMPLE_PREFIX = re.compile(r"^change[-_ ]?me", re.IGNORECASE)
POLICY_CODES = frozenset({WEAK_SECRET})
GENERATE = "like the output of `openssl rand -hex 32`"
# What a suggested variable is called after the source's name: BACKEND_SIGNING_SECRET.
_SUFFIX = {"hmac secret": "SIGNING_SECRET", "bearer token": "TOKEN", "write key": "WRITE_KEY"}


def weakness(value: str) -> str | None:
    """Why ``value`` must not guard a source on the internet, or None when it may."""
    if value in EXAMPLE_SECRETS or _EXAMPLE_PREFIX.match(value):
        return "is an example value shipped with the relay"
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        return f"is {size} byte{'' if size == 1 else 's'} long, shorter than {MIN_SECRET_BYTES}"
    return None


def suggested_variable(source: str, what: str) -> str:
    """``("backend", "hmac secret")`` -> ``BACKEND_SIGNING_SECRET``."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", source).strip("_").upper() or "SOURCE"
    return f"{stem}_{_SUFFIX.get(what, 'SECRET')}"


def check_secrets(r: Reader, source: str, at: At, what: str) -> None:
    """Warn (R301) about each weak secret at ``at``: one string or a list of them."""
    items = at.items() if isinstance(at.value, list) else [at]
    for item in items:
        if not isinstance(item.value, str) or not item.value:
            continue  # not a string (R102) or empty (dropped, or R229): reported already
        why = weakness(item.value)
        if why is None:
            continue
        names = r.raw.variables.get(item.path, ())
        length = f"a random value of at least {MIN_SECRET_BYTES} bytes, {GENERATE}"
        if names:
            hint = f"set {' and '.join(names)} to {length}"
            if item.path in r.raw.defaulted:
                hint += "; unset, the default written in the file is used"
        else:
            name = suggested_variable(source, what)
            hint = (f"it is written in the file: move it to an environment variable, "
                    f'"${{{name}}}", and set {name} to {length}')
        r.rep.warning(item.path, WEAK_SECRET, f"source '{source}': the {what} {why}", hint)
