"""What PromQL expressions name (the test of deploy/'s alerts and dashboard): metric names
and label names, found by taking apart the expression's text, and the names the relay
really exports (``relay.observe.metrics.Metrics``, every metric touched)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from relay.observe.metrics import Metrics
from tests.observe.test_metrics import _exercise

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"job", "instance"})
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                      "offset", "and", "or", "unless", "atan2", "inf", "nan", "start", "end"})
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
RANGE = re.compile(r"\[[^\]]*\]")
NAME = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def exported() -> dict[str, set[str]]:
    """Every sample name the relay's /metrics page can carry, with its labels."""
    m = Metrics()
    _exercise(m)
    out: dict[str, set[str]] = {}
    for family in m.families():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def grafana_plain(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus gets it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr.replace("$instance", ".*")


def names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names that ``expr`` refers to.

    ``sum by (destination) (rate(relay_spooled_total{job="relay"}[5m] offset 1w))`` names
    the metric ``relay_spooled_total`` and the labels ``destination`` and ``job``.
    """
    labels: set[str] = set()
    for _, listed in GROUPING.findall(expr):
        labels.update(name.strip() for name in listed.split(",") if name.strip())
    text = GROUPING.sub(" ", expr)
    text = STRING.sub('""', text)
    for inside in MATCHERS.findall(text):
        labels.update(MATCHER.findall(inside))
    text = RANGE.sub(" ", MATCHERS.sub(" ", text))
    metrics = set()
    for match in NAME.finditer(text):
        name = match.group(1)
        after = text[match.end():].lstrip()
        if name in KEYWORDS or after.startswith("("):
            continue  # a keyword, a function or an aggregation
        metrics.add(name)
    return metrics, labels


def unknown(expr: str, known: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` the relay does not export: metric names, and label names that none
    of its metrics has (besides the target's ``job`` and ``instance``)."""
    metrics, labels = names(expr)
    problems = [f"metric {m}" for m in sorted(metrics) if m not in known]
    have = set(TARGET_LABELS).union(*(known.get(m, set()) for m in metrics))
    problems += [f"label {name}" for name in sorted(labels - have)]
    return problems


def promtool() -> str:
    """promtool's path: .ci/run installs Debian's ``prometheus`` package, which has it."""
    path = shutil.which("promtool")
    assert path, ("promtool is not installed: .ci/run installs it (apt-get install "
                  "prometheus); on another machine install Prometheus' promtool")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
