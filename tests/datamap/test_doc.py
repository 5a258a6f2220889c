"""docs/datamap.md is the shipped rules' record of processing, as `relay datamap` prints it."""

from __future__ import annotations

import pytest

from relay.datamap import datamap
from relay.datamap.render import to_markdown
from relay.registry import load_rules
from tests.conftest import ROOT

DOC = ROOT / "docs" / "datamap.md"
REGENERATE = "relay datamap --rules rules --format md > docs/datamap.md"


def test_docs_datamap_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    # From the repository's root, as the command runs: the rules version is a digest of the
    # files' names (as given) and contents.
    monkeypatch.chdir(ROOT)
    rules = load_rules("rules", {})
    assert DOC.read_text(encoding="utf-8") == to_markdown(datamap(rules), rules), (
        f"docs/datamap.md is not the datamap of rules/: run `{REGENERATE}` at the root")
