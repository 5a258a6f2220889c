"""deploy/compose.yaml: valid against the Compose specification's JSON schema (the copy
check-jsonschema vendors, offline: ``docker compose config`` cannot run here), with what
SPEC section 9 asks: three relay replicas on Redis, Redis with AOF on a volume, nginx in
front on the recipe in deploy/cdn/nginx (mounted, not a copy), read-only root filesystems,
healthchecks and start order, secrets that must be set."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.e2e.fronts import SITE

from .promql import DEPLOY

COMPOSE = DEPLOY / "compose.yaml"
RELAYS = ["relay-1", "relay-2", "relay-3"]
SECRETS = ["RELAY_SECRET", "BACKEND_SIGNING_SECRET", "RELAY_ADMIN_TOKEN"]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the << merges
    return data


def _schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text())
    return schema


def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema())
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(document))


def test_valid_against_the_compose_spec_schema() -> None:
    assert _errors(_compose()) == []


def test_the_schema_check_finds_a_mistake() -> None:
    broken = _compose()
    broken["services"]["redis"]["healthcheck"]["interval"] = ["5s"]
    broken["services"]["nginx"]["read_onyl"] = True
    found = _errors(broken)
    assert any("'read_onyl' was unexpected" in e for e in found), found
    assert "services.redis.healthcheck.interval: ['5s'] is not of type 'string'" in found


def test_three_relays_on_redis_read_only_healthy_and_after_redis() -> None:
    services = _compose()["services"]
    assert sorted(s for s in services if s.startswith("relay")) == RELAYS
    for name in RELAYS:
        relay = services[name]
        assert relay["read_only"] is True and relay["tmpfs"] == ["/tmp"]
        assert relay["user"] == "10001:10001"
        assert relay["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert "/t/healthz" in " ".join(relay["healthcheck"]["test"])
        env = relay["environment"]
        assert env["RELAY_STATE"] == env["RELAY_SPOOL"] == "redis://redis:6379/0"
        assert f"{name}-var:/var/lib/relay" in relay["volumes"]
        for file in ("relay.yaml", "sources.yaml"):
            assert f"./rules/{file}:/etc/relay/rules/{file}:ro" in relay["volumes"]
            assert (COMPOSE.parent / "rules" / file).is_file()


def test_no_secret_has_a_default() -> None:
    for name in RELAYS:
        env = _compose()["services"][name]["environment"]
        for secret in SECRETS:
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env[secret]), env[secret]


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = _compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["volumes"] == ["redis-data:/data"] and redis["read_only"] is True
    assert "redis-data" in _compose()["volumes"]


def test_nginx_runs_the_cdn_recipe_itself_in_front_of_every_replica() -> None:
    nginx = _compose()["services"]["nginx"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in nginx["volumes"]}
    recipe = {Path(src).name: COMPOSE.parent / src for src in mounts}
    assert recipe["relay.conf"].resolve() == SITE.resolve(), "a copy, not the recipe"
    assert recipe["relay-locations.conf"].resolve() == SITE.with_name(
        "relay-locations.conf").resolve()
    # relay.conf includes relay-locations.conf relative to nginx.conf's folder: /etc/nginx
    assert mounts["./cdn/nginx/relay-locations.conf"] == "/etc/nginx/relay-locations.conf"
    assert mounts["./cdn/nginx/relay.conf"].startswith("/etc/nginx/conf.d/")
    upstream = re.findall(r"^\s*server ([\w-]+):(\d+)", SITE.read_text(), re.MULTILINE)
    assert upstream == [(name, "8000") for name in RELAYS]
    (listen,) = re.findall(r"^\s*listen (\d+);", SITE.read_text(), re.MULTILINE)
    assert nginx["ports"] == [f"{listen}:{listen}"]
    assert nginx["depends_on"] == {n: {"condition": "service_healthy"} for n in RELAYS}
    assert nginx["read_only"] is True and "/var/cache/nginx" in nginx["tmpfs"]
    assert f"127.0.0.1:{listen}/t/healthz" in " ".join(nginx["healthcheck"]["test"])


def test_the_deploy_sources_are_the_shipped_ones_but_for_the_sites_origin() -> None:
    """deploy/rules/sources.yaml is not a second copy to keep up: only its header and the
    browser source's allowed_origins differ from rules/sources.yaml."""
    shipped = (COMPOSE.parents[1] / "rules" / "sources.yaml").read_text().splitlines()
    deploy = (COMPOSE.parent / "rules" / "sources.yaml").read_text().splitlines()
    body = [line for line in deploy if not line.startswith("#")]
    added = [line for line in body if line not in shipped]
    removed = [line for line in shipped if line not in body]
    assert removed == ["  browser: {type: browser}"], removed
    assert [line for line in added if not line.lstrip().startswith("#")] == [
        '  browser: {type: browser, allowed_origins: ["${RELAY_SITE_ORIGIN}"]}']
