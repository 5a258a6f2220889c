"""Each vendor destination's deletion hook (``relay forget``): the requests it builds, how it
reads every kind of answer, which subjects it can name, and its ``deletion:`` settings."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from relay.destinations import (
    DESTINATIONS,
    ga4_deletion,
    matomo,
    mixpanel,
    posthog,
    segment,
)
from relay.types import Call, Deletion, ForgetContext, Outcome, Person

from .helpers import parse

NOW = 1_795_867_200.0
CTX = ForgetContext(NOW, lambda path: Path(path).read_bytes())
BY_ID = Person({"id": "u_42"}, {"id": "u_42"})
BY_EMAIL = Person({"email": "Ann.Lee@Gmail.com "}, {"email": "a" * 64})

Answer = Callable[[httpx.Request], httpx.Response]


def deletion_of(kind: str) -> Deletion:
    found = DESTINATIONS[kind].deletion
    assert found is not None
    return found


def settings_of(kind: str, value: dict[str, Any]) -> Any:
    parsed, errors = parse(DESTINATIONS[kind].parse_settings, value)
    assert errors == []
    return parsed


def deletion_settings(kind: str, value: dict[str, Any]) -> Any:
    parsed, errors = parse(deletion_of(kind).parse, value)
    assert errors == []
    return parsed


def run(first: Outcome | Call, answer: Answer) -> tuple[Outcome, list[httpx.Request]]:
    """Follow the calls as ``relay forget`` does, answering each with ``answer``."""
    sent: list[httpx.Request] = []
    step = first
    while isinstance(step, Call):
        sent.append(step.request)
        step = step.answer(answer(step.request))
    return step, sent


def final(step: Outcome | Call) -> Outcome:
    """A plan that needs no request: its outcome."""
    assert isinstance(step, Outcome)
    return step


def json_answer(status: int, body: Any) -> Answer:
    return lambda request: httpx.Response(status, content=orjson.dumps(body))


# -- posthog ----------------------------------------------------------------------------

PH = settings_of("posthog", {"api_key": "phc_k", "endpoint": "https://eu.i.posthog.com"})


def ph_deletion() -> posthog.PostHogDeletion:
    value = deletion_settings("posthog", {"personal_api_key": "phx_k", "project_id": 7})
    assert isinstance(value, posthog.PostHogDeletion)
    return value


def test_posthog_finds_the_person_by_distinct_id_then_deletes_with_events() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"results": [{"id": "p-1", "distinct_ids": []}]})
        return httpx.Response(204)

    outcome, sent = run(posthog.plan_deletion(BY_ID, PH, ph_deletion(), CTX), answer)
    assert outcome.status == "requested"
    find, delete = sent
    assert str(find.url) == "https://eu.posthog.com/api/projects/7/persons/?distinct_id=u_42"
    assert find.headers["authorization"] == "Bearer phx_k"
    assert delete.method == "DELETE"
    assert str(delete.url) == ("https://eu.posthog.com/api/projects/7/persons/p-1/"
                               "?delete_events=true")


def test_posthog_outcomes() -> None:
    plan = posthog.plan_deletion(BY_ID, PH, ph_deletion(), CTX)
    assert run(plan, json_answer(200, {"results": []}))[0].status == "deleted"
    assert run(plan, json_answer(503, {}))[0].status == "failed"
    refused = run(plan, json_answer(403, {"detail": "no"}))[0]
    assert refused.status == "failed" and "person:write" in refused.detail
    assert posthog.plan_deletion(BY_ID, PH, None, CTX) == Outcome(
        "manual", posthog.MANUAL + " (or set deletion: {personal_api_key, project_id} on the"
        " destination, and relay forget asks the vendor's API)")
    assert final(posthog.plan_deletion(BY_EMAIL, PH, ph_deletion(), CTX)).status == "not_applicable"


def test_posthog_deletion_settings_are_checked() -> None:
    _, errors = parse(posthog.parse_deletion, {"personal_api_key": "phx_k",
                                               "project_id": "my-project", "extra": 1})
    assert any("extra" in e for e in errors) and any("project id is a number" in e
                                                     for e in errors)


# -- segment ----------------------------------------------------------------------------

SEG = settings_of("segment", {"write_key": "wk"})


def test_segment_creates_a_workspace_regulation() -> None:
    deletion = deletion_settings("segment", {"public_api_token": "sgp_t"})
    outcome, [request] = run(segment.plan_deletion(BY_ID, SEG, deletion, CTX),
                             json_answer(200, {"data": {"regulateId": "r-9"}}))
    assert outcome == Outcome("requested", "regulation r-9: Segment suppresses the userId and"
                              " deletes its data (and asks the destinations it supports to)")
    assert str(request.url) == "https://api.segmentapis.com/regulations"
    assert request.headers["authorization"] == "Bearer sgp_t"
    assert orjson.loads(request.content) == {
        "regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID",
        "subjectIds": ["u_42"]}
    assert run(segment.plan_deletion(BY_ID, SEG, deletion, CTX),
               json_answer(500, {}))[0].status == "failed"
    assert final(segment.plan_deletion(BY_EMAIL, SEG, deletion, CTX)).status == "not_applicable"
    assert parse(segment.parse_deletion, {"public_api_token": "t", "regulation": "NUKE"})[1]


# -- mixpanel ---------------------------------------------------------------------------

MP = settings_of("mixpanel", {"token": "proj-token"})


def test_mixpanel_creates_a_gdpr_deletion_task() -> None:
    deletion = deletion_settings("mixpanel", {"gdpr_token": "oauth-t",
                                              "endpoint": "https://eu.mixpanel.com"})
    outcome, [request] = run(mixpanel.plan_deletion(BY_ID, MP, deletion, CTX),
                             json_answer(200, {"status": "ok", "results": {"task_id": 5}}))
    assert outcome.status == "requested" and outcome.detail.startswith("task 5:")
    assert str(request.url) == ("https://eu.mixpanel.com/api/app/data-deletions/v3.0/"
                                "?token=proj-token")
    assert request.headers["authorization"] == "Bearer oauth-t"
    assert orjson.loads(request.content) == {"distinct_ids": ["u_42"],
                                             "compliance_type": "GDPR"}
    plan = mixpanel.plan_deletion(BY_ID, MP, deletion, CTX)
    assert run(plan, json_answer(502, {}))[0].status == "failed"
    assert run(plan, json_answer(200, {"status": "error"}))[0].status == "failed"


# -- matomo -----------------------------------------------------------------------------

MT = settings_of("matomo", {"site_id": 3, "endpoint": "https://stats.example/matomo.php"})


def test_matomo_finds_the_visits_then_deletes_them_until_none_is_left() -> None:
    deletion = deletion_settings("matomo", {"token_auth": "ta"})
    finds = [[{"idSite": 3, "idVisit": 11}, {"idSite": 3, "idVisit": 12}], []]

    def answer(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        assert form["token_auth"] == ["ta"] and "token_auth" not in str(request.url)
        if form["method"] == ["PrivacyManager.findDataSubjects"]:
            assert form["segment"] == ["userId==u_42"] and form["idSite"] == ["3"]
            return httpx.Response(200, json=finds.pop(0))
        assert form["visits[0][idvisit]"] == ["11"] and form["visits[1][idsite]"] == ["3"]
        return httpx.Response(200, json={"log_visit": 2})

    outcome, sent = run(matomo.plan_deletion(BY_ID, MT, deletion, CTX), answer)
    assert outcome == Outcome("deleted", "2 visit(s) deleted")
    assert [str(r.url) for r in sent] == ["https://stats.example/index.php"] * 3


def test_matomo_reads_its_errors_in_a_200() -> None:
    deletion = deletion_settings("matomo", {"token_auth": "ta"})
    plan = matomo.plan_deletion(BY_ID, MT, deletion, CTX)
    error = run(plan, json_answer(200, {"result": "error", "message": "no access"}))[0]
    assert error.status == "failed" and "no access" in error.detail
    assert run(plan, json_answer(500, {}))[0].status == "failed"
    assert run(plan, json_answer(200, []))[0].status == "deleted"


# -- the vendors with no deletion API ---------------------------------------------------

@pytest.mark.parametrize("kind", ["meta_capi", "tiktok", "plausible"])
def test_vendors_without_a_deletion_api_give_their_procedure(kind: str) -> None:
    deletion = deletion_of(kind)
    for person in (BY_ID, BY_EMAIL):
        outcome = deletion.plan(person, None, None, CTX)
        assert isinstance(outcome, Outcome) and outcome.status == "manual"
    assert parse(deletion.parse, {"token": "x"})[1][0].startswith("R252")


def test_local_sinks_have_no_deletion() -> None:
    assert [k for k, v in DESTINATIONS.items() if v.deletion is None] == [
        "file", "log", "webhook"]


# -- ga4 --------------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, rsa.RSAPrivateKey]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_bytes(orjson.dumps({"type": "service_account", "client_email": "relay@p.iam",
                                   "private_key": pem, "private_key_id": "k1",
                                   "token_uri": "https://oauth2.example/token"}))
    return path, private


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_ga4_signs_a_service_account_jwt_then_submits_the_user_deletion(
    key_file: tuple[Path, rsa.RSAPrivateKey],
) -> None:
    path, private = key_file
    deletion = deletion_settings("ga4", {"property_id": "1234", "credentials": str(path)})

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth2.example":
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == [ga4_deletion.JWT_GRANT]
            head, claims, signature = form["assertion"][0].split(".")
            private.public_key().verify(_unb64(signature), f"{head}.{claims}".encode(),
                                        padding.PKCS1v15(), hashes.SHA256())
            assert orjson.loads(_unb64(claims)) == {
                "iss": "relay@p.iam", "scope": ga4_deletion.SCOPE,
                "aud": "https://oauth2.example/token", "iat": int(NOW), "exp": int(NOW) + 3600}
            return httpx.Response(200, json={"access_token": "ya29.t", "expires_in": 3599})
        assert request.headers["authorization"] == "Bearer ya29.t"
        return httpx.Response(200, json={"deletionRequestTime": "2026-11-28T12:00:00Z"})

    outcome, sent = run(ga4_deletion.plan(BY_ID, None, deletion, CTX), answer)
    assert outcome == Outcome("requested", "GA4 deletes the user's data received up to"
                              " 2026-11-28T12:00:00Z")
    assert str(sent[1].url) == ("https://analyticsadmin.googleapis.com/v1alpha/properties/"
                                "1234:submitUserDeletion")
    assert orjson.loads(sent[1].content) == {"userId": "u_42"}


def test_ga4_deletes_by_email_as_user_provided_data_normalized(
    key_file: tuple[Path, rsa.RSAPrivateKey],
) -> None:
    deletion = deletion_settings("ga4", {"property_id": "1234", "credentials": str(key_file[0])})
    _, sent = run(ga4_deletion.plan(BY_EMAIL, None, deletion, CTX), lambda r: httpx.Response(
        200, json={"access_token": "t", "deletionRequestTime": "x"}))
    assert orjson.loads(sent[1].content) == {"userProvidedData": "annlee@gmail.com"}
    phone = Person({"phone": "+1 (555) 010-0000"}, {"phone": "h"})
    assert ga4_deletion.user_field(phone) == ("userProvidedData", "+15550100000")


def test_ga4_outcomes(key_file: tuple[Path, rsa.RSAPrivateKey], tmp_path: Path) -> None:
    deletion = deletion_settings("ga4", {"property_id": "1234", "credentials": str(key_file[0])})
    plan = ga4_deletion.plan(BY_ID, None, deletion, CTX)
    assert run(plan, json_answer(400, {"error": "invalid_grant"}))[0].status == "failed"
    missing = ga4_deletion.Ga4Deletion("1234", str(tmp_path / "none.json"))
    assert final(ga4_deletion.plan(BY_ID, None, missing, CTX)).status == "failed"
    assert final(ga4_deletion.plan(BY_ID, None, None, CTX)).status == "manual"
    dropped = Person({"id": "u_42"}, {})
    assert final(ga4_deletion.plan(dropped, None, deletion, CTX)).status == "not_applicable"
    assert parse(ga4_deletion.parse, {"property_id": "G-ABC", "credentials": "x"})[1]

    def server_error(request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth2.example":
            return httpx.Response(200, json={"access_token": "t"})
        return httpx.Response(503, text="unavailable")

    assert run(plan, server_error)[0].status == "failed"
