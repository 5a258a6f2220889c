"""Plausible events. The tracker script is not in tests/js, so the bodies are the documented
Events API form (plausible.io/docs/events-api) and the script's short keys."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from relay.proxy.vendors import plausible
from relay.proxy.vendors.base import Undecodable
from tests.proxy.vendors.support import Captured, hygiene, send

SCRIPT = {"n": "pageview", "u": "https://site.example/pricing?utm_source=x&gclid=abc",
          "d": "site.example", "r": "https://search.example/?q=ann%40example.com",
          "p": {"plan": "pro", "email": "ann@example.com"}}
API = {"name": "signup", "url": "https://site.example/?gclid=abc", "domain": "site.example",
       "referrer": None, "props": json.dumps({"note": "mail ann@example.com"})}


def sent(body: Mapping[str, object]) -> dict[str, object]:
    request = Captured("e", "POST", "/api/event", "", "text/plain", json.dumps(body).encode())
    out: dict[str, object] = json.loads(send("plausible", request, hygiene("plausible")).body)
    return out


def test_the_script_form() -> None:
    out = sent(SCRIPT)
    assert out == {"n": "pageview", "u": "https://site.example/pricing", "d": "site.example",
                   "r": "https://search.example/", "p": {"plan": "pro", "email": "[email]"}}


def test_the_api_form_with_props_as_a_string() -> None:
    out = sent(API)
    assert out["url"] == "https://site.example/" and out["referrer"] is None
    assert json.loads(str(out["props"])) == {"note": "mail [email]"}


def test_refused_and_answer() -> None:
    request = Captured("e", "POST", "/api/event", "", "text/plain", b"[1]")
    with pytest.raises(Undecodable, match="not a JSON object"):
        send("plausible", request, hygiene("plausible"))
    answer = plausible.FORMAT.answer("")
    assert (answer.status, answer.body) == (202, b"ok")
