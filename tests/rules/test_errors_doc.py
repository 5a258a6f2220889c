"""docs/errors.md lists every diagnostic code the rule parsers can report, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from relay.rules import codes, fields, source

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_code_is_documented() -> None:
    defined = {
        value for module in (source, fields, codes) for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"R\d{3}", value)
    }
    documented = set(re.findall(r"^\| (R\d{3}) \|", DOC.read_text(), re.MULTILINE))
    assert len(defined) >= 50
    assert defined == documented
