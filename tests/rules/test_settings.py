"""``relay.ledger`` (relay.rules.settings): a SQLite file or a PostgreSQL database; any
other URL is R216, which names both."""

from __future__ import annotations

import pytest

from relay.registry import place

from .conftest import Check


@pytest.mark.parametrize("url", [
    "postgresql://relay:pw@db:5432/relay", "postgres://db/relay",
    "postgresql://db/relay?sslmode=require", "sqlite:////srv/relay/ledger.db",
])
def test_a_sqlite_file_or_a_postgresql_database(check: Check, url: str) -> None:
    rules, diagnostics = check(f"relay:\n  ledger: {{url: '{url}', retention: 7d}}\n")
    assert rules is not None, [d.render() for d in diagnostics]
    assert rules.relay.ledger.url == url and rules.relay.ledger.retention == 7 * 86400
    assert place(rules, "/srv/relay").relay.ledger.url == url  # a database is not under --var


@pytest.mark.parametrize("url", [
    "mysql://db/relay", "sqlite://ledger.db", "sqlite:///var/", "postgresql://db/ relay",
])
def test_other_urls_are_r216_naming_both(check: Check, url: str) -> None:
    rules, diagnostics = check(f"relay:\n  ledger: {{url: '{url}'}}\n")
    assert rules is None
    [d] = diagnostics
    assert d.code == "R216" and d.mark.line == 2
    text = d.render()
    assert "relay.ledger.url" in text and "sqlite:///var/ledger.db" in text
    assert "postgresql://user:password@host:5432/database" in text
