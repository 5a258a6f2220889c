"""Fixtures for the browser tests: headless Chromium, and a site with a real relay behind it.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it with apt), driven by
Playwright's Python package. A browser is never downloaded: when it cannot be launched the
tests fail, naming the reason, and never skip.

``stack(...)`` starts, per test: two stand-in vendors (``analytics`` and ``ads``, webhook
destinations with those purposes, every event), a ``relay serve`` process on the shipped
rules plus those destinations (and whatever the test adds), and the test ``Site`` that puts
pages and the relay on one origin. Everything is stopped at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from ..e2e.relayproc import RelayProcess
from ..e2e.rulesdir import make_rules, webhook
from ..e2e.vendor import StandInVendor
from .site import Site

CHROMIUM = os.environ.get("RELAY_TEST_CHROMIUM", "/usr/bin/chromium")
# Chromium implements Global Privacy Control behind a feature flag; "Force" turns the user
# setting on: navigator.globalPrivacyControl is true and every request carries Sec-GPC: 1.
GPC_FLAG = "--enable-features=GlobalPrivacyControlForce"
TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


def launch(pw: Playwright, *args: str) -> Browser:
    """Headless Chromium from ``CHROMIUM``; a clear failure when it cannot start."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM} and it is not there: "
                    f"install Debian's chromium (apt-get install chromium; .ci/run does it). "
                    f"Playwright's own browsers are never downloaded.", pytrace=False)
    try:
        return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
    except PlaywrightError as exc:
        pytest.fail(f"Chromium at {CHROMIUM} could not be launched: {exc}", pytrace=False)


@pytest.fixture(scope="package")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def gpc_chromium(playwright: Playwright) -> Iterator[Browser]:
    """A Chromium whose user has turned Global Privacy Control on."""
    browser = launch(playwright, GPC_FLAG)
    yield browser
    browser.close()


@dataclass
class Stack:
    relay: RelayProcess
    site: Site
    analytics: StandInVendor
    ads: StandInVendor
    rules_dir: Path

    def context(self, browser: Browser, **options: Any) -> BrowserContext:
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(TIMEOUT_MS)
        return ctx


MakeStack = Callable[..., Stack]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[MakeStack]:
    """``stack(edit=None, **sections)`` -> a started ``Stack``. ``sections`` are added to
    the shipped rules (``events={...}``); ``edit(rules_dir)`` may change shipped files."""
    closers: list[Callable[[], None]] = []

    def make(edit: Callable[[Path], None] | None = None, **sections: Any) -> Stack:
        analytics = StandInVendor(name="analytics")
        closers.append(analytics.close)
        ads = StandInVendor(name="ads")
        closers.append(ads.close)
        destinations = {
            "analytics": webhook(analytics, purpose="analytics"),
            "ads": webhook(ads, purpose="ads"),
            **sections.pop("destinations", {}),
        }
        rules_dir = make_rules(tmp_path / "rules", destinations=destinations, **sections)
        if edit is not None:
            edit(rules_dir)
        relay = RelayProcess(tmp_path / "relay", rules_dir)
        closers.append(relay.close)
        relay.start()
        site = Site(relay)
        closers.append(site.close)
        return Stack(relay, site, analytics, ads, rules_dir)

    yield make
    for close in reversed(closers):
        close()
