from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import orjson
import pytest

from relay.destinations import file
from relay.errors import Retryable
from relay.types import Event

from .helpers import parse


def test_parse_settings() -> None:
    settings, errors = parse(file.parse_settings, {"path": "var/events.jsonl", "fsync": True})
    assert errors == []
    assert settings == file.FileSettings(path="var/events.jsonl", fsync=True)
    assert parse(file.parse_settings, {"path": "x"})[0] == file.FileSettings("x", False)


def test_parse_settings_reports_mistakes() -> None:
    settings, errors = parse(file.parse_settings, {"pth": "x", "fsync": "yes"})
    assert settings is None
    assert errors == [
        "R101 destinations.d.settings.pth: unknown key 'pth'",
        "R103 destinations.d.settings: missing required key 'path'",
        "R102 destinations.d.settings.fsync: expected true or false, got a string",
    ]


def test_render_is_one_line_per_event() -> None:
    events: list[Event] = [{"event": "a", "n": 1}, {"event": "b", "text": "line\nbreak"}]
    data = file.render(events)
    assert data.count(b"\n") == 2
    assert [orjson.loads(line) for line in data.splitlines()] == events


async def test_write_appends_in_one_write_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "events.jsonl"
    settings = file.FileSettings(str(path), fsync=True)
    real_write = os.write
    with mock.patch("relay.destinations.file.os.write", side_effect=real_write) as spy:
        await file.write([{"event": "a"}, {"event": "b"}], settings)
        await file.write([{"event": "c"}], settings)
    assert spy.call_count == 2
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["event"] for line in lines] == ["a", "b", "c"]


async def test_write_failure_is_retryable(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    settings = file.FileSettings(str(tmp_path / "blocker" / "events.jsonl"))
    with pytest.raises(Retryable, match="blocker"):
        await file.write([{"event": "a"}], settings)


def test_place_resolves_the_path_and_keeps_the_rest() -> None:
    settings = file.FileSettings("var/events.jsonl", fsync=True)
    placed = file.place(settings, lambda p: "/srv/relay/" + p.removeprefix("var/"))
    assert placed == file.FileSettings("/srv/relay/events.jsonl", fsync=True)
    assert file.DESTINATION.place is file.place
