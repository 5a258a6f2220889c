"""Rule sets for the datamap tests: the small complete base of the docs' examples
(tests/docs_base/base.yaml, free of warnings) plus a test's own ``dest.yaml``."""

from __future__ import annotations

import shutil
from pathlib import Path

from relay.datamap import DataMap, Entry, datamap
from relay.registry import check_rules
from relay.rules.model import Rules

BASE = Path(__file__).resolve().parents[1] / "docs_base" / "base.yaml"
PRIVACY = ("R302", "R303", "R304", "R305", "R306", "R307", "R308")


ACCEPT = ('"*": reject', '"*": accept')  # a ``base`` edit: events without a contract pass


def rules_with(tmp_path: Path, text: str,
               base: tuple[str, str] | None = None) -> tuple[Rules | None, list[str]]:
    """(rules, every diagnostic rendered, file names relative to the rules directory);
    ``base`` replaces one text of the base by another."""
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    shutil.copyfile(BASE, directory / "base.yaml")
    if base is not None:
        original = BASE.read_text()
        assert base[0] in original
        (directory / "base.yaml").write_text(original.replace(*base))
    (directory / "dest.yaml").write_text(text)
    rules, diagnostics = check_rules(directory, {})
    return rules, [d.render().replace(f"{directory}/", "") for d in diagnostics]


def lint(tmp_path: Path, text: str, base: tuple[str, str] | None = None) -> list[str]:
    """The privacy lint's warnings, as ``file:line:col: CODE path``."""
    rules, lines = rules_with(tmp_path, text, base)
    assert rules is not None, lines  # the lint runs on rules without errors
    out = []
    for line in lines:
        where, code, path = line.split(" ", 3)[:3]
        if code in PRIVACY:
            out.append(f"{where} {code} {path.rstrip(':')}")
    return out


def dmap(tmp_path: Path, text: str, base: tuple[str, str] | None = None) -> DataMap:
    rules, lines = rules_with(tmp_path, text, base)
    assert rules is not None, lines
    return datamap(rules)


def entry(tmp_path: Path, text: str, name: str,
          base: tuple[str, str] | None = None) -> Entry:
    [found] = [e for e in dmap(tmp_path, text, base).destinations if e.name == name]
    return found
