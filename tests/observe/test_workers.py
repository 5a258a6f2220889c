"""One page for several workers, in process: two ``WorkerMetrics`` on one folder ask each
other for their figures; an exited worker's counts stay and are folded; the token is
required; nothing is counted twice."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from relay.observe.metrics import Metrics
from relay.observe.workers import EXITED, Sharing, WorkerMetrics, prepare

TOKEN = "test-token-0123456789abcdef"


def _value(page: bytes, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(page.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    directory = tmp_path / "var" / "metrics"
    prepare(directory)
    return directory


@pytest.fixture
async def pair(folder: Path) -> AsyncIterator[tuple[WorkerMetrics, WorkerMetrics]]:
    a = WorkerMetrics(Sharing(folder, TOKEN), Metrics())
    b = WorkerMetrics(Sharing(folder, TOKEN), Metrics())
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def _count(w: WorkerMetrics, n: float) -> None:
    w.metrics.events_received.labels("browser", "page_view").inc(n)
    w.metrics.delivery_latency.labels("ga4").observe(0.01 * n)


async def test_a_page_adds_up_the_other_workers_fresh_figures(
        pair: tuple[WorkerMetrics, WorkerMetrics]) -> None:
    a, b = pair
    _count(a, 2)
    _count(b, 5)  # after b's last write: only its answer has it
    for first in (a, b):
        page = await first.render()
        assert _value(page, "relay_events_received_total") == 7
        assert _value(page, "relay_delivery_latency_seconds_count", destination="ga4") == 2
        assert _value(page, "relay_workers", state="answered") == 2
        assert _value(page, "relay_workers", state="unanswered") == 0
    written = orjson.loads(b.path.read_bytes())  # written before it answered
    samples = written["families"]["relay_events_received"][1]
    assert [v for _, _, v in samples] == [5.0]
    assert written["pages"] == 1 and written["pid"] == os.getpid()


async def test_a_worker_asked_without_the_token_does_not_answer(folder: Path) -> None:
    b = WorkerMetrics(Sharing(folder, TOKEN), Metrics())
    stranger = WorkerMetrics(Sharing(folder, "not-the-token-at-all-0000"), Metrics())
    await b.start()
    await stranger.start()
    try:
        _count(b, 4)  # not written yet: the stranger can only read b's older file
        page = await stranger.render()
        assert _value(page, "relay_events_received_total") == 0
        assert _value(page, "relay_workers", state="unanswered") == 1
        b.write()
        assert _value(await stranger.render(), "relay_events_received_total") == 4
    finally:
        await b.stop()
        await stranger.stop()


def _exited_file(folder: Path, worker_id: str, received: float, breaker: float) -> Path:
    m = Metrics()
    m.events_received.labels("browser", "page_view").inc(received)
    m.breaker_open.labels("ga4").set(breaker)
    path = folder / f"{worker_id}.json"
    path.write_bytes(orjson.dumps({"id": worker_id, "pid": _dead_pid(), "port": 1,
                                   "pages": 0, "families": m.snapshot()}))
    return path


async def test_an_exited_workers_counts_stay_and_are_folded_once(
        pair: tuple[WorkerMetrics, WorkerMetrics], folder: Path) -> None:
    a, b = pair
    _count(a, 1)
    gone = _exited_file(folder, "999-1", 10, 1)
    shown = []
    for _ in range(3):
        page = await a.render()
        shown.append(_value(page, "relay_events_received_total"))
        assert _value(page, "relay_workers", state="exited") == 1
        assert _value(page, "relay_circuit_open", destination="ga4") == 0  # its breaker went
    assert shown == [11, 11, 11]
    assert not gone.exists()  # folded after the first page
    folded = orjson.loads((folder / EXITED).read_bytes())
    assert folded["count"] == 1 and folded["folded"] == []
    assert "relay_circuit_open" not in folded["families"]
    _exited_file(folder, "999-2", 5, 0)
    assert _value(await b.render(), "relay_events_received_total") == 16
    assert _value(await a.render(), "relay_workers", state="exited") == 2


async def test_a_fold_cut_short_counts_nobody_twice(
        pair: tuple[WorkerMetrics, WorkerMetrics], folder: Path) -> None:
    """A crash between writing exited.json and deleting the folded files leaves their ids
    in ``folded``: pages skip those files, and the next fold deletes them."""
    a, _ = pair
    left = _exited_file(folder, "999-3", 7, 0)
    await a.render()  # folds it
    data = orjson.loads((folder / EXITED).read_bytes())
    (folder / EXITED).write_bytes(orjson.dumps({**data, "folded": ["999-3"]}))
    left.write_bytes(orjson.dumps({"id": "999-3", "pid": _dead_pid(), "port": 1, "pages": 0,
                                   "families": {}}))  # as if it had not been deleted
    assert _value(await a.render(), "relay_events_received_total") == 7
    _exited_file(folder, "999-4", 1, 0)  # the next fold takes the leftover away too
    assert _value(await a.render(), "relay_events_received_total") == 8
    assert not left.exists()
    assert _value(await a.render(), "relay_events_received_total") == 8


async def test_a_stopped_worker_leaves_its_last_counts(folder: Path) -> None:
    a = WorkerMetrics(Sharing(folder, TOKEN), Metrics())
    await a.start()
    _count(a, 3)
    await a.stop()
    written = orjson.loads(a.path.read_bytes())
    assert [v for _, _, v in written["families"]["relay_events_received"][1]] == [3.0]


def test_prepare_makes_a_private_folder_and_clears_a_previous_run(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir(mode=0o755)
    for name in ("1-1.json", EXITED, "lock", "x.tmp"):
        (directory / name).write_text("{}")
    prepare(directory)
    assert list(directory.iterdir()) == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_sharing_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"RELAY_METRICS_DIR": str(tmp_path), "RELAY_METRICS_TOKEN": TOKEN}
    assert Sharing.from_env(env) == Sharing(tmp_path, TOKEN)
    assert Sharing.from_env({"RELAY_METRICS_DIR": str(tmp_path)}) is None
