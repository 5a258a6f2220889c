"""deploy/k8s: every manifest valid against the Kubernetes API schemas (kubernetes-validate,
offline, strict: unknown fields are errors) for the oldest version we claim and the newest
it knows; what SPEC section 9 asks of each object; the ConfigMap made from the rules files
and passing ``relay check``; the Secret's placeholders refused by ``relay serve``.

No cluster runs here: nothing is applied. tests/e2e/test_e2e_deploy_k8s.py runs the probes'
commands and the ConfigMap reload against a real relay.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from relay.cli.servers import GRACE as HTTP_GRACE  # in-flight requests finish, any server
from relay.runtime import SHUTDOWN_DRAIN_SECONDS
from tests.e2e.relayproc import free_port, relay_env

from .dockerfile import instructions
from .k8s import CONFIGMAP, configmap_text, rules_files
from .promql import DEPLOY

K8S = DEPLOY / "k8s"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_NAMES = ["RELAY_SECRET", "BACKEND_SIGNING_SECRET", "RELAY_ADMIN_TOKEN", "RELAY_STATE",
                "RELAY_SPOOL", "RELAY_SITE_ORIGIN"]
FILLED = {"RELAY_SECRET": "k8s-test-cookie-secret-0123456789",
          "BACKEND_SIGNING_SECRET": "k8s-test-backend-secret-0123456789",
          "RELAY_ADMIN_TOKEN": "k8s-test-admin-token-0123456789",
          "RELAY_STATE": "redis://redis:6379/0", "RELAY_SPOOL": "redis://redis:6379/0",
          "RELAY_SITE_ORIGIN": "https://shop.example"}


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object in deploy/k8s, by (kind, name)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in out, key
            out[key] = doc
    return out


def _pod(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = _manifests()[(kind, "relay")]["spec"]["template"]["spec"]
    return spec


def _container(kind: str) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = _pod(kind)["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    objects = _manifests()
    assert set(objects) == {("ConfigMap", "relay-rules"), ("Secret", "relay-secrets"),
                            ("Deployment", "relay"), ("Service", "relay"),
                            ("Service", "relay-admin"), ("HorizontalPodAutoscaler", "relay"),
                            ("PodDisruptionBudget", "relay"), ("StatefulSet", "relay"),
                            ("Service", "relay-sqlite")}
    for key, doc in objects.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key} against {version}: {exc.message} at {list(exc.path)}")


def test_the_validator_finds_a_misplaced_field() -> None:
    broken = copy.deepcopy(_manifests()[("Deployment", "relay")])
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_configmap_is_made_from_the_rules_files() -> None:
    assert CONFIGMAP.read_text() == configmap_text(), (
        "deploy/k8s/configmap.yaml is out of date: run .venv/bin/python -m tests.deploy.k8s")
    data = _manifests()[("ConfigMap", "relay-rules")]["data"]
    assert data == rules_files()
    assert data["relay.yaml"] == (DEPLOY / "rules" / "relay.yaml").read_text()


def _write_rules(directory: Path) -> Path:
    directory.mkdir()
    for name, text in _manifests()[("ConfigMap", "relay-rules")]["data"].items():
        (directory / name).write_text(text)
    return directory


def _relay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", *args], env=relay_env(env),
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def test_the_configmaps_rules_pass_relay_check(tmp_path: Path) -> None:
    rules = _write_rules(tmp_path / "rules")
    done = _relay("check", "--strict", "--rules", str(rules), env=FILLED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_relay_serve_refuses_the_secrets_placeholders(tmp_path: Path) -> None:
    placeholders = _manifests()[("Secret", "relay-secrets")]["stringData"]
    assert sorted(placeholders) == sorted(SECRET_NAMES)
    assert set(placeholders.values()) == {""}, "placeholders, never values that would work"
    rules = _write_rules(tmp_path / "rules")
    done = _relay("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--admin-port",
                  str(free_port()), "--rules", str(rules), "--var", str(tmp_path / "var"),
                  env=placeholders)
    assert done.returncode == 1
    for name in ("RELAY_SECRET", "RELAY_ADMIN_TOKEN", "RELAY_STATE", "RELAY_SPOOL",
                 "RELAY_SITE_ORIGIN"):
        assert f"environment variable {name} is not set" in done.stderr, done.stderr
    # with the others set, the empty backend secret falls back to the shipped example: R301
    done = _relay("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--admin-port",
                  str(free_port()), "--rules", str(rules), "--var", str(tmp_path / "var"),
                  env={**FILLED, "BACKEND_SIGNING_SECRET": ""})
    assert done.returncode == 1 and "R301" in done.stderr and "BACKEND_SIGNING_SECRET" in \
        done.stderr, done.stderr


def test_the_deployment_runs_the_image_as_built() -> None:
    deployment = _manifests()[("Deployment", "relay")]
    assert deployment["spec"]["replicas"] == 3
    pod, container = _pod("Deployment"), _container("Deployment")
    final = [i for i in instructions(DEPLOY / "Dockerfile") if i.stage == 1]
    (user,) = [i.args for i in final if i.keyword == "USER"]
    (cmd,) = [i.words() for i in final if i.keyword == "CMD"]
    (volume,) = [i.words()[0] for i in final if i.keyword == "VOLUME"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == user
    assert container["args"] == cmd
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["var"]["mountPath"] == volume and "emptyDir" in volumes["var"]
    assert mounts["rules"]["mountPath"] == cmd[cmd.index("--rules") + 1]
    assert "subPath" not in mounts["rules"], "a subPath mount is never updated"
    assert volumes["rules"]["configMap"]["name"] == "relay-rules"
    assert container["envFrom"] == [{"secretRef": {"name": "relay-secrets"}}]
    assert set(container["resources"]) == {"requests", "limits"}


def test_probes_liveness_on_healthz_readiness_on_readyz() -> None:
    for kind in ("Deployment", "StatefulSet"):
        container = _container(kind)
        for probe in ("livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/t/healthz", "port": "http"}
        command = container["readinessProbe"]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert "http://127.0.0.1:9901/readyz" in command[2] and "RELAY_ADMIN_TOKEN" in command[2]


def test_the_grace_period_covers_the_relays_graceful_stop() -> None:
    for kind in ("Deployment", "StatefulSet"):
        pre_stop = _container(kind)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        needed = float(pre_stop[1]) + HTTP_GRACE + SHUTDOWN_DRAIN_SECONDS
        grace = _pod(kind)["terminationGracePeriodSeconds"]
        assert needed < grace <= needed * 3, (kind, needed, grace)


def test_services_autoscaler_and_budget_select_the_relay() -> None:
    objects = _manifests()
    labels = _manifests()[("Deployment", "relay")]["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in _container("Deployment")["ports"]}
    for name in ("relay", "relay-admin"):
        service = objects[("Service", name)]["spec"]
        assert service["selector"] == labels
        assert {p["targetPort"] for p in service["ports"]} <= ports
    assert [p["targetPort"] for p in objects[("Service", "relay")]["spec"]["ports"]] == ["http"]
    hpa = objects[("HorizontalPodAutoscaler", "relay")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "relay"}
    assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] > 3
    pdb = objects[("PodDisruptionBudget", "relay")]["spec"]
    assert pdb["selector"]["matchLabels"] == labels and pdb["maxUnavailable"] == 1


def test_the_statefulset_is_the_deployment_with_a_volume_for_the_sqlite_spool() -> None:
    statefulset = _manifests()[("StatefulSet", "relay")]["spec"]
    (claim,) = statefulset["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "var"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert statefulset["serviceName"] == "relay-sqlite" and statefulset["replicas"] == 1
    env = {e["name"]: e["value"] for e in _container("StatefulSet")["env"]}
    assert env == {"RELAY_STATE": "memory", "RELAY_SPOOL": "sqlite:///var/spool.db"}
    # Apart from that, the same pod: a change to one must be made to the other.
    ours, theirs = copy.deepcopy(_pod("StatefulSet")), copy.deepcopy(_pod("Deployment"))
    del ours["containers"][0]["env"]
    del theirs["topologySpreadConstraints"]
    theirs["volumes"] = [v for v in theirs["volumes"] if v["name"] != "var"]
    assert ours == theirs
