"""Properties of the pipeline's cleaners on arbitrary input (hypothesis).

- url, utm, click_ids: never raise, never add a query parameter (the parameters after are a
  sub-multiset of those before, in order), idempotent (a second run changes nothing).
- ip: an IPv4 address truncates to its /24's first address, an IPv6 one to its /48's, an
  IPv4-mapped IPv6 one as IPv4; truncation is idempotent; anything else is None, never an
  exception.
- hash: normalisation is stable (idempotent), the output is 64 lowercase hex digits, and a
  value hashes the same however it is spaced or cased (phones: however punctuated).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relay.personal import truncate
from relay.pipeline import click_ids, hash, url, utm
from relay.pipeline.params import CLICK_ID_PARAMS
from relay.types import StepContext

NAMES = st.sampled_from([
    "utm_source", "UTM_Medium", "utm_campaign", "utm_", "%75tm_term", "gclid", "GCLID",
    "fbclid", "msclkid", "ttclid", "q", "id", "page", "email", "token", "a+b", "%",
    "%zz", "", "utm_source%00",
]) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_%+0123456789", max_size=10)
VALUES = st.text(alphabet="abcxyz0123456789%+=/?#&:.- ", max_size=8)
PAIRS = st.lists(st.tuples(NAMES, st.booleans(), VALUES), max_size=8)
BASES = st.sampled_from(["https://shop.example/p", "https://a.example/?", "", "?", "/x",
                         "https://[::1]:8080/a", "http://x/%zz"])
FRAGMENTS = st.sampled_from(["", "#top", "#a?b=c&gclid=1", "#"])


@st.composite
def urls(draw: st.DrawFn) -> str:
    pairs = draw(PAIRS)
    query = "&".join(name + ("=" + value if eq else "") for name, eq, value in pairs)
    if draw(st.booleans()):
        query = query.replace("&", "&&", 1)
    base = draw(BASES)
    return base + ("?" if "?" not in base and (query or draw(st.booleans())) else "") + query \
        + draw(FRAGMENTS)


ANY_URL = urls() | st.text(max_size=60)


def params(value: str) -> list[str]:
    """The query's parameters as sent (``name=value`` pieces), in order."""
    query = value.partition("#")[0].partition("?")[2]
    return [p for p in query.split("&") if p]


def outside_query(value: str) -> tuple[str, str]:
    """What no cleaner may touch: the part before the query, and the fragment."""
    rest, _, fragment = value.partition("#")
    return rest.partition("?")[0], fragment


def is_sub_multiset_in_order(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(p == q for q in it) for p in small)


def page_event(u: str, referrer: str, search: str) -> dict[str, Any]:
    return {"event": "page_view",
            "context": {"page": {"url": u, "referrer": referrer, "search": search}}}


STEPS = st.sampled_from([
    (url.apply, url.UrlOptions()),
    (url.apply, url.UrlOptions(keep_params=frozenset({"utm_source", "q", "gclid"}))),
    (url.apply, url.UrlOptions(drop_params=frozenset({"email", "token"}))),
    (url.apply, url.UrlOptions(strip_query=True)),
    (utm.apply, utm.UtmOptions("collapse")),
    (utm.apply, utm.UtmOptions("drop")),
    (click_ids.apply, click_ids.ClickIdsOptions(None)),
    (click_ids.apply, click_ids.ClickIdsOptions("ads")),
])


@given(STEPS, ANY_URL, ANY_URL, ANY_URL, st.booleans())
def test_cleaners_never_add_parameters_and_are_idempotent(
    step: Any, u: str, referrer: str, search: str, ads_granted: bool
) -> None:
    apply, options = step
    granted = frozenset({"ads"}) if ads_granted else frozenset()
    before = page_event(u, referrer, search)
    once = apply(copy.deepcopy(before), options, StepContext("d", granted))
    twice = apply(copy.deepcopy(once), options, StepContext("d", granted))
    assert twice == once
    for field in ("url", "referrer", "search"):
        old, new = before["context"]["page"][field], once["context"]["page"][field]
        assert is_sub_multiset_in_order(params(new), params(old)), (field, old, new)
        (path, fragment), (old_path, old_fragment) = outside_query(new), outside_query(old)
        assert path == old_path, (old, new)
        strips = getattr(options, "strip_query", False)  # strip_query drops fragments too
        assert fragment == old_fragment or (strips and not fragment), (old, new)


@given(ANY_URL)
def test_filter_query_removes_exactly_what_it_says(u: str) -> None:
    out, removed = url.filter_query(u, lambda name: name in CLICK_ID_PARAMS)
    assert url.filter_query(out, lambda name: name in CLICK_ID_PARAMS) == (out, [])
    assert len(params(out)) + len(removed) == len(params(u)) or not removed
    assert is_sub_multiset_in_order(params(out), params(u))


@given(st.ip_addresses(v=4))
def test_ipv4_truncates_to_its_slash_24(ip: ipaddress.IPv4Address) -> None:
    short = truncate(str(ip))
    assert short is not None
    assert ipaddress.IPv4Address(short) == ipaddress.IPv4Network(f"{ip}/24", strict=False)[0]
    assert short.endswith(".0")
    assert truncate(short) == short


@given(st.ip_addresses(v=6))
def test_ipv6_truncates_to_its_slash_48(ip: ipaddress.IPv6Address) -> None:
    short = truncate(str(ip))
    assert short is not None
    if ip.ipv4_mapped is not None:
        assert short == truncate(str(ip.ipv4_mapped))
        return
    net = ipaddress.IPv6Network(f"{ip}/48", strict=False)
    assert ipaddress.IPv6Address(short) == net.network_address
    assert truncate(short) == short
    assert truncate(ip.exploded) == short  # the long form truncates the same


@given(st.text(max_size=50))
def test_truncate_any_text_is_an_address_or_none(text: str) -> None:
    short = truncate(text)
    if short is not None:
        ipaddress.ip_address(short)  # an address
        assert truncate(short) == short


HEX64 = re.compile(r"[0-9a-f]{64}")
IDENTIFIERS = st.text(max_size=40) | st.emails().map(str) \
    | st.from_regex(r"\+?[0-9 ().-]{5,20}", fullmatch=True)
FIELDS = st.sampled_from(["user.email", "user.phone", "user.id", "user.first_name",
                          "user.address.city", "properties.mobile_phone"])


@given(FIELDS, IDENTIFIERS)
def test_normalisation_is_stable(path: str, value: str) -> None:
    name = path.rpartition(".")[2]
    once = hash.normalize(name, value)
    assert hash.normalize(name, once) == once


@given(FIELDS, IDENTIFIERS | st.integers() | st.floats(allow_nan=False) | st.booleans()
       | st.none() | st.lists(st.integers(), max_size=2))
def test_a_hashed_field_is_64_lowercase_hex_or_gone(path: str, value: Any) -> None:
    *parents, name = path.split(".")
    event: dict[str, Any] = {"event": "e"}
    node = event
    for key in parents:
        node = node.setdefault(key, {})
    node[name] = value
    out = hash.apply(event, hash.HashOptions((path,)), StepContext("d"))
    node = out
    for key in parents:
        node = node[key]
    if value is None:
        assert node[name] is None
    elif name in node:
        assert HEX64.fullmatch(node[name]), (value, node[name])
        again = hash.apply(copy.deepcopy(out), hash.HashOptions((path,)), StepContext("d"))
        assert again == out  # a hashed value is not hashed twice


@given(st.emails().map(str), st.sampled_from(["", " ", "  \t"]), st.booleans())
def test_an_email_hashes_the_same_however_spaced_or_cased(email: str, pad: str, upper: bool
                                                          ) -> None:
    def hashed(value: str) -> str:
        event = hash.apply({"user": {"email": value}}, hash.HashOptions(("user.email",)),
                           StepContext("d"))
        return str(event["user"]["email"])

    variant = pad + (email.upper() if upper else email) + pad
    assert hashed(variant) == hashed(email.lower())
