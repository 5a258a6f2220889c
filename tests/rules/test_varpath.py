"""Relative paths in the rules resolve under the var directory; a leading var/ is that
directory itself; absolute paths stay."""

from __future__ import annotations

import pytest

from relay.rules.varpath import under_var


@pytest.mark.parametrize(("path", "var_dir", "expected"), [
    ("var/spool.db", "var", "var/spool.db"),                  # the shipped rules, default --var
    ("var/spool.db", "/srv/relay", "/srv/relay/spool.db"),    # ... moved by --var
    ("./var/events.jsonl", "/srv/relay", "/srv/relay/events.jsonl"),
    ("spool.db", "var", "var/spool.db"),
    ("spool.db", "/srv/relay", "/srv/relay/spool.db"),
    ("data/events.jsonl", "/srv/relay", "/srv/relay/data/events.jsonl"),
    ("variable/x.db", "/srv/relay", "/srv/relay/variable/x.db"),  # only a whole component
    ("/abs/spool.db", "/srv/relay", "/abs/spool.db"),
    ("/var/lib/relay/spool.db", "/srv/relay", "/var/lib/relay/spool.db"),
])
def test_under_var(path: str, var_dir: str, expected: str) -> None:
    assert under_var(path, var_dir) == expected
