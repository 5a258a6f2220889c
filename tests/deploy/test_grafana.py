"""deploy/grafana/relay.json: a dashboard whose every PromQL expression (panels and
variables) names only metrics and labels the relay exports and parses as PromQL
(``promtool check rules`` on the expressions as recording rules), with the panels the
operators asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .promql import DEPLOY, exported, grafana_plain, names, run_promtool, unknown

DASHBOARD = DEPLOY / "grafana" / "relay.json"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every query: each panel target, and each variable's query
    (``label_values(EXPR, label)``: its EXPR)."""
    out = [(f"panel {p['title']!r}", t["expr"]) for p in _panels() for t in p["targets"]]
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert match, query
            out.append((f"variable {variable['name']}", match.group(1)))
    return out


def test_every_expression_names_only_what_the_relay_exports() -> None:
    known = exported()
    problems = {where: found for where, expr in _expressions()
                if (found := unknown(grafana_plain(expr), known))}
    assert problems == {}


def test_every_expression_is_promql(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_plain(expr)}
             for i, (_, expr) in enumerate(_expressions())]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_what_operators_need() -> None:
    shown = set().union(*(names(grafana_plain(e))[0] for _, e in _expressions()))
    for metric in ("relay_events_received_total", "relay_events_rejected_total",
                   "relay_deliveries_total", "relay_delivery_latency_seconds_bucket",
                   "relay_spool_depth", "relay_dlq_depth", "relay_spool_oldest_age_seconds",
                   "relay_consent_suppressed_total", "relay_consent_pending",
                   "relay_rules_reloads_total", "relay_proxy_requests_total"):
        assert metric in shown, metric
    latency = [t["expr"] for p in _panels() for t in p["targets"]
               if "relay_delivery_latency_seconds_bucket" in t["expr"]]
    assert {re.search(r"histogram_quantile\(([\d.]+)", e).group(1)  # type: ignore[union-attr]
            for e in latency} == {"0.5", "0.99"}


def test_the_dashboard_is_importable() -> None:
    data = _dashboard()
    assert data["uid"] and data["title"] == "Relay" and data["schemaVersion"] >= 36
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"] and all(t["refId"] for t in panel["targets"]), panel["title"]
        assert all('job="relay", instance=~"$instance"' in t["expr"]
                   for t in panel["targets"]), panel["title"]
