"""``relay.web``: one Date and one Server on every response; the cookie reader."""

from __future__ import annotations

import random
from typing import Any

from starlette.requests import cookie_parser

from relay.web import SERVER, cookie, date_and_server, with_date_and_server


def test_the_first_of_each_is_kept_and_missing_ones_added() -> None:
    upstream = [(b"server", b"SimpleHTTP"), (b"date", b"Tue, 01 Dec 2026 10:00:00 GMT"),
                (b"content-type", b"text/html"), (b"Date", b"later"), (b"server", b"hypercorn")]
    assert date_and_server(upstream) == upstream[:3]
    added = dict(date_and_server([(b"content-type", b"text/plain")]))
    assert added[b"server"] == SERVER and added[b"date"].endswith(b" GMT")


async def test_the_wrapper_rewrites_response_starts_only() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"date", b"a"), (b"date", b"b")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    await with_date_and_server(app)({"type": "http"}, receive, send)
    assert sent[0]["headers"] == [(b"date", b"a"), (b"server", SERVER)]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


def test_cookie_reads_what_starlettes_parser_reads() -> None:
    """``cookie`` parses only the pair it looks for: the value is still the one
    ``cookie_parser`` gives (the last pair of the name, stripped, unquoted), for headers
    made of awkward pieces (spaces, quotes, escapes, pairs without ``=``, names that contain
    the name)."""
    rng = random.Random(11)
    names = ["rid", " rid", "rid ", "ri", "ridx", "xrid", "", "=", '"q"', "\\073", " ", "rid="]
    values = ["", "=", "=v", '="x y"', "= v ", '="\\012"', "=a=b", '="a\\"b"']
    for _ in range(20_000):
        header = ";".join(rng.choice(names) + rng.choice(values) for _ in range(rng.randint(0, 6)))
        for name in ("rid", "ri", "x"):
            expected = cookie_parser(header).get(name) if header and name in header else None
            assert cookie(header, name) == expected, (header, name)
