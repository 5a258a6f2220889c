"""deploy/'s READMEs: every relative link names a file of the repository (and a heading
when it has '#'), and none points at what a clone does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_docs import _LINK, anchors, prose

from .promql import DEPLOY

READMES = sorted(DEPLOY.rglob("*.md"))


@pytest.mark.parametrize("doc", READMES, ids=[str(d.relative_to(DEPLOY)) for d in READMES])
def test_links_resolve(doc: Path) -> None:
    links = 0
    for m in _LINK.finditer(prose(doc)):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z]+:", target):
            continue
        links += 1
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc}: {target} does not exist"
        if anchor:
            assert anchor in anchors(path), f"{doc}: no heading for {target}"
    assert "SPEC" not in doc.read_text() and "../shared" not in doc.read_text()
    if doc.name == "README.md":
        assert links > 0


def test_the_readme_links_to_the_validation_table() -> None:
    assert "what-was-validated-and-how" in anchors(DEPLOY / "README.md")
