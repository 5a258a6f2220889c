"""A vendor destination through the real engine: the shipped rules (and their ``minimize``
pipeline) plus one destination, a browser event in, the spool row and the copy's outcome
(what the debug view shows) out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import yaml

from relay.engine import Engine
from relay.engine.results import Copy, Meta
from relay.observe.mask import Masker
from relay.observe.metrics import Metrics
from relay.registry import load_rules
from relay.state.memory import MemoryState
from tests.conftest import SHIPPED_RULES

MASKER = Masker(b"test-masking-key-0123456789")
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0.0.0 Safari/537.36")
RECEIVED_MS = 1_795_867_200_000  # 2026-11-28T12:00:00Z


def engine_with(tmp_path: Path, name: str, destination: dict[str, Any]) -> Engine:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    (rules / "zz-test.yaml").write_text(yaml.safe_dump({"destinations": {name: destination}}))
    return Engine(load_rules(rules, {}), MemoryState(1000, 3600), Metrics(), MASKER)


async def run(engine: Engine, name: str, event: dict[str, Any], *, ip: str = "203.0.113.77",
              cid: str | None = "cid-1") -> tuple[Copy, Any]:
    """The copy for destination ``name`` and its spooled payload (None when not spooled)."""
    meta = Meta(engine.rules.sources["browser"], RECEIVED_MS, ip=ip, user_agent=CHROME,
                country="US", correlation_id=cid)
    batch = await engine.process([event], meta)
    [copy] = [c for c in batch.results[0].copies if c.destination == name]
    rows = [r for r in batch.rows if r.destination == name]
    return copy, (orjson.loads(rows[0].payload) if rows else None)


def check_errors(tmp_path: Path, text: str) -> list[str]:
    """``relay check`` on the shipped rules plus ``zz-test.yaml`` holding ``text``: the errors
    reported in that file, as ``zz-test.yaml:line:col: CODE path: message (hint)``."""
    from relay.registry import check_rules

    rules = tmp_path / "check"
    shutil.copytree(SHIPPED_RULES, rules)
    (rules / "zz-test.yaml").write_text(text)
    _, diagnostics = check_rules(rules, {})
    return [d.render().replace(f"{rules}/", "") for d in diagnostics
            if d.severity == "error" and "zz-test.yaml" in d.render()]
