from __future__ import annotations

import logging

import orjson
import pytest

from relay.destinations import log

from .helpers import parse


def test_parse_settings() -> None:
    assert parse(log.parse_settings, None) == (log.LogSettings("info"), [])
    assert parse(log.parse_settings, {"level": "debug"}) == (log.LogSettings("debug"), [])
    settings, errors = parse(log.parse_settings, {"level": "inof", "fmt": 1})
    assert settings == log.LogSettings("info")
    assert errors == [
        "R101 destinations.d.settings.fmt: unknown key 'fmt'",
        "R105 destinations.d.settings.level: unknown value 'inof'",
    ]


async def test_write_logs_one_json_line_per_event(caplog: pytest.LogCaptureFixture) -> None:
    events = [{"event": "a", "event_id": "e1"}, {"event": "b", "event_id": "e2"}]
    with caplog.at_level(logging.DEBUG, logger="relay.destination.log"):
        await log.write(events, log.LogSettings("debug"))
    records = [r for r in caplog.records if r.name == "relay.destination.log"]
    assert [orjson.loads(r.getMessage()) for r in records] == events
    assert {r.levelno for r in records} == {logging.DEBUG}
