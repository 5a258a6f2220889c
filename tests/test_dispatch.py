from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from relay.destinations.base import http_classify, unsendable
from relay.destinations.file import FileSettings
from relay.destinations.webhook import WebhookSettings
from relay.dispatch import Breaker, Dispatcher, backoff, by_group, by_size
from relay.observe.log import HOPS
from relay.observe.metrics import Metrics
from relay.rules.model import Destination, Retry
from relay.spool.base import Claimed, Row
from relay.spool.sqlite import SqliteSpool
from relay.types import DestinationDef, Event, Verdict

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class VirtualTime:
    """A clock that only moves when a worker sleeps: backoffs and cooldowns take no time.
    With ``real`` set it is the wall clock (for tests about real timeouts)."""

    def __init__(self) -> None:
        self.t = 1_000_000.0
        self.real = False

    def __call__(self) -> float:
        return time.time() if self.real else self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class Vendor:
    """A stand-in vendor: answers from ``answer``, records what it was sent and when."""

    clock: Callable[[], float]
    answer: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200)
    hang: bool = False
    requests: list[tuple[float, Any]] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)  # event ids answered with 2xx
    in_flight: int = 0
    max_in_flight: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = orjson.loads(request.content)
            self.requests.append((self.clock(), body))
            if self.hang:
                await asyncio.sleep(30)
            await asyncio.sleep(0)
            response = self.answer(request)
            if response.is_success:
                events = body.get("batch", [body])
                self.delivered.extend(e["event_id"] for e in events)
            return response
        finally:
            self.in_flight -= 1


def hook(
    name: str = "hook", *, host: str | None = None, batch: bool = False, **kw: Any
) -> Destination:
    settings = WebhookSettings(url=f"https://{host or name}.example/in", batch=batch)
    return Destination(name=name, type="webhook", purpose=None, settings=settings, **kw)


def events(n: int, destination: str = "hook", prefix: str = "e") -> list[Row]:
    return [
        Row(
            destination,
            f"{prefix}{i}",
            orjson.dumps({"event": "purchase", "event_id": f"{prefix}{i}"}),
        )
        for i in range(n)
    ]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def outcomes(rig: Rig, outcome: str, destination: str = "hook") -> float:
    return sample(rig.metrics, "relay_deliveries_total", destination=destination, outcome=outcome)


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


@pytest.fixture
def hops() -> Iterator[list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(orjson.loads(record.getMessage()))

    handler, level = Capture(), HOPS.level
    HOPS.addHandler(handler)
    HOPS.setLevel(logging.INFO)
    yield records
    HOPS.removeHandler(handler)
    HOPS.setLevel(level)


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
async def spool(tmp_path: Path, vt: VirtualTime) -> AsyncIterator[SqliteSpool]:
    s = SqliteSpool(str(tmp_path / "spool.db"), clock=vt)
    await s.start()
    yield s
    await s.close()


@dataclass
class Rig:
    spool: SqliteSpool
    dispatcher: Dispatcher
    metrics: Metrics
    vendors: dict[str, Vendor]

    async def put(self, rows: list[Row]) -> None:
        await self.spool.put(rows)
        for dest in {r.destination for r in rows}:
            self.dispatcher.notify(dest)


@pytest.fixture
async def make_rig(
    spool: SqliteSpool, vt: VirtualTime
) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    started: list[tuple[Dispatcher, httpx.AsyncClient]] = []

    async def make(
        *destinations: Destination, virtual: bool = True, rng: Callable[[], float] = lambda: 0.0
    ) -> Rig:
        vt.real = not virtual
        clock: Callable[[], float] = vt
        vendors = {f"{d.name}.example": Vendor(clock) for d in destinations}

        async def route(request: httpx.Request) -> httpx.Response:
            return await vendors[request.url.host](request)

        client = httpx.AsyncClient(transport=httpx.MockTransport(route))
        metrics = Metrics()
        dispatcher = Dispatcher(
            spool,
            {d.name: d for d in destinations},
            client,
            metrics,
            clock=clock,
            sleep=vt.sleep if virtual else asyncio.sleep,
            rng=rng,
        )
        dispatcher.start()
        started.append((dispatcher, client))
        return Rig(
            spool,
            dispatcher,
            metrics,
            {name.removesuffix(".example"): v for name, v in vendors.items()},
        )

    yield make
    for dispatcher, client in started:
        await dispatcher.stop()
        await client.aclose()


def test_backoff_is_full_jitter() -> None:
    policy = Retry(base_backoff=1.0, max_backoff=600.0)
    assert backoff(policy, 1, 0.999) < 1.0
    assert backoff(policy, 4, 0.5) == 4.0
    assert backoff(policy, 30, 1.0) == 600.0
    assert backoff(policy, 5000, 0.5) == 300.0  # no overflow
    assert backoff(policy, 3, 0.0) == 0.0


async def test_500_then_200_recovers_and_delivers_everything(
    make_rig: Callable[..., Awaitable[Rig]], hops: list[dict[str, Any]]
) -> None:
    rig = await make_rig(hook(batch=True, batch_size=4))
    vendor = rig.vendors["hook"]
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, text="upstream down") if calls <= 2 else httpx.Response(200)

    vendor.answer = answer
    await rig.put(events(10))
    # Counted once the ack is committed, after the vendor's answer:
    await until(lambda: outcomes(rig, "delivered") == 10)
    assert rig.spool.depths()[0] == {"hook": 0}
    assert sorted(vendor.delivered) == sorted(f"e{i}" for i in range(10))
    assert all(len(body["batch"]) <= 4 for _, body in vendor.requests)
    assert outcomes(rig, "retried") >= 4
    delivered = [h for h in hops if h["hop"] == "delivered"]
    assert {h["event_id"] for h in delivered} == {f"e{i}" for i in range(10)}
    assert all(
        h["status"] == 200 and h["destination"] == "hook" and "latency_ms" in h for h in delivered
    )
    retried = [h for h in hops if h["hop"] == "retried"]
    assert retried and all(h["status"] == 500 and h["attempt"] == 1 for h in retried)
    assert max(h["attempt"] for h in delivered) == 2
    # Hops name the event and its source, never carry the payload:
    assert all(h["event"] == "purchase" for h in delivered + retried)
    assert not any(set(h) & {"properties", "user", "context", "payload"} for h in hops)


async def test_network_errors_are_retried(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(hook())
    vendor = rig.vendors["hook"]
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204)

    vendor.answer = answer
    await rig.put(events(1))
    await until(lambda: vendor.delivered == ["e0"])
    letters = await rig.spool.dlq_list()
    assert letters == []


async def test_400_dead_letters_with_the_answer_and_replay_delivers_once(
    make_rig: Callable[..., Awaitable[Rig]], hops: list[dict[str, Any]]
) -> None:
    rig = await make_rig(hook())
    vendor = rig.vendors["hook"]
    vendor.answer = lambda r: httpx.Response(400, text='{"error":"invalid api key"}')
    await rig.put(events(2))
    await until(lambda: outcomes(rig, "dead_lettered") == 2)
    assert rig.spool.depths()[1] == {"hook": 2}
    letters = await rig.spool.dlq_list("hook")
    assert [(d.event_id, d.status, d.attempts) for d in letters] == [("e0", 400, 1), ("e1", 400, 1)]
    assert letters[0].response == 'HTTP 400: {"error":"invalid api key"}'
    assert len(vendor.requests) == 2  # no retry for a 4xx
    assert {h["event_id"] for h in hops if h["hop"] == "dead-lettered"} == {"e0", "e1"}

    vendor.answer = lambda r: httpx.Response(200)  # the key is fixed
    assert await rig.dispatcher.replay("hook") == 2
    await until(lambda: len(vendor.delivered) == 2)
    await until(lambda: rig.spool.depths() == ({"hook": 0}, {"hook": 0}))
    await asyncio.sleep(0.05)
    assert sorted(vendor.delivered) == ["e0", "e1"]  # once each
    assert next(h for h in hops if h["hop"] == "replayed")["count"] == 2


async def test_exhausted_retries_dead_letter(make_rig: Callable[..., Awaitable[Rig]]) -> None:
    rig = await make_rig(hook(retry=Retry(attempts=3), breaker_failures=0))
    vendor = rig.vendors["hook"]
    vendor.answer = lambda r: httpx.Response(503, text="maintenance")
    await rig.put(events(1))
    await until(lambda: rig.spool.depths()[1].get("hook") == 1)
    [letter] = await rig.spool.dlq_list()
    assert (letter.status, letter.attempts, letter.response) == (503, 3, "HTTP 503: maintenance")
    assert len(vendor.requests) == 3


async def test_the_debug_feed_hears_that_the_last_retry_dead_lettered(
    make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    rig = await make_rig(hook(retry=Retry(attempts=2), breaker_failures=0))
    seen: list[tuple[str, list[str], str, str]] = []
    rig.dispatcher.on_attempt = lambda d, ids, v, status: seen.append((d, ids, v.kind, v.detail))
    rig.vendors["hook"].answer = lambda r: httpx.Response(503, text="maintenance")
    await rig.put(events(1))
    await until(lambda: rig.spool.depths()[1].get("hook") == 1)
    assert seen == [
        ("hook", ["e0"], "retry", "HTTP 503: maintenance"),
        ("hook", ["e0"], "retry", "HTTP 503: maintenance"),
        ("hook", ["e0"], "permanent", "retries exhausted: HTTP 503: maintenance"),
    ]


async def test_max_age_dead_letters(
    make_rig: Callable[..., Awaitable[Rig]], vt: VirtualTime
) -> None:
    rig = await make_rig(
        hook(retry=Retry(attempts=100, max_age=3600), breaker_failures=0), rng=lambda: 1.0
    )
    rig.vendors["hook"].answer = lambda r: httpx.Response(502)
    start = vt.t
    await rig.put(events(1))
    await until(lambda: rig.spool.depths()[1].get("hook") == 1)
    [letter] = await rig.spool.dlq_list()
    assert letter.failed_at - start > 3600 and letter.attempts < 100


async def test_retry_after_is_honoured(
    make_rig: Callable[..., Awaitable[Rig]], hops: list[dict[str, Any]]
) -> None:
    rig = await make_rig(hook())  # rng 0: without Retry-After the retry would be immediate
    vendor = rig.vendors["hook"]
    answers = iter([httpx.Response(429, headers={"Retry-After": "30"})])
    vendor.answer = lambda r: next(answers, httpx.Response(200))
    await rig.put(events(1))
    await until(lambda: vendor.delivered == ["e0"])
    (first, _), (second, _) = vendor.requests
    assert second - first >= 30
    [retried] = [h for h in hops if h["hop"] == "retried"]
    assert (retried["status"], retried["retry_in"]) == (429, 30.0)


async def test_a_hanging_destination_does_not_delay_another(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(hook("slow", timeout=1.0), hook("fast", timeout=1.0), virtual=False)
    slow, fast = rig.vendors["slow"], rig.vendors["fast"]
    slow.hang = True
    started = time.monotonic()
    await rig.put(events(20, "slow") + events(20, "fast"))
    await until(lambda: len(fast.delivered) == 20)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, elapsed  # well inside the slow one's 1 s timeout
    assert slow.requests and not slow.delivered and slow.in_flight == 2  # its 2 workers hang
    assert rig.spool.depths()[0]["slow"] == 20


async def test_a_timeout_is_retried(
    make_rig: Callable[..., Awaitable[Rig]], hops: list[dict[str, Any]]
) -> None:
    rig = await make_rig(hook("slow", timeout=0.05), virtual=False)
    rig.vendors["slow"].hang = True
    await rig.put(events(1, "slow"))
    await until(lambda: len(rig.vendors["slow"].requests) >= 2)  # timed out, sent again
    [retried, *_] = [h for h in hops if h["hop"] == "retried"]
    assert (retried["event_id"], retried["attempt"]) == ("e0", 1)
    assert "status" not in retried  # no answer


async def test_circuit_breaker_opens_and_half_opens(
    make_rig: Callable[..., Awaitable[Rig]], vt: VirtualTime
) -> None:
    rig = await make_rig(
        hook(concurrency=2, breaker_failures=3, breaker_cooldown=60, retry=Retry(attempts=100))
    )
    vendor = rig.vendors["hook"]
    gauge: list[float] = []  # relay_circuit_open as each request arrives

    def answer(request: httpx.Request) -> httpx.Response:
        gauge.append(sample(rig.metrics, "relay_circuit_open", destination="hook"))
        return httpx.Response(503) if len(vendor.requests) <= 5 else httpx.Response(200)

    vendor.answer = answer
    await rig.put(events(4))
    await until(lambda: len(vendor.delivered) == 4)
    times = [t for t, _ in vendor.requests]
    # 3 quick failures (4 when both workers were in flight) open the circuit ...
    quick = [t for t in times if t - times[0] < 60]
    assert 3 <= len(quick) <= 4
    # ... then each request is a lone half-open probe, a full cooldown after the one before,
    # until one succeeds (request 6) and closes the circuit for the rest.
    probes = times[len(quick) : 6]
    assert all(b - a >= 60 for a, b in zip([quick[-1], *probes], probes, strict=False))
    assert gauge[:3] == [0, 0, 0] and gauge[len(quick) : 6] == [1] * (6 - len(quick))
    assert sample(rig.metrics, "relay_circuit_open", destination="hook") == 0
    assert len(times) == 6 + 3  # after closing, the other 3 events went straight through


async def test_breaker_states() -> None:
    breaker = Breaker(threshold=2, cooldown=10)
    assert breaker.state(0) == "closed"
    assert not breaker.failure(0)
    assert breaker.failure(1)  # opens
    assert breaker.state(5) == "open" and breaker.state(11) == "half-open"
    probe = breaker.start_probe()
    assert breaker.failure(12)  # the probe failed: open again
    assert breaker.probe == 0 and breaker.state(21) == "open"
    probe = breaker.start_probe()
    breaker.end_probe(probe + 1)  # someone else's probe: no effect
    assert breaker.probe == probe
    assert breaker.success() and breaker.state(30) == "closed"


async def test_undecodable_payload_is_dead_lettered(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(hook())
    await rig.put([Row("hook", "bad", b"not json"), *events(1)])
    await until(lambda: rig.vendors["hook"].delivered == ["e0"])
    await until(lambda: rig.spool.depths()[1].get("hook") == 1)
    [letter] = await rig.spool.dlq_list()
    assert (letter.event_id, letter.response) == ("bad", "undecodable payload")


async def test_local_sink_file(spool: SqliteSpool, vt: VirtualTime, tmp_path: Path) -> None:
    target = tmp_path / "out" / "events.jsonl"
    dest = Destination(
        name="archive", type="file", purpose=None, settings=FileSettings(str(target)),
        concurrency=1,  # an idle second worker would spin virtual time past the lease
    )
    async with httpx.AsyncClient() as client:
        dispatcher = Dispatcher(
            spool, {"archive": dest}, client, Metrics(), clock=vt, sleep=vt.sleep
        )
        dispatcher.start()
        try:
            await spool.put(events(3, "archive"))
            dispatcher.notify("archive")
            await until(lambda: target.exists() and target.read_bytes().count(b"\n") == 3)
        finally:
            await dispatcher.stop()
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert [e["event_id"] for e in lines] == ["e0", "e1", "e2"]


async def test_stop_leaves_in_flight_rows_for_the_next_start(
    make_rig: Callable[..., Awaitable[Rig]], spool: SqliteSpool
) -> None:
    rig = await make_rig(hook("slow"), virtual=False)
    rig.vendors["slow"].hang = True
    await rig.put(events(1, "slow"))
    await until(lambda: rig.vendors["slow"].in_flight == 1)
    await rig.dispatcher.stop()
    assert spool.depths()[0] == {"slow": 1}
    assert await spool.release_leases() == 1
    assert len(await spool.claim("slow", 10, 60)) == 1


async def test_unknown_type_is_refused(spool: SqliteSpool) -> None:
    dest = Destination(name="x", type="carrier-pigeon", purpose=None)
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="destination x: unknown type 'carrier-pigeon'"):
            Dispatcher(spool, {"x": dest}, client, Metrics())


async def test_an_unmappable_event_is_dead_lettered(spool: SqliteSpool, vt: VirtualTime) -> None:
    def build(events: Sequence[Event], settings: Any) -> httpx.Request:
        return httpx.Request("POST", "https://v.example/", json={"email": events[0]["user"]})

    registry = {"strict": DestinationDef(
        parse_settings=lambda at: None, max_batch=10, build_request=build,
        classify=http_classify)}
    dest = Destination(name="strict", type="strict", purpose=None)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))
                                 ) as client:
        dispatcher = Dispatcher(spool, {"strict": dest}, client, Metrics(), clock=vt,
                                sleep=vt.sleep, registry=registry)
        dispatcher.start()
        try:
            await spool.put(events(1, "strict"))
            dispatcher.notify("strict")
            await until(lambda: spool.depths()[1].get("strict") == 1)
        finally:
            await dispatcher.stop()
    [letter] = await spool.dlq_list()
    assert letter.response == "cannot build the request: KeyError: 'user'"
    assert (letter.status, letter.attempts) == (None, 1)


def _picky(fail_on: str) -> dict[str, DestinationDef]:
    """A batching destination type whose request cannot be built for the event ``fail_on``."""

    def build(events: Sequence[Event], settings: Any) -> httpx.Request:
        if any(e["event_id"] == fail_on for e in events):
            raise ValueError("no mapping for this event")
        return httpx.Request("POST", "https://picky.example/in", json={"batch": list(events)})

    return {"picky": DestinationDef(parse_settings=lambda at: None, max_batch=10,
                                    build_request=build, classify=http_classify)}


async def test_an_unbuildable_copy_is_dead_lettered_alone_and_its_batch_goes(
    spool: SqliteSpool, vt: VirtualTime, hops: list[dict[str, Any]]
) -> None:
    sent: list[list[str]] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append([e["event_id"] for e in orjson.loads(request.content)["batch"]])
        return httpx.Response(200)

    # One failure would open this breaker: a build failure must not count as one.
    dest = Destination(name="picky", type="picky", purpose=None, concurrency=1,
                       breaker_failures=1, breaker_cooldown=3600)
    metrics = Metrics()
    seen: list[tuple[list[str], str]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        dispatcher = Dispatcher(spool, {"picky": dest}, client, metrics, clock=vt,
                                sleep=vt.sleep, registry=_picky("e2"),
                                on_attempt=lambda d, ids, v, s: seen.append((ids, v.kind)))
        dispatcher.start()
        try:
            await spool.put(events(5, "picky"))
            dispatcher.notify("picky")
            await until(lambda: len(sent) == 1 and spool.depths()[1] == {"picky": 1})
            await spool.put(events(2, "picky", prefix="later"))  # the destination still sends
            dispatcher.notify("picky")
            await until(lambda: len(sent) == 2)
        finally:
            await dispatcher.stop()
    assert sent == [["e0", "e1", "e3", "e4"], ["later0", "later1"]]
    [letter] = await spool.dlq_list()
    assert letter.event_id == "e2"
    assert letter.response == "cannot build the request: ValueError: no mapping for this event"
    assert (letter.status, letter.attempts) == (None, 1)
    assert sample(metrics, "relay_circuit_open", destination="picky") == 0
    assert sample(metrics, "relay_deliveries_total", destination="picky", outcome="retried") == 0
    assert [h for h in hops if h["hop"] == "retried"] == []
    [dead] = [h for h in hops if h["hop"] == "dead-lettered"]
    assert (dead["event_id"], dead["reason"]) == ("e2", "unbuildable")
    assert (["e2"], "permanent") in seen  # the debug view hears why


async def test_a_header_http_cannot_carry_is_a_permanent_failure_of_that_copy(
    make_rig: Callable[..., Awaitable[Rig]], hops: list[dict[str, Any]]
) -> None:
    """The webhook puts the event id in ``Idempotency-Key``. An id with a space at either end
    (accepted before the envelope refused them) makes a request HTTP cannot send: each is
    dead-lettered at once, never retried, never a strike, and the events behind it go."""
    rig = await make_rig(hook(concurrency=1, breaker_failures=1, breaker_cooldown=3600))
    bad = [Row("hook", eid, orjson.dumps({"event": "page_view", "event_id": eid}))
           for eid in (" x1", "x2 ", " x3 ")]
    await rig.put([*bad, *events(3)])
    await until(lambda: rig.vendors["hook"].delivered == ["e0", "e1", "e2"])
    await until(lambda: rig.spool.depths()[1].get("hook") == 3)
    letters = await rig.spool.dlq_list()
    assert sorted(d.event_id for d in letters) == sorted(r.event_id for r in bad)
    for letter in letters:
        assert letter.response.startswith("cannot build the request: header Idempotency-Key: ")
        assert letter.event_id not in letter.response
    assert len(rig.vendors["hook"].requests) == 3  # nothing was sent for the bad ones
    assert outcomes(rig, "retried") == 0
    assert sample(rig.metrics, "relay_circuit_open", destination="hook") == 0


@pytest.mark.parametrize("value", [
    b"x1", b" x1", b"x1 ", b"x 1", b"x\t1", b"\tx", b"x\r\n1", b"x\n", b"x\x00", b"x\x0b1",
    b"x\x0c1", b"x\x011", b"x\x7f", b"x\xe9", b"", b"a  b", b"x\x1c", b"x\x85",
])
def test_unsendable_refuses_exactly_what_h11_refuses(value: bytes) -> None:
    import h11

    request = httpx.Request("POST", "https://v.example/", headers=[(b"Idempotency-Key", value)])
    try:
        h11.Request(method="POST", target="/", headers=[(b"Host", b"v"), (b"X", value)])
    except h11.LocalProtocolError:
        h11_ok = False
    else:
        h11_ok = True
    assert (unsendable(request) is None) == h11_ok, value


def _vendor_type(max_bytes: int | None = None, refuse: str = "") -> dict[str, DestinationDef]:
    """A vendor type whose answer may refuse some items by index (a partial success)."""

    def build(events: Sequence[Event], settings: Any) -> httpx.Request:
        return httpx.Request("POST", "https://bulk.example/in", json={"batch": list(events)})

    def classify(response: httpx.Response) -> Verdict:
        if response.status_code == 400:
            body = orjson.loads(response.content)
            return Verdict("ok", status=400, failed=tuple(
                (f["index"], f["message"]) for f in body["failed"]))
        return http_classify(response)

    return {"bulk": DestinationDef(parse_settings=lambda at: None, max_batch=100,
                                   build_request=build, classify=classify, max_bytes=max_bytes)}


def test_by_size_cuts_claims_at_the_vendors_body_limit() -> None:
    rows = [Claimed(i, "d", f"e{i}", b"x" * 40, 0.0, 0) for i in range(3)]
    assert [p.indices for p in by_size(rows, 90)] == [[0, 1], [2]]
    assert [p.indices for p in by_size(rows, None)] == [[0, 1, 2]]
    assert [p.indices for p in by_size(rows, 10)] == [[0], [1], [2]]  # too big alone: sent


async def test_a_partial_success_dead_letters_only_the_refused_items(
    spool: SqliteSpool, vt: VirtualTime, hops: list[dict[str, Any]]
) -> None:
    def vendor(request: httpx.Request) -> httpx.Response:
        batch = orjson.loads(request.content)["batch"]
        failed = [{"index": i, "message": "time: too old"}
                  for i, e in enumerate(batch) if e["event_id"] in ("e1", "e3")]
        return httpx.Response(400 if failed else 200, json={"failed": failed})

    dest = Destination(name="bulk", type="bulk", purpose=None, concurrency=1)
    metrics = Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        dispatcher = Dispatcher(spool, {"bulk": dest}, client, metrics, clock=vt,
                                sleep=vt.sleep, registry=_vendor_type())
        dispatcher.start()
        try:
            await spool.put(events(5, "bulk"))
            dispatcher.notify("bulk")
            await until(lambda: spool.depths() == ({"bulk": 0}, {"bulk": 2}))
        finally:
            await dispatcher.stop()
    letters = await spool.dlq_list()
    assert [(d.event_id, d.response, d.status) for d in letters] == [
        ("e1", "time: too old", 400), ("e3", "time: too old", 400)]
    assert sample(metrics, "relay_deliveries_total", destination="bulk", outcome="delivered") == 3
    delivered = sorted(h["event_id"] for h in hops if h["hop"] == "delivered")
    assert delivered == ["e0", "e2", "e4"]


async def test_a_claim_over_the_body_limit_goes_in_several_requests(
    spool: SqliteSpool, vt: VirtualTime
) -> None:
    sizes: list[int] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sizes.append(len(orjson.loads(request.content)["batch"]))
        return httpx.Response(200, json={"failed": []})

    one = len(events(1, "bulk")[0].payload) + 1
    dest = Destination(name="bulk", type="bulk", purpose=None, concurrency=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        dispatcher = Dispatcher(spool, {"bulk": dest}, client, Metrics(), clock=vt,
                                sleep=vt.sleep, registry=_vendor_type(max_bytes=one * 2))
        dispatcher.start()
        try:
            await spool.put(events(5, "bulk"))
            dispatcher.notify("bulk")
            await until(lambda: sum(sizes) == 5)
        finally:
            await dispatcher.stop()
    assert sizes == [2, 2, 1]


def test_by_group_cuts_by_the_types_key_in_order_of_first_appearance() -> None:
    items = [{"u": "a"}, {"u": "b"}, {"u": "a"}, {"u": "c"}, {"u": "b"}]
    assert by_group(items, lambda e: str(e["u"])) == [[0, 2], [1, 4], [3]]
    assert by_group(items, None) == [[0, 1, 2, 3, 4]]
    assert by_group([], lambda e: "x") == []

    def broken(e: Event) -> str:
        if e["u"] == "b":
            raise KeyError("no key")
        return str(e["u"])

    assert by_group(items, broken) == [[0, 2], [1], [3], [4]]  # no key: alone


async def test_a_request_carries_items_of_one_group_only(
    spool: SqliteSpool, vt: VirtualTime
) -> None:
    """A type with ``group`` (GA4: one client id per request) gets one request per key of a
    claim, each within ``max_bytes``, and every item is delivered once."""
    bodies: list[list[Event]] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(request.content)["batch"])
        return httpx.Response(204)

    rows = [Row("bulk", f"e{i}", orjson.dumps({"event_id": f"e{i}", "user": "ab"[i % 2]}))
            for i in range(7)]
    one = len(rows[0].payload) + 1
    kinds = {"bulk": DestinationDef(
        parse_settings=lambda at: None, max_batch=100,
        build_request=lambda items, s: httpx.Request(
            "POST", "https://bulk.example/in", json={"batch": list(items)}),
        classify=http_classify, max_bytes=one * 3, group=lambda item: str(item["user"]))}
    dest = Destination(name="bulk", type="bulk", purpose=None, concurrency=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor)) as client:
        dispatcher = Dispatcher(spool, {"bulk": dest}, client, Metrics(), clock=vt,
                                sleep=vt.sleep, registry=kinds)
        await spool.put(rows)
        dispatcher.start()
        try:
            dispatcher.notify("bulk")
            # every item sent, and its ack committed (the depth follows the ack)
            await until(lambda: sum(map(len, bodies)) == 7 and spool.depths()[0] == {"bulk": 0})
        finally:
            await dispatcher.stop()
    assert [[e["event_id"] for e in b] for b in bodies] == [
        ["e0", "e2", "e4"], ["e6"], ["e1", "e3", "e5"]]
