"""Secrets are never defaults: a webhook or Segment source secret that is short or a shipped
example is a warning (R301) at its own place, naming the source and the variable to set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.rules.diagnostics import Diagnostic, dotted
from relay.rules.policy import (
    EXAMPLE_SECRETS,
    MIN_SECRET_BYTES,
    suggested_variable,
    weakness,
)

from .conftest import Check

ROOT = Path(__file__).resolve().parents[2]
GOOD = "a-random-value-0123456789abcdef"
SOURCES = "sources:\n  backend: {type: webhook, auth: {hmac: \"%s\"}}\n"


def _r301(diagnostics: list[Diagnostic]) -> list[tuple[str, str, str]]:
    return [(dotted(d.path), d.message, d.hint or "") for d in diagnostics if d.code == "R301"]


@pytest.mark.parametrize(("value", "why"), [
    ("change-me-backend-secret", "is an example value shipped with the relay"),
    ("CHANGEME-and-then-some-more", "is an example value shipped with the relay"),
    ("change_me_please_0123456789", "is an example value shipped with the relay"),
    ("k", "is 1 byte long, shorter than 16"),
    ("fifteen-bytes!!", "is 15 bytes long, shorter than 16"),
    ("\u00e9" * 7, "is 14 bytes long, shorter than 16"),  # bytes, not characters
    ("sixteen-bytes!!!", None),
    (GOOD, None),
])
def test_weakness(value: str, why: str | None) -> None:
    assert weakness(value) == why


def test_suggested_variable() -> None:
    assert suggested_variable("backend", "hmac secret") == "BACKEND_SIGNING_SECRET"
    assert suggested_variable("pay-ments.v2", "bearer token") == "PAY_MENTS_V2_TOKEN"
    assert suggested_variable("apps", "write key") == "APPS_WRITE_KEY"


def test_an_example_secret_from_a_default_names_its_variable(check: Check) -> None:
    rules, diagnostics = check(SOURCES % "${HOOK_SECRET:-change-me-backend-secret}",
                               base=_base_without_backend())
    assert rules is not None  # a warning: the rules load
    [d] = [d for d in diagnostics if d.code == "R301"]
    assert d.severity == "warning"
    assert (d.mark.file.endswith("1_case.yaml"), d.mark.line, d.mark.col) == (True, 2, 41)
    assert dotted(d.path) == "sources.backend.auth.hmac"
    assert d.message == "source 'backend': the hmac secret is an example value shipped with " \
        "the relay"
    assert d.hint is not None and d.hint.startswith(
        "set HOOK_SECRET to a random value of at least 16 bytes")
    assert "unset, the default written in the file is used" in d.hint
    assert rules.policy == (d,)


def test_a_short_value_from_the_environment(check: Check) -> None:
    _, diagnostics = check(SOURCES % "${HOOK_SECRET}", {"HOOK_SECRET": "hunter2"},
                           base=_base_without_backend())
    [(path, message, hint)] = _r301(diagnostics)
    assert path == "sources.backend.auth.hmac"
    assert message == "source 'backend': the hmac secret is 7 bytes long, shorter than 16"
    assert hint.startswith("set HOOK_SECRET to ") and "default" not in hint
    assert "hunter2" not in message + hint


def test_a_literal_is_told_to_move_to_a_variable(check: Check) -> None:
    _, diagnostics = check("sources:\n  partner: {type: webhook, auth: {bearer: [tok]}}\n")
    [(path, message, hint)] = _r301(diagnostics)
    assert path == "sources.partner.auth.bearer[0]"
    assert message == "source 'partner': the bearer token is 3 bytes long, shorter than 16"
    assert hint.startswith('it is written in the file: move it to an environment variable, '
                           '"${PARTNER_TOKEN}", and set PARTNER_TOKEN to a random value')


def test_each_secret_of_a_rotation_list_is_checked_at_its_own_place(check: Check) -> None:
    snippet = ("sources:\n  apps:\n    type: segment\n    write_keys:\n"
               f"      - {GOOD}\n      - \"${{APPS_KEY_NEXT}}\"\n")
    _, diagnostics = check(snippet, {"APPS_KEY_NEXT": "abc"})
    [d] = [d for d in diagnostics if d.code == "R301"]
    assert (d.mark.line, d.mark.col, dotted(d.path)) == (6, 9, "sources.apps.write_keys[1]")
    assert d.message == "source 'apps': the write key is 3 bytes long, shorter than 16"
    assert d.hint is not None and d.hint.startswith("set APPS_KEY_NEXT to ")


def test_good_secrets_and_broken_sources_get_no_policy_warning(check: Check) -> None:
    rules, diagnostics = check(
        f"sources:\n  apps: {{type: segment, write_keys: [{GOOD}]}}\n"
        f"  hook: {{type: webhook, auth: {{hmac: [{GOOD}, '{GOOD}-next']}}}}\n")
    assert diagnostics == [] and rules is not None and rules.policy == ()
    _, diagnostics = check("sources:\n  s: {type: webhook, auth: {hmac: a, bearer: b}}\n")
    assert [d.code for d in diagnostics] == ["R227"]  # the real problem, not also R301


def test_the_shipped_rules_warn_about_their_example_secret() -> None:
    from relay.registry import check_rules

    rules, diagnostics = check_rules(ROOT / "rules", {})
    assert rules is not None
    [d] = rules.policy
    assert diagnostics == [d]  # a warning, and the only one
    assert d.render().startswith("%s:15:18: R301 sources.backend.auth.hmac: source 'backend'"
                                 % (ROOT / "rules" / "sources.yaml"))
    assert "set BACKEND_SIGNING_SECRET to" in d.render()
    rules, _ = check_rules(ROOT / "rules", {"BACKEND_SIGNING_SECRET": GOOD})
    assert rules is not None and rules.policy == ()


# -- the list of shipped example secrets is complete ------------------------------------------

SHIPPED = [*sorted((ROOT / "rules").glob("*.y*ml")), *sorted((ROOT / "docs").glob("*.md")),
           ROOT / "README.md"]
# A source secret in YAML (rules, docs' examples, commented-out lines too): the value after
# hmac:, bearer: or write_keys:, one scalar or a flow list of them.
_YAML_SECRET = re.compile(r"\b(?:hmac|bearer|write_keys)\s*:\s*(\[[^\]\n]*\]|[^,}\s#][^,}\n#]*)")
# A secret in a shell or Python example: -hmac VALUE, secret=VALUE, *_SECRET=VALUE, ...
_SHELL_SECRET = re.compile(
    r"(?:-hmac\s+|\b(?:secret|token|write_key|[A-Z_]*(?:SECRET|TOKEN|WRITE_KEY))\s*=\s*)"
    r"(\"[^\"\n]*\"|'[^'\n]*'|[^\s;)|]+)")
_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def _values(text: str) -> list[str]:
    """Literal values and ${VAR:-default} defaults in one matched expression."""
    out: list[str] = []
    for item in text.strip().strip("[]").split(","):
        item = item.strip().strip("\"'")
        if not item:
            continue
        defaults = _DEFAULT.findall(item)
        if defaults:
            out.extend(d for d in defaults if d)
        elif not item.startswith("$") and not re.search(r"[\[\](){}]", item):
            out.append(item)  # not a variable, an expansion ($secret) or code (os.environ[...])
    return out


def shipped_examples() -> dict[str, str]:
    """Every example secret value in the shipped files, with where it was seen."""
    found: dict[str, str] = {}
    for path in SHIPPED:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern in (_YAML_SECRET, _SHELL_SECRET):
                for m in pattern.finditer(line):
                    for value in _values(m.group(1)):
                        found.setdefault(value, f"{path.relative_to(ROOT)}:{number}")
    return found


def test_every_shipped_example_secret_is_listed() -> None:
    found = shipped_examples()
    assert "change-me-backend-secret" in found  # the scan works (rules/, README, docs)
    unlisted = {v: where for v, where in found.items()
                if v not in EXAMPLE_SECRETS and len(v.encode()) >= MIN_SECRET_BYTES
                and weakness(v) is None}
    assert unlisted == {}, f"add these example secrets to relay.rules.policy: {unlisted}"


def _base_without_backend() -> str:
    from .conftest import BASE

    return re.sub(r"  backend: .*\n", "", BASE)
