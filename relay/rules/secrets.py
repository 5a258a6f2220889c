"""Secrets out of sight: the rules tree as ``GET /rules`` and ``relay check`` may show it.

A value is secret when it came from the environment (``${VAR}``, recorded in
``Rules.secret_paths``) or sits anywhere under a key that names a credential (``secret``,
``token``, ``hmac``, ``auth``, ``api_key``, ``write_keys``, ...). Credentials inside URLs
(``redis://:pw@host``) are masked everywhere.

    >>> masked_tree(rules)["sources"]["backend"]
    {'type': 'webhook', 'auth': {'hmac': '***', 'tolerance': '***'}}
"""

from __future__ import annotations

import re
from collections.abc import Set
from typing import Any

from relay.rules.diagnostics import Path
from relay.rules.model import Rules

MASK = "***"
SECRET_KEYS = frozenset({
    "secret", "secrets", "api_secret", "token", "access_token", "hmac", "bearer", "write_keys",
    "password", "api_key", "private_key", "auth", "authorization", "token_auth", "write_key",
    "service_account",
})
# Vendor settings name their credentials in many ways: client_secret, pixel_access_token...
SECRET_SUFFIXES = ("_secret", "_token", "_password", "_api_key", "_private_key")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def masked_url(text: str) -> str:
    """``text`` with the credentials of any URL in it masked.

    >>> masked_url("postgresql://relay:pw@db:5432/relay")
    'postgresql://***@db:5432/relay'
    """
    return _USERINFO.sub(MASK + "@", text)


def is_secret_key(key: str) -> bool:
    key = key.lower().replace("-", "_")
    return key in SECRET_KEYS or key.endswith(SECRET_SUFFIXES)


def masked_tree(rules: Rules) -> dict[str, Any]:
    """A deep copy of the raw rules tree with every secret replaced by ``"***"``."""
    masked = _mask(rules.raw, (), rules.secret_paths, False)
    assert isinstance(masked, dict)
    return masked


def secret_values(tree: dict[str, Any], secret_paths: Set[Path]) -> dict[Path, str]:
    """Every secret scalar in ``tree`` by path, as text (to scrub messages that quote it)."""
    out: dict[Path, str] = {}
    _walk(tree, (), secret_paths, False, out)
    return out


def _mask(value: Any, path: Path, secret_paths: Set[Path], secret: bool) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, (*path, k), secret_paths, secret or is_secret_key(str(k)))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*path, i), secret_paths, secret) for i, v in enumerate(value)]
    if value is not None and (secret or path in secret_paths):
        return MASK
    if isinstance(value, str):
        return masked_url(value)
    return value


def _walk(value: Any, path: Path, secret_paths: Set[Path], secret: bool,
          out: dict[Path, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, (*path, k), secret_paths, secret or is_secret_key(str(k)), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, (*path, i), secret_paths, secret, out)
    elif value is not None and value != "" and (secret or path in secret_paths):
        out[path] = str(value)
