"""A fresh PostgreSQL schema per test, for the ledger on PostgreSQL (``relay.ledger.url:
postgresql://...``): on the server at ``RELAY_TEST_POSTGRES`` (by default the local one,
``postgresql://postgres@127.0.0.1:5432/test``, trust auth), dropped afterwards. Required,
never optional: a test that asks for one fails loudly when the server does not answer.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest

POSTGRES_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """The URL of a new, empty schema (its ``search_path``), dropped with all it holds."""
    schema = f"ledger_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is required for this test at {POSTGRES_URL} and is not"
                    f" reachable: {exc}. Start it (pg_ctlcluster --skip-systemctl-redirect"
                    f" 15 main start, or .ci/run) and run again.", pytrace=False)
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        options = urllib.parse.quote(f"-csearch_path={schema}")
        try:
            yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options={options}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
