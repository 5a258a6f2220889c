"""``relay.web``: one Date and one Server on every response."""

from __future__ import annotations

from typing import Any

from relay.web import SERVER, date_and_server, with_date_and_server


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
