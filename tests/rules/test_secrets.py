"""masked_tree: the rules as GET /rules and relay check show them, secrets as ***."""

from __future__ import annotations

import json
from pathlib import Path

from relay.registry import load_rules
from relay.rules.secrets import MASK, is_secret_key, masked_tree

CASES = Path(__file__).resolve().parent / "cases"
SPEC_ENV = {
    "RELAY_SECRET": "cookie-secret-value",
    "BACKEND_SIGNING_SECRET": "backend-secret-value",
    "SEGMENT_WRITE_KEY": "segment-write-key-value",
}


def test_spec_secrets_are_masked() -> None:
    rules = load_rules(CASES / "spec", SPEC_ENV)
    masked = masked_tree(rules)
    text = json.dumps(masked)
    for value in SPEC_ENV.values():
        assert value not in text
    assert masked["relay"]["cookie"]["secret"] == MASK
    assert masked["sources"]["backend"]["auth"]["hmac"] == MASK
    assert masked["sources"]["apps"]["write_keys"] == [MASK]
    # everything else is shown as written
    assert masked["relay"]["cookie"]["name"] == "_rc"
    assert masked["destinations"]["ga4"]["events"] == ["page_view", "purchase"]
    assert masked["sources"]["browser"] == {"type": "browser"}
    assert masked["tests"][0]["expect"] == {"ga4": "suppressed", "archive": "delivered"}


def test_masking_copies() -> None:
    rules = load_rules(CASES / "spec", SPEC_ENV)
    masked_tree(rules)
    assert rules.raw["relay"]["cookie"]["secret"] == "cookie-secret-value"


def test_literal_secrets_env_values_and_url_credentials() -> None:
    env = {
        "RELAY_SECRET": "cookie-secret-value", "BACKEND_TOKEN": "backend-token-value",
        "SPOOL_URL": "redis://:spool-password@redis:6379/0",
        "ARCHIVE_DIR": "/data/private-dir",
    }
    rules = load_rules(CASES / "env", env)
    masked = masked_tree(rules)
    text = json.dumps(masked)
    for secret in ("cookie-secret-value", "backend-token-value", "spool-password",
                   "literal-hook-secret", "private-dir"):
        assert secret not in text
    assert masked["sources"]["backend"]["auth"] == {"bearer": [MASK, MASK]}
    assert masked["destinations"]["hook"]["settings"] == {
        "url": "https://hooks.example/in", "secret": MASK,
    }
    assert masked["relay"]["spool"] == MASK  # it came from ${SPOOL_URL}
    assert masked["destinations"]["archive"]["settings"]["path"] == MASK


def test_credential_keys_anywhere(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "relay:\n"
        "  admin: {token: admin-token-value}\n"
        "  state: 'redis://user:state-password@redis:6379/0'\n"
        "  ledger: {url: 'postgresql://relay:ledger-password@db:5432/relay'}\n"
        "destinations:\n"
        "  w:\n"
        "    type: webhook\n"
        "    purpose: p\n"
        "    settings: {url: 'https://x.example/', headers: {Authorization: Bearer hdr-value,"
        " X-Pixel-Access-Token: px}}\n"
        "purposes:\n  p: {}\n"
    )
    masked = masked_tree(load_rules(tmp_path, {}))
    assert masked["relay"]["admin"]["token"] == MASK
    assert masked["relay"]["state"] == "redis://***@redis:6379/0"
    assert masked["relay"]["ledger"]["url"] == "postgresql://***@db:5432/relay"
    headers = masked["destinations"]["w"]["settings"]["headers"]
    assert headers == {"Authorization": MASK, "X-Pixel-Access-Token": MASK}
    assert masked["purposes"] == {"p": {}}


def test_secret_key_names() -> None:
    for key in ("secret", "secrets", "api_secret", "token", "access_token", "hmac", "bearer",
                "write_keys", "password", "api_key", "private_key", "auth", "client_secret",
                "pixel_access_token", "API_KEY", "X-Api-Key"):
        assert is_secret_key(key), key
    for key in ("dedup_max_keys", "tokenizer", "description", "name", "path"):
        assert not is_secret_key(key), key
