"""``GET /reconcile`` and ``/reconcile.json`` on the admin listener: the command's numbers
(asserted equal on one ledger), the charts and tables, the arguments, the ledger off, the
admin token, and a running relay's own ledger."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

import relay
from relay.admin.reconcile import page
from relay.app import create_admin_app
from relay.cli import main
from relay.ledger.reconcile import COLUMNS, Hop, fold
from relay.runtime import Runtime

from ..ledger.hops import Feed, at, open_ledger, sample

T = at("2026-11-28T10:00:00")
SINCE = "2026-11-28"


def _fill(url: str) -> None:
    async def run() -> None:
        ledger = await open_ledger(url)
        sample(Feed(ledger), T)
        await ledger.close()

    asyncio.run(run())


@pytest.fixture
def var(tmp_path: Path, ledger_rules: str) -> Path:
    _fill(ledger_rules)
    return tmp_path / "var"


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], var: Path) -> AsyncIterator[Starlette]:
    relay_app = relay.create_app(str(rules_dir), var_dir=var, env=env)
    yield relay_app
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


@pytest.fixture
async def admin(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_admin_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as c:
        yield c


class Tables(HTMLParser):
    """Every table of a page: its caption and its rows of cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: str | None = None
        self._cell: list[str] | None = None
        self._rows: list[list[str]] = []
        self._in_caption = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows, self._caption = [], ""
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table" and self._caption is not None:
            self.tables[self._caption] = self._rows

    def handle_data(self, data: str) -> None:
        if self._in_caption and self._caption is not None:
            self._caption += data
        elif self._cell is not None:
            self._cell.append(data)


def _svgs(text: str) -> Iterator[ET.Element]:
    for m in re.finditer(r"<svg .*?</svg>", text, re.DOTALL):
        yield ET.fromstring(m.group(0))  # well-formed: it parses as XML


async def _cli(capsys: pytest.CaptureFixture[str], rules: Path, var: Path, *args: str
               ) -> object:
    argv = ["reconcile", "--rules", str(rules), "--var", str(var), "--format", "json", *args]
    assert await asyncio.to_thread(main, argv) == 0  # the command runs its own event loop
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("by", [None, "", "day", "destination", "day,event,source,destination",
                                "source,event", "destination,day"])
async def test_the_json_is_the_commands(
    by: str | None, admin: httpx.AsyncClient, rules_dir: Path, var: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    query = {"since": SINCE, **({"by": by} if by is not None else {})}
    r = await admin.get("/reconcile.json", params=query)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    args = ["--since", SINCE, *(["--by", by] if by is not None else [])]
    assert r.json() == await _cli(capsys, rules_dir, var, *args)
    assert r.json()["by"] == (["day"] if by is None else [k for k in by.split(",") if k])


async def test_the_page_draws_each_destination_and_tables_its_numbers(
    admin: httpx.AsyncClient,
) -> None:
    r = await admin.get("/reconcile", params={"since": SINCE, "by": "destination"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    text = r.text
    assert "<script" not in text and "src=" not in text and "<link" not in text
    charts = list(_svgs(text))
    ns = "{http://www.w3.org/2000/svg}"
    titles = [c.find(f"{ns}title") for c in charts]
    assert [t.text for t in titles if t is not None] == [
        "archive: copies received, delivered, suppressed and dead-lettered per day",
        "crm: copies received, delivered, suppressed and dead-lettered per day",
    ]
    for chart in charts:
        assert chart.get("role") == "img"
        ids = {e.get("id") for e in chart.iter()}
        assert set((chart.get("aria-labelledby") or "").split()) <= ids
        texts = [e.text for e in chart.iter(f"{ns}text")]
        assert {"received", "delivered", "suppressed", "dead-lettered", "copies",
                "day received (UTC)"} <= set(texts)
    # Each bar says what it is; archive: 4 received, 2 delivered; crm: 1 dead-lettered.
    bars = [t.text for t in charts[0].iter(f"{ns}title")][1:]
    assert "2026-11-28: received 4" in bars and "2026-11-28: delivered 2" in bars
    assert "2026-11-28: dead-lettered 1" in [t.text for t in charts[1].iter(f"{ns}title")]
    tables = Tables(text).tables
    archive = tables["archive, per day"]
    assert archive[0] == ["day", "received", "delivered", "suppressed", "dead-lettered"]
    assert ["2026-11-28", "4", "2", "0", "0"] in archive
    assert archive[-1][0] == "total"
    assert ["2026-11-28", "2", "0", "0", "1"] in tables["crm, per day"]
    counts = tables["every column, by destination; the total counts each event once"]
    assert counts == [
        ["destination", *COLUMNS],
        ["archive", "2", "2", "2", "1", "0", "1", "0", "0", "0"],
        ["crm", "0", "2", "0", "1", "0", "0", "0", "1", "0"],
        ["(none)", "2", "0", "0", "0", "0", "0", "1", "0", "0"],
        ["total", "4", "2", "2", "1", "0", "1", "1", "1", "0"],
    ]
    # The form keeps what was asked; the JSON link asks the same.
    assert 'name=since value="2026-11-28"' in text and 'name=by value="destination"' in text
    assert 'href="reconcile.json?since=2026-11-28&amp;by=destination"' in text


def test_a_period_of_many_days_labels_some_and_draws_every_one() -> None:
    hops: list[Hop] = [(f"e{d}", T + d * 86400, "received", "browser", "page_view", None)
                       for d in range(40)]
    hops += [(f"e{d}", T + d * 86400, "spooled", None, None, "archive") for d in range(40)]
    hops.sort()
    text = page(fold(hops, T, {"browser": "browser"}), T, ["day"], T + 39 * 86400 + 60)
    [chart] = list(_svgs(text))
    ns = "{http://www.w3.org/2000/svg}"
    assert len([r for r in chart.iter(f"{ns}rect") if r.get("class") == "bar"]) == 40 * 4
    labels = [e.text for e in chart.iter(f"{ns}text") if re.fullmatch(r"\d\d-\d\d", e.text or "")]
    assert 5 <= len(labels) < 40 and labels[0] == "11-28"
    assert float(chart.get("width") or 0) <= 1100


@pytest.mark.parametrize(("query", "says"), [
    ({"by": "dest"}, "by: unknown key 'dest' (did you mean 'destination'? the keys are day,"
                     " event, source, destination)"),
    ({"since": "soon"}, "since: 'soon' is neither a duration"),
    ({"since": "2999-01-01"}, "since: '2999-01-01' is in the future"),
])
async def test_bad_arguments_are_400_saying_what_is_allowed(
    query: dict[str, str], says: str, admin: httpx.AsyncClient,
) -> None:
    r = await admin.get("/reconcile.json", params=query)
    assert r.status_code == 400 and r.json()["error"].startswith(says)
    r = await admin.get("/reconcile", params=query)
    assert r.status_code == 400 and says.replace("'", "&#x27;") in r.text


async def test_the_ledger_off_is_404(rules_dir: Path, env: dict[str, str], tmp_path: Path
                                     ) -> None:
    (rules_dir / "zz-off.yaml").write_text("relay:\n  ledger: off\n")
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "var", env=env)
    transport = httpx.ASGITransport(app=create_admin_app(relay_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as admin:
        r = await admin.get("/reconcile.json")
        assert r.status_code == 404 and "the ledger is off" in r.json()["error"]
        assert (await admin.get("/reconcile")).status_code == 404


async def test_no_ledger_yet_is_an_empty_period(
    rules_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    relay_app = relay.create_app(str(rules_dir), var_dir=tmp_path / "empty", env=env)
    transport = httpx.ASGITransport(app=create_admin_app(relay_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as admin:
        body = (await admin.get("/reconcile.json", params={"by": ""})).json()
        assert body["rows"] == [{c: 0 for c in COLUMNS}]
        r = await admin.get("/reconcile")
        assert r.status_code == 200 and "No copies for any destination" in r.text


async def test_the_admin_token_applies(
    rules_dir: Path, env: dict[str, str], var: Path
) -> None:
    (rules_dir / "zz-admin.yaml").write_text("relay:\n  admin: {token: admin-token-0123456789}\n")
    relay_app = relay.create_app(str(rules_dir), var_dir=var, env=env)
    transport = httpx.ASGITransport(app=create_admin_app(relay_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as admin:
        for path in ("/reconcile", "/reconcile.json"):
            assert (await admin.get(path)).status_code == 401
            ok = await admin.get(path, headers={"Authorization": "Bearer admin-token-0123456789"})
            assert ok.status_code == 200
        r = await admin.get("/reconcile", params={"token": "admin-token-0123456789",
                                                  "since": SINCE})
        assert r.status_code == 200
        # The form and the JSON link carry the token given in the URL, so they work too.
        assert '<input type=hidden name=token value="admin-token-0123456789">' in r.text
        link = re.search(r'href="(reconcile\.json\?[^"]+)"', r.text)
        assert link is not None
        follow = await admin.get("/" + link.group(1).replace("&amp;", "&"))
        assert follow.status_code == 200 and follow.json()["since"].startswith(SINCE)


async def test_a_running_relay_counts_its_own_events(
    client: httpx.AsyncClient, relay_app: Starlette, env: dict[str, str]
) -> None:
    rt: Runtime = relay_app.state.relay
    r = await client.post("/e", json={"event": "page_view", "event_id": "live-1",
                                      "user": {"email": "Ann@Example.com"}},
                          headers={"cf-ipcountry": "US", "user-agent": "Mozilla/5.0 Test/1"})
    assert r.status_code == 202
    await client.post("/e", json={"event": "page_view", "event_id": "live-1"},
                      headers={"cf-ipcountry": "US"})
    await client.post("/e", json={"event": "page_view", "event_id": "live-2"},
                      headers={"cf-ipcountry": "DE"})
    assert rt.ledger is not None
    archive = Path(env["ARCHIVE_PATH"])
    for _ in range(200):
        if archive.exists() and archive.read_text().count("\n") >= 1:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    await rt.ledger.drain()
    transport = httpx.ASGITransport(app=create_admin_app(relay_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as admin:
        r = await admin.get("/reconcile.json", params={"by": "destination"})
        assert r.json()["rows"] == [{"destination": "archive", **{c: 0 for c in COLUMNS},
                                     "browser": 3, "delivered": 1, "duplicates": 1,
                                     "held": 1}]
        text = (await admin.get("/reconcile", params={"by": "destination"})).text + r.text
    for raw in ("Ann@Example.com", "ann@example.com", "203.0.113.7", "Mozilla", "_rc"):
        assert raw not in text
