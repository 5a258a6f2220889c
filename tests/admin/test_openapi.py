"""``relay/static/openapi.yaml``: valid OpenAPI 3, describing exactly the routes the public
app registers (the rules' proxy routes aside), and served on the admin listener with the
running prefix. The live relay against it: tests/e2e/test_e2e_openapi.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from relay.app import create_admin_app, create_app
from relay.ingest.segment import CALLS
from relay.proxy.router import ProxyRouter
from relay.runtime import Runtime

DOCUMENT = files("relay") / "static" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
async def app(rules_dir: Path, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Starlette]:
    shipped = rules_dir / "relay.yaml"
    shipped.write_text(shipped.read_text().replace("prefix: /t", "prefix: /collect", 1))
    relay_app = create_app(rules_dir, var_dir=tmp_path / "var", env=env)
    yield relay_app
    runtime: Runtime = relay_app.state.relay
    await runtime.stop()


def test_the_document_is_valid_openapi_3() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.")
    validate(doc)  # raises on any departure from the OpenAPI 3 schema


def test_every_public_route_is_described_and_every_description_is_a_route(
    app: Starlette,
) -> None:
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, ProxyRouter):
            continue  # the rules' own routes: described in info.description, not as paths
        assert isinstance(route, Route), route
        # Starlette answers HEAD wherever it answers GET; the document lists HEAD where
        # it means something (the snippet's validators).
        served |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    described = {(path, m) for path, item in document()["paths"].items()
                 for m in item if m in METHODS and m != "head"}
    assert served == described
    heads = {p for p, item in document()["paths"].items() if "head" in item}
    assert heads <= {p for p, m in served if m == "get"}


def test_the_segment_calls_are_the_documented_ones() -> None:
    call = document()["paths"]["/v1/{call}"]["post"]["parameters"][0]
    assert call["name"] == "call"
    assert sorted(call["schema"]["enum"]) == sorted(CALLS)


def test_every_public_status_of_spec_section_2_is_described() -> None:
    ops = document()["paths"]
    assert set(ops["/e"]["post"]["responses"]) >= {"202", "400", "408", "413", "415", "429",
                                                   "503"}
    assert set(ops["/hook/{source}"]["post"]["responses"]) >= {"202", "400", "401", "404",
                                                              "413", "415", "503"}
    assert set(ops["/v1/{call}"]["post"]["responses"]) >= {"200", "400", "401", "413", "415",
                                                          "503"}
    for path in ("/e", "/hook/{source}"):
        content = ops[path]["post"]["requestBody"]["content"]
        assert "application/json" in content


async def test_the_admin_listener_serves_it_at_the_running_prefix(app: Starlette) -> None:
    admin = create_admin_app(app)
    transport = httpx.ASGITransport(app=admin)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        r = await http.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/yaml")
    served = yaml.safe_load(r.text)
    assert served["servers"] == [{"url": "/collect"}]
    assert served["paths"] == document()["paths"]
    validate(served)
