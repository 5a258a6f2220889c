"""deploy/k8s against a real relay: the ConfigMap's rules, mounted the way the kubelet
mounts a ConfigMap (each file a symlink through ``..data`` to a timestamped folder, swapped
atomically on an update), on Redis state; the readiness
probe's own command; the reload when the ConfigMap changes; a graceful stop on SIGTERM
inside the pod's grace period. (No kubelet or cluster runs here: the layout is made by the
test as the kubelet's atomic writer makes it.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .conftest import MakeRelay
from .relayproc import REPO_ROOT, RelayProcess
from .wire import metric, wait_until

K8S = REPO_ROOT / "deploy" / "k8s"
TOKEN = "e2e-k8s-admin-token-4f0c2b9e7a"
RELOAD_WITHIN = 10.0  # the relay looks at its rules folder every second


def _manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return doc


def _configmap_files() -> dict[str, str]:
    files: dict[str, str] = _manifest("configmap.yaml")["data"]
    # The one change: the admin listener on loopback, as nothing here listens beyond it.
    files["relay.yaml"] = files["relay.yaml"].replace("host: 0.0.0.0", "host: 127.0.0.1")
    assert "host: 127.0.0.1" in files["relay.yaml"]
    return files


def kubelet_write(mount: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``mount`` as the kubelet's atomic writer does: a new timestamped
    folder, a ``..data`` symlink swapped to it by rename, each file a symlink via ``..data``."""
    mount.mkdir(exist_ok=True)
    stamp = mount / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    tmp = mount / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.rename(mount / "..data")
    for name in files:
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(f"..data/{name}")
    if old is not None:
        for path in (mount / old).iterdir():
            path.unlink()
        (mount / old).rmdir()


def _probe(relay: RelayProcess, token: str) -> int:
    """The Deployment's readiness command, run as the kubelet would, on this relay's port."""
    (container,) = _manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[0] == "python"
    code = command[2].replace("127.0.0.1:9901", f"127.0.0.1:{relay.admin_port}")
    done = subprocess.run([sys.executable, *command[1:2], code],
                          env={"RELAY_ADMIN_TOKEN": token}, capture_output=True, timeout=30,
                          check=False)
    return done.returncode


def _ready(http: httpx.Client, relay: RelayProcess) -> dict[str, Any]:
    r = http.get(relay.admin_url("/readyz"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _reloads(http: httpx.Client, relay: RelayProcess, result: str = "ok") -> float:
    page = http.get(relay.admin_url("/metrics"), headers={"Authorization": f"Bearer {TOKEN}"})
    return metric(page.text, "relay_rules_reloads_total", result=result)


def test_the_configmap_mounted_as_the_kubelet_does_reloads_and_probes_pass(
        relays: MakeRelay, redis_url: str, tmp_path: Path) -> None:
    mount = tmp_path / "etc-relay-rules"
    files = _configmap_files()
    kubelet_write(mount, files)
    # The spool as the StatefulSet variant has it: relay.spool redis:// is not built yet
    # (relay.spool.factory says so), so the Deployment's Redis spool cannot run here.
    env = {"RELAY_ADMIN_TOKEN": TOKEN, "RELAY_STATE": redis_url,
           "RELAY_SPOOL": "sqlite:///var/spool.db", "RELAY_SITE_ORIGIN": "https://shop.example"}
    relay = relays(rules_dir=mount, env=env)
    with httpx.Client(timeout=10, trust_env=False) as http:
        assert http.get(relay.url("/healthz")).status_code == 200  # liveness, startup
        assert _probe(relay, TOKEN) == 0
        assert _probe(relay, "not-the-token") != 0
        before = _ready(http, relay)
        assert before["ready"] is True and before["spool_writable"] is True

        changed = dict(files)
        changed["events.yaml"] += "  newsletter: {}\n"
        kubelet_write(mount, changed)
        after = wait_until(
            lambda: (v := _ready(http, relay))["rules_version"] != before["rules_version"]
            and v, RELOAD_WITHIN, "the reload after the ConfigMap update")
        assert after["ready"] is True
        wait_until(lambda: _reloads(http, relay) == 1.0, RELOAD_WITHIN, "the reload counted")
        assert _reloads(http, relay, "error") == 0.0

    # SIGTERM (after preStop) must end the relay well inside terminationGracePeriodSeconds.
    pod = _manifest("deployment.yaml")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] - 5 > 10  # RelayProcess.stop waits 10 s
    relay.signal(signal.SIGTERM)
    assert relay.proc is not None
    assert relay.proc.wait(timeout=pod["terminationGracePeriodSeconds"] - 5) == 0
