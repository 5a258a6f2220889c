"""Matomo tracking requests. matomo.js is not in tests/js, so the requests are the tracking
API's documented form (developer docs, tracking-api): a GET, a POST form, a bulk request."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from relay.proxy.vendors import matomo
from tests.proxy.vendors.support import UA, Captured, hygiene, send

HIT = ("idsite=1&rec=1&apiv=1&action_name=Pricing"
       "&url=https%3A%2F%2Fsite.example%2Fpricing%3Futm_campaign%3Dspring%26gclid%3Dabc"
       "&urlref=https%3A%2F%2Fsearch.example%2F%3Fq%3Dann%2540example.com"
       "&_id=af344a398df83874&rand=351459&uid=u_42&cip=203.0.113.7"
       f"&ua={UA.replace(' ', '%20').replace('/', '%2F').replace(';', '%3B')}"
       "&uadata=%7B%22mobile%22%3A%220%22%7D&e_c=Signup&e_n=ann%40example.com&send_image=0")


def params(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def check(p: dict[str, str]) -> None:
    assert p["url"] == "https://site.example/pricing" and p["_rcn"] == "spring"
    assert p["urlref"] == "https://search.example/"
    assert p["cip"] == "203.0.113.0" and "ua" not in p and "uadata" not in p
    assert p["e_n"] == "[email]" and p["e_c"] == "Signup"
    assert (p["idsite"], p["_id"], p["uid"], p["send_image"]) == ("1", "af344a398df83874",
                                                                  "u_42", "0")


def test_a_get() -> None:
    out = send("matomo", Captured("get", "GET", "/matomo.php", HIT, "", b""), hygiene("matomo",
               user_agent="strip"))
    check(params(out.query))
    assert out.body == b""


def test_a_post_form() -> None:
    request = Captured("post", "POST", "/matomo.php", "", "application/x-www-form-urlencoded",
                       HIT.encode())
    out = send("matomo", request, hygiene("matomo", user_agent="strip"))
    check(params(out.body))
    assert out.query == b""


def test_ua_is_generalized_on_a_generalize_route_without_pipeline() -> None:
    out = send("matomo", Captured("get", "GET", "/matomo.php", HIT, "", b""),
               hygiene("matomo", ()))
    p = params(out.query)
    assert p["ua"] == "Mozilla/5.0 (Linux) Chrome/126" and "uadata" not in p
    assert p["cip"] == "203.0.113.0"  # the route truncates


def test_a_bulk_request() -> None:
    body = json.dumps({"requests": ["?" + HIT, "?" + HIT], "token_auth": "secret"})
    request = Captured("bulk", "POST", "/matomo.php", "", "application/json", body.encode())
    out = json.loads(send("matomo", request, hygiene("matomo", user_agent="strip")).body)
    assert out["token_auth"] == "secret" and len(out["requests"]) == 2
    for r in out["requests"]:
        assert r.startswith("?")
        check(params(r[1:]))


def test_answer() -> None:
    assert matomo.FORMAT.answer("").status == 204
