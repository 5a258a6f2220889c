from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from relay.registry import check_rules
from relay.rules import Diagnostic, Rules

# A small valid rules set, free of warnings; each test adds one snippet to it in a second
# file.
BASE = """\
purposes:
  analytics: {default: {EU: denied, "*": granted}}
sources:
  browser: {type: browser, allowed_origins: [https://shop.example]}
  backend: {type: webhook, auth: {bearer: rules-test-bearer-token}}
events:
  page_view: {}
pipelines:
  clean:
    - ip: truncate
    - hash: [user.email, user.phone]
destinations:
  archive: {type: file, events: "*", pipeline: clean, settings: {path: var/x.jsonl},
            legal_basis: consent, retention: 30 days}
"""

Check = Callable[..., tuple[Rules | None, list[Diagnostic]]]


@pytest.fixture
def check(tmp_path: Path) -> Check:
    """``check(snippet)``: validate BASE plus ``snippet`` (a YAML text) as a second file."""

    def run(
        snippet: str = "", env: Mapping[str, str] | None = None, base: str = BASE
    ) -> tuple[Rules | None, list[Diagnostic]]:
        (tmp_path / "0_base.yaml").write_text(base)
        (tmp_path / "1_case.yaml").write_text(snippet)
        return check_rules(tmp_path, {} if env is None else env)

    return run
