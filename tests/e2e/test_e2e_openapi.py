"""A bounded schemathesis run against a real ``relay serve``: the document the admin listener
serves (``GET /openapi.yaml``) drives generated requests at every public operation, and no
answer may be a 500, a status the document does not list, a body that violates its schema,
or a content type it does not name. Each request has a timeout, so a hang fails too.

The run is bounded by examples per operation (``MAX_EXAMPLES``), not by time: a handful of
operations times a few dozen requests, well inside a minute on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from .relayproc import BACKEND_SECRET, RelayProcess
from .rulesdir import make_rules
from .wire import client, new_event_id, signature

MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 30.0  # seconds: an answer slower than this is a hang
WRITE_KEY = "openapi-e2e-segment-write-key"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("openapi")
    rules = make_rules(workdir / "rules",
                       sources={"apps": {"type": "segment", "write_keys": [WRITE_KEY]}})
    proc = RelayProcess(workdir, rules, name="openapi")
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@pytest.fixture(scope="module")
def served(relay: RelayProcess) -> dict[str, Any]:
    with client() as http:
        r = http.get(relay.admin_url("/openapi.yaml"))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = yaml.safe_load(r.text)
    return doc


def test_the_served_document_is_the_running_surface(served: dict[str, Any]) -> None:
    assert served["servers"] == [{"url": "/t"}]
    assert set(served["paths"]) == {"/e", "/hook/{source}", "/v1/{call}", "/healthz", "/r.js"}


def known_events(body: Any) -> None:
    """Name every event of a generated body ``page_view`` (the shipped rules' contract that
    takes any page), with a fresh ``event_id``, so generated events can be accepted."""
    items = body.get("batch", [body]) if isinstance(body, dict) else body
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            item["event"] = "page_view"
            item["event_id"] = new_event_id("openapi")


class Run:
    """Sends generated cases to the relay, signing the webhook's and giving the Segment calls
    the write key (so they get past authentication), and collects every failed check."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: no proxy from the environment
        self.failures: list[str] = []
        self.statuses: dict[str, set[int]] = {}
        self.sent: dict[str, int] = {}

    def send(self, case: schemathesis.Case[Any]) -> None:
        label = f"{case.method} {case.path}"
        self.sent[label] = self.sent.get(label, 0) + 1
        if case.path == "/hook/{source}" and case.path_parameters and self.count(label) % 2:
            case.path_parameters["source"] = "backend"  # half of them at the real source
        if self.count(label) % 2:
            known_events(case.body)  # half of them name an event the rules have a contract for
        prepared = case.as_transport_kwargs(base_url=self.base_url)
        if case.path == "/v1/{call}" and self.count(label) % 2:
            prepared["auth"] = (WRITE_KEY, "")
        if case.path == "/hook/{source}":
            if prepared.get("json") is not None:
                prepared["data"] = json.dumps(prepared.pop("json")).encode()
            body = prepared.get("data") or b""
            body = body.encode() if isinstance(body, str) else body
            prepared["headers"] = {**(prepared.get("headers") or {}),
                                   "X-Relay-Signature": signature(BACKEND_SECRET, body)}
        try:
            response = self.session.request(**prepared, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            self.failures.append(f"{label}: no answer within {REQUEST_TIMEOUT:g}s")
            return
        self.statuses.setdefault(label, set()).add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # a failed check: collect them all, report at the end
            self.failures.append(f"{label} -> {response.status_code}: {type(exc).__name__}: "
                                 f"{str(exc)[:1500]}")

    def count(self, label: str) -> int:
        return self.sent[label]

    def test(self, operation: Any) -> Any:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def each(case: schemathesis.Case[Any]) -> None:
            self.send(case)

        return each


def test_generated_requests_get_documented_answers(relay: RelayProcess,
                                                   served: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(served)
    run = Run(relay.base + "/t")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document loads whole
        operations.append(result.ok())
    for operation in operations:
        run.test(operation)()
    assert not run.failures, "\n\n".join(run.failures[:10])
    assert set(run.statuses) == {f"{op.method.upper()} {op.path}" for op in operations}
    # The generated requests reached past the front door: some were accepted.
    assert 202 in run.statuses["POST /e"], run.statuses
    assert 202 in run.statuses["POST /hook/{source}"], run.statuses
    assert 200 in run.statuses["POST /v1/{call}"] or 400 in run.statuses["POST /v1/{call}"]
    with httpx.Client(trust_env=False) as http:
        assert http.get(relay.url("/healthz")).status_code == 200
    assert "Traceback" not in relay.log_text(), relay.log_text()[-3000:]
