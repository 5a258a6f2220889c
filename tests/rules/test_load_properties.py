"""Properties of the rules loader on arbitrary YAML-ish input (hypothesis): whatever a rules
directory holds, ``relay check``'s loader answers rules or ``file:line:col: Rxxx``
diagnostics, never an exception; an answer without rules has at least one error."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from relay.registry import check_rules

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
SHIPPED_TEXT = {p.name: p.read_text() for p in sorted(SHIPPED.glob("*.yaml"))}
ENV = {"RELAY_SECRET": "a-property-test-cookie-secret", "BACKEND_SIGNING_SECRET": "b" * 32}
DIAGNOSTIC = re.compile(r"^[^\n]+:\d+:\d+: R\d{3} \S")

SECTIONS = st.sampled_from(["relay", "purposes", "sources", "events", "pipelines",
                            "destinations", "proxy", "tests", "bogus"])
WORDS = st.sampled_from([
    "type", "purpose", "events", "settings", "pipeline", "browser", "webhook", "segment",
    "auth", "hmac", "bearer", "default", "prefix", "cookie", "secret", "ip", "truncate",
    "hash", "url", "keep_params", "file", "path", "ga4", "analytics", "ads", "*", "when",
    "properties", "required", "upstream", "retry", "attempts", "rate_limit", "${X}",
    "${RELAY_SECRET:-x}", "${", "}", "30m", "-1", "1e400",
]) | st.text(max_size=6)
LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | WORDS
TREES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WORDS, inner, max_size=4),
    max_leaves=25,
)
DOCUMENTS = st.dictionaries(SECTIONS, TREES, max_size=5)
JUNK = st.text(alphabet=st.sampled_from([*":-{}[],'\"&*!|>#%@` \n\t\\x0\x07", "\ufeff"]),
               max_size=12)


def check(files: dict[str, str | bytes]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            data = text if isinstance(text, bytes) else text.encode()
            Path(tmp, name).write_bytes(data)
        rules, diagnostics = check_rules(tmp, ENV)
    rendered = [d.render() for d in diagnostics]
    for line in rendered:
        assert DIAGNOSTIC.match(line), line
    if rules is None:
        assert any(d.severity == "error" for d in diagnostics), rendered
    return rendered


@given(DOCUMENTS)
def test_any_yaml_tree_gives_rules_or_diagnostics(document: dict[str, Any]) -> None:
    check({"rules.yaml": yaml.safe_dump(document, allow_unicode=True)})


@given(st.sampled_from(sorted(SHIPPED_TEXT)), st.data())
def test_a_shipped_file_with_random_damage_gives_diagnostics(name: str, data: st.DataObject
                                                            ) -> None:
    text = SHIPPED_TEXT[name]
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        cut = data.draw(st.integers(min_value=0, max_value=20))
        text = text[:at] + data.draw(JUNK) + text[at + cut:]
    check({**SHIPPED_TEXT, name: text})


@given(st.text(max_size=200))
def test_any_text_gives_diagnostics(text: str) -> None:
    check({"rules.yaml": text})


@given(st.binary(max_size=200))
def test_any_bytes_give_diagnostics(data: bytes) -> None:
    check({"rules.yaml": data})


def test_a_control_character_or_a_byte_that_is_not_utf8_is_a_diagnostic() -> None:
    rendered = check({"rules.yaml": "relay:\n  prefix: /t\x08\n"})
    assert any(":2:13: R001 <top>: character U+0008 is not allowed in YAML" in line
               for line in rendered), rendered
    rendered = check({"rules.yaml": b"relay:\n  prefix: /\xe9t\n"})
    assert any(":2:12: R001 <top>: byte 0xe9 is not UTF-8" in line for line in rendered), rendered
