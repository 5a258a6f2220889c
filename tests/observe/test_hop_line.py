"""``relay.observe.log.hop``: the line it writes, byte for byte, and what listeners see."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from relay.observe import log


def test_a_hop_line_drops_empty_and_private_fields_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.BytesIO()
    monkeypatch.setattr(log, "_writer", log._LineWriter(stream))  # no loop: written at once
    seen: list[tuple[str, dict[str, Any], float]] = []
    stop = log.listen(lambda name, fields, at: seen.append((name, fields, at)))
    try:
        with caplog.at_level(logging.INFO, logger=log.HOPS.name):
            log.hop("spooled", at=1796281189.30951, event_id="e1", source="browser",
                    schema=None, consent={"analytics": "granted"}, destination="archive",
                    _payload=b"{}", status=0, attempt=1)
            log.hop("delivered", at=1.0, event_id="e2", latency_ms=1.5)
    finally:
        stop()
    assert stream.getvalue() == (
        b'{"ts":1796281189.31,"hop":"spooled","event_id":"e1","source":"browser",'
        b'"consent":{"analytics":"granted"},"destination":"archive","status":0,"attempt":1}\n'
        b'{"ts":1.0,"hop":"delivered","event_id":"e2","latency_ms":1.5}\n'
    )
    assert seen[0][1]["_payload"] == b"{}" and seen[0][1]["schema"] is None  # listeners: all
    assert [name for name, _, _ in seen] == ["spooled", "delivered"]
