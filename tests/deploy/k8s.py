"""deploy/k8s/configmap.yaml is made from the rules files, never edited by hand:

    .venv/bin/python -m tests.deploy.k8s      # rewrites it after a change to rules/

It holds deploy/rules/relay.yaml (the settings for replicas on Redis), deploy/rules/sources.yaml
(the shipped sources with the site's origin) and every other file
of the shipped rules/, as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .promql import DEPLOY, REPO

CONFIGMAP = DEPLOY / "k8s" / "configmap.yaml"
HEADER = ("# The relay's rules, mounted at /etc/relay/rules (the relay reloads them when the\n"
          "# kubelet updates the mount). Made by `python -m tests.deploy.k8s` from rules/ and\n"
          "# deploy/rules/{relay,sources}.yaml: edit those, or replace this with your own rules:\n"
          "#   kubectl create configmap relay-rules --from-file=rules/ --dry-run=client -o yaml\n")


def rules_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in sorted((REPO / "rules").glob("*.yaml"))}
    files["relay.yaml"] = (DEPLOY / "rules" / "relay.yaml").read_text()
    files["sources.yaml"] = (DEPLOY / "rules" / "sources.yaml").read_text()
    return dict(sorted(files.items()))


class _Literal(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value
                                   else None)


_Literal.add_representer(str, _text)


def configmap_text() -> str:
    doc = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "relay-rules", "labels": {"app.kubernetes.io/name": "relay"}},
           "data": rules_files()}
    return HEADER + yaml.dump(doc, Dumper=_Literal, sort_keys=False, width=120)


if __name__ == "__main__":
    Path(CONFIGMAP).write_text(configmap_text())
    print(f"wrote {CONFIGMAP}")
