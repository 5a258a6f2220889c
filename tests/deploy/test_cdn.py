"""deploy/cdn: each recipe says what to set in the relay's rules, and that setting is a
valid rules file (``relay check`` on the shipped rules with it); each recipe covers r.js,
/e, /hook and /v1; the index's table names the header each recipe uses. The nginx and
Caddy recipes run for real in tests/e2e/test_e2e_deploy_cdn.py; the hosted CDNs cannot run
here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.relayproc import SHIPPED_RULES, relay_env

from .promql import DEPLOY

CDN = DEPLOY / "cdn"
RECIPES = {"nginx": CDN / "nginx" / "relay-locations.conf", "caddy": CDN / "Caddyfile",
           "cloudflare": CDN / "cloudflare.md", "cloudfront": CDN / "cloudfront.md",
           "fastly": CDN / "fastly.vcl"}
HEADERS = {"nginx": "X-Forwarded-For", "caddy": "X-Forwarded-For",
           "cloudflare": "CF-Connecting-IP", "cloudfront": "CloudFront-Viewer-Address",
           "fastly": "Fastly-Client-IP"}
_FENCED = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_COMMENTED = re.compile(r"^# +relay:\n(?:^# {4,}\S.*\n)+", re.MULTILINE)


def rules_snippet(path: Path) -> dict[str, Any]:
    """The rules a recipe asks for: its ``yaml`` block, or the ``# relay:`` comment lines."""
    text = path.read_text()
    found = _FENCED.findall(text) or [
        "\n".join(line[1:] for line in m[0].splitlines()) for m in _COMMENTED.finditer(text)]
    assert len(found) == 1, f"{path}: expected one rules snippet, found {len(found)}"
    snippet: dict[str, Any] = yaml.safe_load(_dedent(found[0]))
    return snippet


def _dedent(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    cut = min(len(ln) - len(ln.lstrip()) for ln in lines)
    return "\n".join(ln[cut:] for ln in lines) + "\n"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_recipes_rules_are_valid_and_name_its_header(name: str, tmp_path: Path) -> None:
    snippet = rules_snippet(RECIPES[name])
    assert set(snippet) == {"relay"}
    assert snippet["relay"]["client_ip"]["header"] == HEADERS[name]
    rules = tmp_path / "rules"
    rules.mkdir()
    for src in SHIPPED_RULES.glob("*.yaml"):
        (rules / src.name).write_text(src.read_text())
    # behind a CDN the browser source lists the site's origin (R320), as deploy/rules has it
    (rules / "sources.yaml").write_text((DEPLOY / "rules" / "sources.yaml").read_text())
    tree = yaml.safe_load((rules / "relay.yaml").read_text())
    tree["relay"].update(snippet["relay"])
    (rules / "relay.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "relay", "check", "--rules", str(rules)],
                          env={**relay_env(), "RELAY_SITE_ORIGIN": "https://shop.example"},
                          capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok:"), done.stdout  # no warning either


def test_a_wrong_snippet_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("```yaml\nrelay:\n  client_ip: {header: CF-Connecting-IP, hops: 2}\n```\n")
    assert rules_snippet(bad)["relay"]["client_ip"]["hops"] == 2
    two = tmp_path / "two.md"
    two.write_text("```yaml\nrelay: {}\n```\n```yaml\nrelay: {}\n```\n")
    with pytest.raises(AssertionError, match="found 2"):
        rules_snippet(two)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_covers_the_snippet_and_the_event_paths(name: str) -> None:
    text = RECIPES[name].read_text()
    if name in ("nginx", "caddy"):  # one location for all of /t/: nothing cached at all
        assert re.search(r"(?i)nothing is cached", text), name
        assert "Cache-Control" in text and "Set-Cookie" in text
        return
    for path in ("/t/r.js", "/t/e", "/t/hook/", "/t/v1/"):
        assert path in text, (name, path)
    assert re.search(r"(?i)set-cookie", text) and re.search(r"(?i)stream", text), name


def test_the_index_table_matches_the_recipes() -> None:
    index = (CDN / "README.md").read_text()
    for name, header in HEADERS.items():
        row = next(line for line in index.splitlines()
                   if line.startswith("| [") and name in line.lower())
        assert f"`{header}`" in row and f"header: {header}" in row, row
