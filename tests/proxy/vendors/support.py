"""What the vendor format tests share: the requests captured from the real libraries
(``wire/``, written by ``wire/capture.py``), the shipped ``minimize`` pipeline, and a
``Hygiene`` for a route."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from relay.proxy.hygiene import Hygiene
from relay.proxy.rewrite import Prepared, rewrite
from relay.proxy.vendors import VENDORS
from relay.registry import load_rules
from relay.rules.model import ProxyRoute, Step

WIRE = Path(__file__).resolve().parent / "wire"
SHIPPED_RULES = Path(__file__).resolve().parents[3] / "rules"
# What the capture page ran with (wire/capture.py).
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
EMAIL = "ann@example.com"
EMAIL_SHA256 = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Captured:
    name: str
    method: str
    path: str
    query: str
    content_type: str
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": self.content_type} if self.content_type else {}


def captured(prefix: str) -> list[Captured]:
    """The captured requests whose file names start with ``prefix``, in order."""
    out = []
    for meta in sorted(WIRE.glob(f"{prefix}*.json")):
        m = json.loads(meta.read_text())
        out.append(Captured(meta.stem, m["method"], m["path"], m["query"],
                            m["content_type"] or "", meta.with_suffix(".body").read_bytes()))
    assert out, f"no captured requests {prefix}*: run tests/proxy/vendors/wire/capture.py"
    return out


def minimize() -> tuple[Step, ...]:
    """The shipped rules' minimize pipeline (rules/pipelines.yaml)."""
    return load_rules(SHIPPED_RULES, {}).pipelines["minimize"].steps


def hygiene(
    vendor: str,
    steps: tuple[Step, ...] | None = None,
    *,
    forward_ip: str = "truncate",
    user_agent: str = "generalize",
    granted: frozenset[str] = frozenset({"analytics"}),
    keep_click_ids: bool = False,
) -> Hygiene:
    route = ProxyRoute("r", "/r/", "https://vendor.example", vendor=vendor,
                       forward_ip=forward_ip, user_agent=user_agent)  # type: ignore[arg-type]
    return Hygiene(minimize() if steps is None else steps, granted, route, keep_click_ids)


def send(vendor: str, request: Captured, h: Hygiene, body: bytes | None = None) -> Prepared:
    """What the proxy would send upstream for ``request``."""
    return rewrite(VENDORS[vendor], request.body if body is None else body, request.headers,
                   request.query.encode(), h, LIMIT)
