"""Mixpanel bodies as mixpanel-browser 2.83 sends them (captured in wire/): base64 or JSON
in a ``data=`` form, the ``ip`` query parameter, and the answers the library takes for done."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

from relay.proxy.rewrite import Prepared
from relay.proxy.vendors import mixpanel
from relay.proxy.vendors.base import Undecodable
from tests.proxy.vendors.support import EMAIL, EMAIL_SHA256, Captured, captured, hygiene, send

(TRACK,) = captured("mixpanel_mp_track")
(ENGAGE,) = captured("mixpanel_mp_engage")
(TRACK_JSON,) = captured("mixpanel_json_mp_track")


def data(prepared_body: bytes) -> Any:
    value = parse_qs(prepared_body.decode())["data"][0]
    if value[:1] in "[{":
        return json.loads(value)
    return json.loads(base64.b64decode(value))


def query(prepared: Prepared) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(prepared.query.decode()).items()}


def test_the_captured_requests_are_what_the_module_expects() -> None:
    assert TRACK.content_type == "application/x-www-form-urlencoded"
    assert TRACK.query.startswith("verbose=1&ip=1&_=")
    assert parse_qs(TRACK.body.decode())["data"][0][:1] not in "[{"  # base64: a custom host
    assert parse_qs(TRACK_JSON.body.decode())["data"][0][:1] == "{"  # api_payload_format json
    names = [e["event"] for e in data(TRACK.body)]
    assert names == ["$mp_web_page_view", "signup", "$identify"]


def test_every_encoding_round_trips_when_nothing_is_to_be_cleaned() -> None:
    h = hygiene("mixpanel", (), forward_ip="keep", user_agent="pass", keep_click_ids=True)
    for request in (TRACK, ENGAGE, TRACK_JSON):
        out = send("mixpanel", request, h)
        assert data(out.body) == data(request.body)
        assert out.query == request.query.encode()
        again = parse_qs(out.body.decode())["data"][0][:1] in "[{"
        assert again == (parse_qs(request.body.decode())["data"][0][:1] in "[{")


@pytest.mark.parametrize(("forward_ip", "ip"), [("strip", "0"), ("truncate", "1"), ("keep", "1")])
def test_ip_1_becomes_what_forward_ip_allows(forward_ip: str, ip: str) -> None:
    for request in (TRACK, ENGAGE):
        out = send("mixpanel", request, hygiene("mixpanel", forward_ip=forward_ip))
        assert query(out)["ip"] == ip
        assert query(out)["verbose"] == "1"


def test_strip_adds_ip_0_when_the_library_sent_none() -> None:
    body = "data=" + quote(json.dumps([{"event": "x", "properties": {"token": "t"}}]))
    request = Captured("x", "POST", "/track/", "_=1", "application/x-www-form-urlencoded",
                       body.encode())
    out = send("mixpanel", request, hygiene("mixpanel", forward_ip="strip"))
    assert query(out) == {"_": "1", "ip": "0"}


def test_track_loses_query_and_click_ids_and_redacts_the_email() -> None:
    events = {e["event"]: e["properties"] for e in
              data(send("mixpanel", TRACK, hygiene("mixpanel")).body)}
    view = events["$mp_web_page_view"]
    assert view["$current_url"].endswith("/pages/mixpanel") and "?" not in view["$current_url"]
    assert view["current_url_search"] == ""
    assert "gclid" not in view and view["utm_source"] == "news"
    assert view["token"] == "mp_token" and view["distinct_id"].startswith("$device:")
    signup = events["signup"]
    assert (signup["plan"], signup["email"]) == ("pro", "[email]")
    assert EMAIL not in json.dumps(events)


def test_people_set_hashes_the_email() -> None:
    updates = data(send("mixpanel", ENGAGE, hygiene("mixpanel")).body)
    people = next(u for u in updates if "$set" in u)
    assert people["$set"]["$email"] == EMAIL_SHA256
    assert people["$distinct_id"] == "u_42" and people["$token"] == "mp_token"


def test_a_property_ip_follows_the_route() -> None:
    body = "data=" + quote(json.dumps([{"event": "x", "properties": {"ip": "198.51.100.7"}}]))
    request = Captured("x", "POST", "/track/", "ip=1", "application/x-www-form-urlencoded",
                       body.encode())
    out = send("mixpanel", request, hygiene("mixpanel", forward_ip="strip"))
    assert data(out.body) == [{"event": "x", "properties": {}}]
    out = send("mixpanel", request, hygiene("mixpanel", forward_ip="keep"))
    assert data(out.body)[0]["properties"]["ip"] == "198.51.100.0"  # minimize truncates


def test_a_get_with_data_in_the_query() -> None:
    payload = base64.b64encode(json.dumps({"event": "signup", "properties": {
        "email": EMAIL, "token": "t"}}).encode()).decode()
    request = Captured("get", "GET", "/track/", f"data={quote(payload)}&ip=1&_=2", "", b"")
    out = send("mixpanel", request, hygiene("mixpanel", forward_ip="strip"))
    q = query(out)
    assert q["ip"] == "0" and q["_"] == "2"
    assert json.loads(base64.b64decode(q["data"]))["properties"]["email"] == "[email]"


@pytest.mark.parametrize(("body", "why"), [
    (b"plan=pro", "no data field"),
    (b"data=%%%", "not base64"),
    (b"data=" + quote("[1, 2]").encode(), "not an event"),
])
def test_what_cannot_be_read_is_refused(body: bytes, why: str) -> None:
    request = Captured("bad", "POST", "/track/", "ip=1", "application/x-www-form-urlencoded",
                       body)
    with pytest.raises(Undecodable, match=why):
        send("mixpanel", request, hygiene("mixpanel"))


def test_stopped_hits_are_answered_as_mixpanel_answers() -> None:
    verbose = mixpanel.FORMAT.answer("verbose=1&ip=1&_=1")
    assert (verbose.status, json.loads(verbose.body)) == (200, {"status": 1, "error": None})
    plain = mixpanel.FORMAT.answer("ip=1&_=1")
    assert (plain.status, plain.body) == (200, b"1")
    jsonp = mixpanel.FORMAT.answer("callback=mixpanel._jsc%5B123%5D&ip=1")
    assert jsonp.body == b"mixpanel._jsc[123](1)" and jsonp.content_type == "text/javascript"
    hostile = mixpanel.FORMAT.answer("callback=alert(document.cookie)//")
    assert hostile.body == b"1" and hostile.content_type == "text/plain"
    assert mixpanel.FORMAT.answer("img=1").content_type == "image/gif"
