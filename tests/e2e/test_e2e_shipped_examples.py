"""The vendor examples in the shipped rules work as written.

``rules/destinations.yaml`` holds one commented example per vendor destination type, and
``rules/pipelines.yaml`` the pipelines some of them name, each between ``# example: NAME``
and ``# end example``. Here each example is uncommented in a copy of the shipped rules, with
its variables set: the real ``relay check`` passes on it, and a real ``relay serve`` with
every example uncommented (each endpoint pointed at its stand-in from ``standins/``)
delivers a US page view and a backend purchase to every vendor with no stand-in problem.
"""

from __future__ import annotations

import importlib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.destinations import DESTINATIONS
from relay.registry import check_rules

from .relayproc import SHIPPED_RULES, RelayProcess, run_cli
from .rulesdir import write_yaml
from .standins.base import StandIn
from .standins.ga4 import Ga4StandIn
from .standins.matomo import MatomoStandIn
from .standins.meta import MetaStandIn
from .standins.mixpanel import MixpanelStandIn
from .standins.plausible import PlausibleStandIn
from .standins.posthog import PostHogStandIn
from .standins.segment import SegmentStandIn
from .standins.tiktok import TikTokStandIn
from .vendordest import backend_purchase, browser_page_view
from .wire import CHROME_UA, client, post_backend, post_browser, wait_until

START = re.compile(r"^(?P<indent>\s*)# example: (?P<name>\S+)\s*$")
END = re.compile(r"^\s*# end example\s*$")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
LOCAL_TYPES = {"file", "log", "webhook"}
ADS_TYPES = {"meta_capi", "tiktok"}
# A value for every variable the examples read (a new one fails below until it has one).
VALUES = {
    "GA4_API_SECRET": "examples-mp-secret-7Q2",
    "META_CAPI_TOKEN": "EAAexamplesMetaToken42",
    "TIKTOK_ACCESS_TOKEN": "examples-tiktok-token-9",
    "POSTHOG_API_KEY": "phc_examplesProjectKey0123456789abcdef",
    "SEGMENT_DESTINATION_WRITE_KEY": "examplesSegmentWriteKey",
    "MIXPANEL_TOKEN": "examples0mixpanel0token",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET": "examples-sa-secret",
    "MATOMO_URL": "https://matomo.example",
    "MATOMO_TOKEN_AUTH": "e2e3dc3f2536d3025974cccb4b4d2d98",
}
# What each vendor calls the page view and the purchase the test sends.
NAMES = {
    "ga4": {"page_view", "purchase"},
    "meta_capi": {"PageView", "Purchase"},
    "tiktok": {"Pageview", "CompletePayment"},
    "posthog": {"$pageview", "purchase"},
    "plausible": {"pageview", "purchase"},
    "segment": {"page", "Order Completed"},
    "mixpanel": {"$mp_web_page_view", "purchase"},
    "matomo": {"page view", "order"},
}


@dataclass(frozen=True)
class Example:
    file: str
    name: str
    first: int  # the line after "# example: NAME" (0-based)
    last: int  # the "# end example" line

    def text(self, lines: list[str]) -> str:
        return "\n".join(_uncomment(line) for line in lines[self.first : self.last])


def _uncomment(line: str) -> str:
    """``  #   type: ga4  # a note`` -> ``    type: ga4  # a note``: the first ``# `` goes."""
    head, _, rest = line.partition("#")
    assert not head.strip(), f"an example line that is not a comment: {line!r}"
    return head + rest.removeprefix(" ")


def examples(file: str) -> list[Example]:
    lines = (SHIPPED_RULES / file).read_text().splitlines()
    out: list[Example] = []
    start: tuple[int, str] | None = None
    for i, line in enumerate(lines):
        m = START.match(line)
        if m:
            assert start is None, f"{file}:{i + 1}: an example inside an example"
            start = (i + 1, m.group("name"))
        elif END.match(line):
            assert start is not None, f"{file}:{i + 1}: an end without an example"
            out.append(Example(file, start[1], start[0], i))
            start = None
        elif start is not None:
            assert line.lstrip().startswith("#"), f"{file}:{i + 1}: not commented out"
    assert start is None, f"{file}: example {start} never ends"
    return out


DESTINATION_EXAMPLES = examples("destinations.yaml")
PIPELINE_EXAMPLES = {e.name: e for e in examples("pipelines.yaml")}


def uncommented(directory: Path, chosen: list[Example]) -> Path:
    """The shipped rules copied to ``directory`` with the ``chosen`` examples uncommented
    in place (every other line as shipped, so diagnostics point at the shipped lines)."""
    shutil.copytree(SHIPPED_RULES, directory)
    for file in {e.file for e in chosen}:
        lines = (directory / file).read_text().splitlines()
        for e in (e for e in chosen if e.file == file):
            lines[e.first : e.last] = [_uncomment(line) for line in lines[e.first : e.last]]
        (directory / file).write_text("\n".join(lines) + "\n")
    return directory


def entry(example: Example) -> tuple[str, dict[str, Any]]:
    lines = (SHIPPED_RULES / example.file).read_text().splitlines()
    [(name, body)] = yaml.safe_load(example.text(lines)).items()
    return name, body


def with_pipeline(example: Example) -> list[Example]:
    """The destination example and the pipeline example it names, if it names one."""
    _, body = entry(example)
    pipeline = PIPELINE_EXAMPLES.get(body.get("pipeline", ""))
    return [example] + ([pipeline] if pipeline is not None else [])


def variables(chosen: list[Example]) -> dict[str, str]:
    names = set()
    for e in chosen:
        lines = (SHIPPED_RULES / e.file).read_text().splitlines()
        names |= set(VAR.findall(e.text(lines)))
    missing = names - set(VALUES)
    assert not missing, f"give the test a value for {sorted(missing)}"
    return {name: VALUES[name] for name in sorted(names)}


IDS = [e.name for e in DESTINATION_EXAMPLES]


def test_every_vendor_type_has_one_example_as_a_user_would_write_it() -> None:
    vendor_types = set(DESTINATIONS) - LOCAL_TYPES
    assert sorted(IDS) == sorted(vendor_types), "one example per vendor type, named by it"
    for example in DESTINATION_EXAMPLES:
        name, body = entry(example)
        assert body["type"] == example.name
        assert body["purpose"] == ("ads" if example.name in ADS_TYPES else "analytics"), name
        assert body.get("legal_basis") and body.get("retention"), name
        pipeline = body["pipeline"]
        assert pipeline == "minimize" or pipeline in PIPELINE_EXAMPLES, name
        module = importlib.import_module(f"relay.destinations.{example.name}")
        default = getattr(module, "DEFAULT_ENDPOINT", None)
        # Matomo is self-hosted: there is no public endpoint to default to.
        assert body["settings"]["endpoint"] == (default or "${MATOMO_URL}"), name
    assert {body["pipeline"] for _, body in map(entry, DESTINATION_EXAMPLES)} >= set(
        PIPELINE_EXAMPLES), "a pipeline example no destination example names"


@pytest.mark.parametrize("example", DESTINATION_EXAMPLES, ids=IDS)
def test_the_example_passes_the_real_relay_check(tmp_path: Path, example: Example) -> None:
    chosen = with_pipeline(example)
    rules_dir = uncommented(tmp_path / "rules", chosen)
    env = variables(chosen)
    done = run_cli(["check", "--rules", str(rules_dir)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # The only warnings: the privacy lint's R308 on the shipped open contracts (page_view and
    # signup keep undeclared properties, so the vendor could receive any): what a user who
    # uncomments the example should be told, naming the pipeline to add an allow step to.
    *warnings, summary = done.stdout.splitlines()
    assert summary.startswith("ok: 6 file(s), 2 destination(s)"), done.stdout
    name, body = entry(example)
    flagged = [re.search(r": R308 (events\.\w+): ", line) for line in warnings]
    assert sorted(m.group(1) for m in flagged if m) == [
        "events.page_view", "events.signup"], done.stdout
    for line in warnings:
        assert f"destination '{name}'" in line, line
        assert f"to pipeline '{body['pipeline']}'" in line, line
    assert done.stderr == "", done.stderr
    # Its secrets come from the environment, never from the file: each one is a ${VAR}.
    rules, diagnostics = check_rules(rules_dir, env)
    assert rules is not None, [d.render() for d in diagnostics]
    secret = [f.name for f in fields(rules.destinations[name].settings) if not f.repr]
    for key in secret:
        if key in body["settings"]:
            assert VAR.fullmatch(str(body["settings"][key])), f"{name}.settings.{key}"
    # ... and without them the check fails, naming each one.
    _, unset = check_rules(rules_dir, {})
    assert {str(d.message).split()[2] for d in unset if d.code == "R003"} == set(env)


# -- end to end ---------------------------------------------------------------------------


def _standin(kind: str, settings: Any) -> StandIn:
    """The stand-in for a destination type, expecting that destination's settings."""
    makers: dict[str, Callable[[], StandIn]] = {
        "ga4": lambda: Ga4StandIn(settings.measurement_id, settings.api_secret),
        "meta_capi": lambda: MetaStandIn(settings.pixel_id, settings.access_token),
        "tiktok": lambda: TikTokStandIn(settings.pixel_code, settings.access_token),
        "posthog": lambda: PostHogStandIn(settings.api_key),
        "plausible": lambda: PlausibleStandIn(tuple(settings.domain.split(","))),
        "segment": lambda: SegmentStandIn(settings.write_key),
        "mixpanel": lambda: MixpanelStandIn(
            settings.token, project_id=settings.project_id,
            service_account=(settings.service_account_username,
                             settings.service_account_secret)),
        "matomo": lambda: MatomoStandIn(settings.site_id, settings.token_auth),
    }
    return makers[kind]()


def vendor_name(kind: str, item: Any) -> str:
    """The name of an event as the stand-in stored it, in the vendor's words."""
    if kind == "ga4":
        return str(item["event"]["name"])
    if kind == "meta_capi":
        return str(item["event_name"])
    if kind == "plausible":
        return str(item["body"]["name"])
    if kind == "segment":
        return str(item["event"] if item["type"] == "track" else item["type"])
    if kind == "matomo":
        return "order" if item.get("idgoal") == "0" else (
            "page view" if "action_name" in item else "event")
    return str(item["event"])


@dataclass
class Served:
    standins: dict[str, StandIn]  # by example (type) name
    kinds: dict[str, str]  # example name -> destination name


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``relay serve`` with every example uncommented, each pointed at its stand-in,
    after one US page view from a browser and one purchase from the backend."""
    tmp = tmp_path_factory.mktemp("examples")
    chosen = DESTINATION_EXAMPLES + list(PIPELINE_EXAMPLES.values())
    env = variables(chosen)
    rules_dir = uncommented(tmp / "rules", chosen)
    rules, diagnostics = check_rules(rules_dir, env)
    assert rules is not None, [d.render() for d in diagnostics]
    standins: dict[str, StandIn] = {}
    kinds: dict[str, str] = {}
    relay: RelayProcess | None = None
    try:
        for example in DESTINATION_EXAMPLES:
            name, _ = entry(example)
            standins[example.name] = _standin(example.name, rules.destinations[name].settings)
            kinds[example.name] = name
        path = rules_dir / "destinations.yaml"
        tree = yaml.safe_load(path.read_text())
        for kind, standin in standins.items():
            tree["destinations"][kinds[kind]]["settings"]["endpoint"] = standin.endpoint
        write_yaml(path, tree)
        relay = RelayProcess(tmp / "relay", rules_dir, env=env).start()
        with client() as http:
            page = post_browser(http, relay, browser_page_view(), {"User-Agent": CHROME_UA})
            assert page.status_code == 202, page.text
            order = post_backend(http, relay, backend_purchase())
            assert order.status_code == 202, order.text
        wait_until(lambda: all(len(s.accepted) >= 2 for s in standins.values()), 20,
                   "a page view and a purchase at every stand-in")
        time.sleep(1.0)  # a second copy, if any, would have arrived by now
        yield Served(standins, kinds)
    finally:
        if relay is not None:
            relay.close()
        for standin in standins.values():
            standin.close()


@pytest.mark.parametrize("kind", IDS)
def test_the_example_delivers_a_page_view_and_a_purchase(served: Served, kind: str) -> None:
    standin = served.standins[kind]
    assert standin.problems == []
    got = sorted(vendor_name(kind, item) for item in standin.accepted)
    assert got == sorted(NAMES[kind]), standin.accepted
