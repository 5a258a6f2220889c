"""Durable outbox: SQLite (embedded default) and, later, Redis Streams."""
