"""Properties of request-body parsing on arbitrary bytes (hypothesis): ``parse_body`` and
``decompress`` answer a list of events or a client error (400, 413, 415), never an
exception; gzip round-trips and never inflates past its limit."""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relay.ingest.body import decompress, parse_body
from relay.web import Problem

MAX_BATCH = 5
CONTENT_TYPES = st.sampled_from([
    "application/json", "text/plain", "application/json; charset=utf-8", "TEXT/PLAIN",
    "text/html", "", "application/x-www-form-urlencoded", ";", "application/json;;;",
]) | st.none() | st.text(max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(st.sampled_from(["event", "batch", "x"]) | st.text(max_size=5), inner,
                      max_size=4),
    max_leaves=20,
)
BODIES = st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()) \
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))


def assert_answer(out: list[Any] | Problem) -> None:
    if isinstance(out, Problem):
        assert out.status in (400, 413, 415), out
        assert out.message
    else:
        assert isinstance(out, list) and 1 <= len(out) <= MAX_BATCH


@given(BODIES, CONTENT_TYPES)
def test_any_body_is_events_or_a_client_error(body: bytes, content_type: str | None) -> None:
    assert_answer(parse_body(body, content_type, MAX_BATCH))


@given(JSON)
def test_a_json_body_becomes_its_events(value: Any) -> None:
    out = parse_body(json.dumps(value).encode(), "application/json", MAX_BATCH)
    assert_answer(out)
    if isinstance(out, list):
        if isinstance(value, dict) and "batch" in value and "event" not in value:
            assert out == value["batch"]
        elif isinstance(value, list):
            assert out == value
        else:
            assert out == [value]


@given(st.binary(max_size=300), st.sampled_from(["gzip", "x-gzip", "", None, "br", " GZIP "]),
       st.integers(min_value=0, max_value=400))
def test_any_compressed_body_is_bytes_or_a_client_error(
    body: bytes, encoding: str | None, limit: int
) -> None:
    out = decompress(body, encoding, limit)
    if isinstance(out, Problem):
        assert out.status in (400, 413, 415), out
    else:
        assert isinstance(out, bytes)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=3000))
def test_gzip_round_trips_within_its_limit(body: bytes, limit: int) -> None:
    out = decompress(gzip.compress(body), "gzip", limit)
    if len(body) <= limit:
        assert out == body
    else:
        assert isinstance(out, Problem) and out.status == 413
