"""``relay datamap``: the record of processing on stdout, md or json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli import main
from tests.conftest import SHIPPED_RULES


def test_json_is_the_documented_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datamap", "--rules", str(SHIPPED_RULES), "--format", "json"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)  # only the map: rule warnings (R301) went to stderr
    assert "R301" in out.err
    [archive] = data["destinations"]
    assert archive["name"] == "archive" and archive["hashed"] == ["user.email", "user.phone"]
    assert archive["consent"] == {"gpc": None,
                                  "defaults": {"*": "granted", "EU": "denied", "UK": "denied"}}


def test_markdown_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datamap", "--rules", str(SHIPPED_RULES)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Record of processing\n")
    assert "\n## archive\n" in text and "| Legal basis | consent |" in text
    assert "| `user.email` | yes |" in text


def test_rules_with_an_error_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("destinations:\n  d: {type: nope}\n")
    assert main(["datamap", "--rules", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "R208" in out.err


def test_an_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["datamap", "--format", "text"])
    assert exc.value.code == 2
