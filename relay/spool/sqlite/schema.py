"""The SQLite spool's tables, and the small SQL helpers its operations share."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

RESPONSE_BYTES = 2048  # how much of a vendor's answer (or an error) is kept

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, next_at);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    response TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dead_destination ON dead (destination);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL
);
"""

IDS = "id IN (SELECT value FROM json_each(?))"  # any number of ids as one JSON parameter
CLAIMED = "id, destination, event_id, payload, created_at, attempts"
DEAD = "id, destination, event_id, payload, created_at, failed_at, attempts, status, response"


def ids(values: Sequence[int]) -> str:
    return orjson.dumps(list(values)).decode()


def trim(text: str) -> str:
    data = text.encode()
    return text if len(data) <= RESPONSE_BYTES else data[:RESPONSE_BYTES].decode(errors="ignore")


def where(destination: str | None) -> tuple[str, tuple[str, ...]]:
    return ("", ()) if destination is None else (" WHERE destination = ?", (destination,))
