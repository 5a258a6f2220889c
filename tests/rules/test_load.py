"""load_rules / check_rules: environment variables, files merged and duplicates, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.registry import check_rules, load_rules, parse_rules
from relay.rules import RulesError
from relay.rules.diagnostics import dotted
from relay.rules.model import BearerAuth
from relay.rules.source import read_rules_dir

CASES = Path(__file__).resolve().parent / "cases"
ENV = {"RELAY_SECRET": "cookie-secret", "BACKEND_TOKEN": "env-test-backend-token"}


def test_variables_and_their_defaults() -> None:
    rules = load_rules(CASES / "env", ENV)
    assert rules.relay.prefix == "/t"
    assert rules.relay.cookie.secrets == ("cookie-secret",)  # ${OLD_COOKIE_SECRET:-} is none
    assert rules.relay.spool == "sqlite:///var/spool.db"
    assert rules.relay.admin.token is None
    assert rules.sources["backend"].auth == BearerAuth(("env-test-backend-token",))
    assert rules.destinations["archive"].settings.path == "var/events.jsonl"
    assert ("relay", "cookie", "secret", 1) in rules.secret_paths
    assert ("relay", "prefix") in rules.secret_paths


def test_variables_set() -> None:
    env = {
        **ENV, "RELAY_PREFIX": "/collect", "OLD_COOKIE_SECRET": "old-secret",
        "SPOOL_URL": "redis://:pw@redis:6379/0", "ADMIN_TOKEN": "admin-token",
        "BACKEND_TOKEN_NEXT": "next-token", "ARCHIVE_DIR": "/data",
    }
    rules = load_rules(CASES / "env", env)
    assert rules.relay.prefix == "/collect"
    assert rules.relay.cookie.secrets == ("old-secret", "cookie-secret")  # newest last
    assert rules.relay.spool == "redis://:pw@redis:6379/0"
    assert rules.relay.admin.token == "admin-token"
    assert rules.sources["backend"].auth == BearerAuth(("env-test-backend-token", "next-token"))
    assert rules.destinations["archive"].settings.path == "/data/events.jsonl"


def test_an_unset_variable_is_an_error_at_its_place() -> None:
    with pytest.raises(RulesError) as info:
        load_rules(CASES / "env", {"BACKEND_TOKEN": "t"})
    (d,) = info.value.diagnostics
    where = (Path(d.mark.file).name, d.mark.line, d.mark.col, d.code)
    assert where == ("rules.yaml", 3, 47, "R003")
    assert dotted(d.path) == "relay.cookie.secret[1]"
    assert "RELAY_SECRET" in d.message and d.hint and "${RELAY_SECRET:-default}" in d.hint


def test_an_empty_variable_counts_as_unset() -> None:
    _, diagnostics = check_rules(CASES / "env", {**ENV, "RELAY_SECRET": ""})
    assert [d.code for d in diagnostics] == ["R003"]


def test_the_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("RELAY_PREFIX", "OLD_COOKIE_SECRET", "SPOOL_URL", "ADMIN_TOKEN",
                 "BACKEND_TOKEN_NEXT", "ARCHIVE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert load_rules(CASES / "env").relay.cookie.secrets == ("cookie-secret",)


def test_a_variable_inside_a_flow_mapping(tmp_path: Path) -> None:
    # SPEC writes `cookie: {..., secret: ${RELAY_SECRET}}`: unquoted braces in a flow mapping
    (tmp_path / "r.yaml").write_text(
        "relay: {cookie: {secret: ${A}, max_age: ${B:-1h}}, spool: ${C:-sqlite:///x.db}}\n"
        "purposes: {p: {description: '${D:-a, b}'}}\n"
    )
    rules = load_rules(tmp_path, {"A": "s3cret"})
    assert rules.relay.cookie.secrets == ("s3cret",)
    assert rules.relay.cookie.max_age == 3600.0
    assert rules.relay.spool == "sqlite:///x.db"
    assert rules.purposes["p"].description == "a, b"


def test_marks_after_a_variable_stay_true(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("relay: {cookie: {secret: ${A:-x}, max_age: nope}}\n")
    _, (d,) = check_rules(tmp_path, {})
    assert (d.code, d.mark.line, d.mark.col) == ("R106", 1, 44)


def test_a_key_in_two_files_is_an_error_naming_both() -> None:
    rules, diagnostics = check_rules(CASES / "duplicates", {})
    assert rules is None
    (d,) = diagnostics
    assert (Path(d.mark.file).name, d.mark.line, d.mark.col, d.code) == ("b.yaml", 2, 3, "R002")
    assert dotted(d.path) == "purposes.analytics"
    assert d.hint == f"also at {CASES / 'duplicates' / 'a.yaml'}:2:3"


def test_files_merge_sections_and_concatenate_tests() -> None:
    raw = read_rules_dir(CASES / "duplicates", {})
    rules = parse_rules(raw)
    assert [Path(f).name for f in rules.files] == ["a.yaml", "b.yaml"]
    assert rules.purposes["analytics"].description == "from a.yaml"  # the first one stands
    assert set(rules.purposes) == {"analytics", "ads"}
    assert [t.name for t in rules.tests] == ["first", "second"]
    assert [t.path for t in rules.tests] == [("tests", 0), ("tests", 1)]


def test_a_key_twice_in_one_file(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "purposes:\n  a: {description: x}\n  a: {description: y}\n"
    )
    _, (d,) = check_rules(tmp_path, {})
    assert (d.code, d.mark.line, d.mark.col, d.hint) == ("R002", 3, 3, "first at line 2")


def test_no_rule_files(tmp_path: Path) -> None:
    rules, (d,) = check_rules(tmp_path, {})
    assert rules is None and d.code == "R005"


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- relay\n")
    (tmp_path / "b.yml").write_text("purposes:\n  a: {}\n")
    rules, diagnostics = check_rules(tmp_path, {})
    assert rules is None
    assert [(d.code, Path(d.mark.file).name) for d in diagnostics] == [("R004", "a.yaml")]


def test_the_version_follows_the_contents(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("purposes:\n  a: {}\n")
    first = load_rules(tmp_path, {}).version
    assert load_rules(tmp_path, {}).version == first
    (tmp_path / "a.yaml").write_text("purposes:\n  b: {}\n")
    assert load_rules(tmp_path, {}).version != first


def test_warnings_are_returned_but_do_not_fail(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("relay: {client_ip: {header: X-Real-IP, trusted_hops: 2}}\n")
    rules, (d,) = check_rules(tmp_path, {})
    assert rules is not None and d.severity == "warning" and d.code == "R214"
    assert load_rules(tmp_path, {}).relay.client_ip.header == "X-Real-IP"


def test_messages_never_quote_a_secret(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "relay: {cookie: {max_age: '${MAX_AGE}'}}\n"
        "sources:\n  s: {type: webhook, auth: {hmac: x, tolerance: hunter2-literal}}\n"
    )
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path, {"MAX_AGE": "hunter2-from-env"})
    text = str(info.value)
    assert "hunter2" not in text
    assert "'***' is not a duration" in text
    assert [d.code for d in info.value.diagnostics] == ["R106", "R106"]
