"""``relay reconcile`` on a ledger file under --var: the JSON contract, CSV with the same
columns, the text table with its total, and the arguments it refuses (exit 2)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from relay.cli import main
from relay.ledger.reconcile import COLUMNS

from ..ledger.hops import Feed, at, open_ledger, sample


def _fill(url: str, t: float) -> None:
    async def run() -> None:
        ledger = await open_ledger(url)
        sample(Feed(ledger), t)
        await ledger.close()

    asyncio.run(run())


def _run(capsys: pytest.CaptureFixture[str], rules: Path, var: Path, *args: str
         ) -> tuple[int, str, str]:
    code = main(["reconcile", "--rules", str(rules), "--var", str(var), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _row(**counts: int) -> dict[str, int]:
    return {c: counts.get(c, 0) for c in COLUMNS}


BY_DESTINATION = [
    {"destination": "archive", **_row(browser=2, backend=2, delivered=2, duplicates=1, held=1)},
    {"destination": "crm", **_row(backend=2, duplicates=1, dead_lettered=1)},
    {"destination": "(none)", **_row(browser=2, unconfirmed=1)},
]


def test_json_is_the_contract(
    rules_dir: Path, tmp_path: Path, ledger_rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    _fill(ledger_rules, at("2026-11-28T10:00:00"))
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-28", "--by", "destination",
                        "--format", "json")
    assert code == 0
    assert json.loads(out) == {"since": "2026-11-28T00:00:00.000Z", "by": ["destination"],
                               "rows": BY_DESTINATION}
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-28", "--by", "day,event",
                        "--format", "json")
    assert json.loads(out)["rows"] == [
        {"day": "2026-11-28", "event": "page_view", **_row(browser=2, delivered=1, held=1)},
        {"day": "2026-11-28", "event": "purchase",
         **_row(browser=2, backend=2, delivered=1, duplicates=1, unconfirmed=1,
                dead_lettered=1)},
    ]
    # After the period: nothing, and with no keys one row of zeros.
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-29", "--by", "",
                        "--format", "json")
    assert json.loads(out) == {"since": "2026-11-29T00:00:00.000Z", "by": [],
                               "rows": [_row()]}


def test_the_default_is_the_last_seven_days_by_day(
    rules_dir: Path, tmp_path: Path, ledger_rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    now = time.time()
    _fill(ledger_rules, now - 8 * 86400)  # before the default period
    _fill(ledger_rules, now - 3600)
    before = time.time()
    code, out, _ = _run(capsys, rules_dir, var, "--format", "json")
    after = time.time()
    body = json.loads(out)
    assert code == 0 and body["by"] == ["day"]
    since = datetime.fromisoformat(body["since"]).timestamp()
    assert before - 7 * 86400 - 0.001 <= since <= after - 7 * 86400
    assert sum(r["browser"] for r in body["rows"]) == 4  # one sample: the later one


def test_csv_has_the_same_columns_and_rows(
    rules_dir: Path, tmp_path: Path, ledger_rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    _fill(ledger_rules, at("2026-11-28T10:00:00"))
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-28", "--by",
                        "destination", "--format", "csv")
    assert code == 0
    lines = list(csv.reader(io.StringIO(out)))
    assert lines[0] == ["destination", *COLUMNS]
    assert [dict(zip(lines[0], line, strict=True)) for line in lines[1:]] == [
        {k: str(v) for k, v in r.items()} for r in BY_DESTINATION]


def test_text_is_an_aligned_table_with_a_total(
    rules_dir: Path, tmp_path: Path, ledger_rules: str, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    _fill(ledger_rules, at("2026-11-28T10:00:00"))
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-28", "--by", "destination")
    assert code == 0
    lines = out.rstrip("\n").splitlines()
    assert lines[0] == "since 2026-11-28T00:00:00.000Z (UTC), by destination"
    assert lines[1].split() == ["destination", *COLUMNS]
    table = [line.split() for line in lines[2:6]]
    assert table == [
        ["archive", "2", "2", "2", "1", "0", "1", "0", "0", "0"],
        ["crm", "0", "2", "0", "1", "0", "0", "0", "1", "0"],
        ["(none)", "2", "0", "0", "0", "0", "0", "1", "0", "0"],
        # each receive once: 4 from the browser, 2 from the backend
        ["total", "4", "2", "2", "1", "0", "1", "1", "1", "0"],
    ]
    # Aligned: every number's last digit under its column name's last letter.
    ends = [lines[1].index(c) + len(c) for c in COLUMNS]
    for line in lines[2:6]:
        assert [line[e - 1] for e in ends] == [n[-1] for n in line.split()[1:]], line
    assert "the total counts each event once" in lines[6]
    code, out, _ = _run(capsys, rules_dir, var, "--since", "2026-11-28", "--by", "")
    assert out.splitlines()[2].split() == ["total", "4", "2", "2", "1", "0", "1", "1", "1", "0"]


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "day,dest"], "argument --by: unknown key 'dest' (did you mean 'destination'? "
                           "the keys are day, event, source, destination)"),
    (["--by", "country"], "the keys are day, event, source, destination"),
    (["--by", "day,day"], "argument --by: 'day' is given twice"),
    (["--since", "7 days"], "argument --since: '7 days' is neither a duration"),
    (["--since", "2999-01-01"], "argument --since: '2999-01-01' is in the future"),
    (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
])
def test_bad_arguments_exit_2_saying_what_is_allowed(
    args: list[str], message: str, rules_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        _run(capsys, rules_dir, tmp_path / "var", *args)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_no_ledger_exits_1(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, rules_dir, tmp_path / "var")
    assert code == 1 and out == ""
    assert "relay reconcile: no ledger at" in err
    (rules_dir / "zz-off.yaml").write_text("relay:\n  ledger: off\n")
    code, out, err = _run(capsys, rules_dir, tmp_path / "var")
    assert code == 1 and "the ledger is off" in err
