"""deploy/prometheus: the alerting rules are valid (``promtool check rules``), their unit
tests pass (``promtool test rules``: rules.test.yaml, and rules.history.test.yaml for the
alerts that compare with yesterday or last week), every alert has a firing test, a summary
and a description, and every expression names only metrics and labels the relay exports."""

from __future__ import annotations

from typing import Any

import yaml

from .promql import DEPLOY, exported, run_promtool, unknown

RULES = DEPLOY / "prometheus" / "alerts.yaml"
TESTS = [DEPLOY / "prometheus" / name for name in ("rules.test.yaml", "rules.history.test.yaml")]
PROMETHEUS_OWN = {"up": {"job", "instance"}}  # what Prometheus records about each scrape


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = run_promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_runs_the_rules_unit_tests() -> None:
    done = run_promtool("test", "rules", *(t.name for t in TESTS), cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(TESTS), done.stdout


def test_every_alert_is_tested_firing_and_says_what_to_do() -> None:
    tests = [test for path in TESTS for test in yaml.safe_load(path.read_text())["tests"]]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == fired, "an alert without a firing test"
    for rule in alerts:
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description"}, rule["alert"]
        assert len(notes["description"]) > 100, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


def test_expressions_name_only_what_the_relay_exports() -> None:
    known = {**exported(), **PROMETHEUS_OWN}
    for rule in _rules():  # a recorded series has the labels its rule kept: none here
        if "record" in rule:
            known[rule["record"]] = set()
    problems = {rule.get("alert") or rule["record"]: found for rule in _rules()
                if (found := unknown(rule["expr"], known))}
    assert problems == {}


def test_the_name_check_finds_a_misspelt_metric_or_label() -> None:
    known = exported()
    assert unknown('sum by (destination) (rate(relay_deliveries_total[5m]))', known) == []
    assert unknown("rate(relay_delivery_total[5m])", known) == ["metric relay_delivery_total"]
    assert unknown("sum by (destiantion) (relay_spool_depth)", known) == ["label destiantion"]
