"""GA4 ``/g/collect`` hits. gtag.js is not in tests/js (Google ships it only from its CDN),
so the bodies are the documented wire format: a hit captured from a real page in the
reference (parameters in the query) and a batch (shared parameters in the query, one event
per line of the body)."""

from __future__ import annotations

from urllib.parse import parse_qs

from relay.proxy.vendors import ga4
from tests.proxy.vendors.support import EMAIL_SHA256, Captured, hygiene, send

# The captured example of analyticsmarket.com's hit, plus _uip, uid, a click id in dl,
# user properties and the client hints Chromium sends.
HIT = ("v=2&tid=G-W82H8S53ST&gtm=45je4620&_p=102644968&cid=1489945657.1691089601&ul=en-us"
       "&sr=1920x1080&uaa=x86&uab=64&uafvl=Chromium%3B126.0.6478.126&uamb=0&uam=&uap=Linux"
       "&uapv=6.5.0&uaw=0&_s=1&sid=1691096027&sct=3&seg=0"
       "&dl=https%3A%2F%2Fshop.example%2Fp%3Futm_source%3Dnews%26gclid%3Dabc%26q%3Dann%2540example.com"
       "&dr=https%3A%2F%2Fsearch.example%2F%3Fq%3Dshoes&dt=Shoes&en=page_view&_ss=1&_ee=1"
       "&uid=u_42&_uip=203.0.113.77&up.email=Ann%40Example.com&ep.note=call%20%2B1%20555%20010%200000")
BATCH_QUERY = ("v=2&tid=G-W82H8S53ST&gtm=45je4620&_p=102644968&cid=1489945657.1691089601"
               "&dl=https%3A%2F%2Fshop.example%2Fp%3Fgclid%3Dabc&dt=Shoes&sid=1691096027")
BATCH_BODY = (b"en=scroll&_et=2450&epn.percent_scrolled=90\r\n"
              b"en=sign_up&_et=10&ep.method=email&ep.email=ann%40example.com\r\n")


def params(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def test_a_hit_in_the_query() -> None:
    out = send("ga4", Captured("hit", "POST", "/g/collect", HIT, "", b""), hygiene("ga4"))
    q = params(out.query)
    assert out.body == b""
    assert q["dl"] == "https://shop.example/p" and q["cs"] == "news"  # utm collapsed to cs
    assert q["dr"] == "https://search.example/"
    assert q["_uip"] == "203.0.113.0"  # truncated (minimize, and the route's truncate)
    assert q["up.email"] == EMAIL_SHA256 and q["ep.note"] == "call [phone]"
    assert q["uid"] == "u_42" and q["cid"] == "1489945657.1691089601" and q["en"] == "page_view"
    # the user agent becomes a device: only mobile and platform of the client hints stay
    assert {k for k in q if k.startswith("ua")} == {"uamb", "uap"}
    # untouched parameters keep their bytes and order
    assert out.query.decode().startswith("v=2&tid=G-W82H8S53ST&gtm=45je4620&_p=102644968&cid=")


def test_forward_ip_strip_removes_uip() -> None:
    request = Captured("hit", "POST", "/g/collect", HIT, "", b"")
    out = send("ga4", request, hygiene("ga4", forward_ip="strip"))
    assert "_uip" not in params(out.query)


def test_a_batch_keeps_its_lines() -> None:
    request = Captured("batch", "POST", "/g/collect", BATCH_QUERY, "text/plain", BATCH_BODY)
    out = send("ga4", request, hygiene("ga4"))
    assert params(out.query)["dl"] == "https://shop.example/p"
    lines = out.body.decode().split("\r\n")
    assert lines[-1] == "" and len(lines) == 3
    assert lines[0] == "en=scroll&_et=2450&epn.percent_scrolled=90"
    assert params(lines[1]) == {"en": "sign_up", "_et": "10", "ep.method": "email",
                                "ep.email": "[email]"}


def test_nothing_to_clean_changes_nothing() -> None:
    request = Captured("batch", "POST", "/g/collect", BATCH_QUERY, "text/plain", BATCH_BODY)
    h = hygiene("ga4", (), forward_ip="keep", user_agent="pass", keep_click_ids=True)
    out = send("ga4", request, h)
    assert (out.query.decode(), out.body) == (BATCH_QUERY, BATCH_BODY)


def test_answer() -> None:
    assert ga4.FORMAT.answer(HIT).status == 204
