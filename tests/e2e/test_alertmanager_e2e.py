"""Two sentinels, two clustered Alertmanagers (Debian's prometheus-alertmanager) on 127.0.0.1: both
sentinels post the same incident to both peers, and the receiver gets exactly one notification
for the incident and one when it is resolved (same labels, so Alertmanager deduplicates)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, free_port, wait_until
from targets import target_server
from webhook_sink import WebhookSink

pytestmark = pytest.mark.slow

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

if BINARY is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("prometheus-alertmanager is missing: .ci/run installs it")
    pytest.skip("prometheus-alertmanager is not installed", allow_module_level=True)

# How long a peer waits, per position in the cluster, for the gossiped notification log before it
# sends its own copy. Gossip on loopback takes well under a second; 10 s leaves room for a loaded
# 2-core machine, where a 2 s wait let a starved gossip arrive late and both peers notify.
PEER_TIMEOUT = 10.0
# The incident, and the window over which a duplicate's absence is observed: a peer-timeout plus a
# wide margin for a slow flush (Alertmanager's clock is the wall clock).
INCIDENT_LENGTH = PEER_TIMEOUT + 15.0
# A peer flushes its group every group interval and each flush waits the peer-timeout before its
# deduplication; a flush still waiting with the firing alert when the other peer's "resolved"
# reaches it sends a second "firing" (seen with a 2 s interval and a 10 s peer-timeout). The
# interval is therefore well above the peer-timeout plus the skew between the two peers' ticks
# (both receive the alert within a second, from the same sentinels), as in real deployments
# (defaults 5 min and 15 s).
GROUP_INTERVAL = PEER_TIMEOUT * 3

AM_CONFIG = """
route:
  receiver: sink
  group_by: [alertname, site]
  group_wait: 1s
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


def ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/api/v2/status"
    with urllib.request.urlopen(url, timeout=10) as r:
        status = json.loads(r.read())
    cluster = status.get("cluster", {})
    return cluster.get("status") == "ready" and len(cluster.get("peers") or []) == 2


def cluster_formed(ports: list[int]) -> bool:
    """Both peers are settled and each lists both members, by the same names: only then does the
    second peer know it is second and wait for the first one's notification log."""
    names = []
    for port in ports:
        url = f"http://127.0.0.1:{port}/api/v2/status"
        with urllib.request.urlopen(url, timeout=10) as r:
            cluster = json.loads(r.read()).get("cluster", {})
        if cluster.get("status") != "ready":
            return False
        names.append(sorted(peer.get("name", "") for peer in cluster.get("peers") or []))
    return len(names[0]) == 2 and names[0] == names[1]


def site_up(proc: SentinelProcess) -> bool:
    return proc.metric("sentinel_site_up", site="shop") == 1


def sent_once(proc: SentinelProcess, kind: str) -> bool:
    """The sentinel handed exactly one `kind` notification to Alertmanager."""
    return proc.metric("sentinel_notifications_sent_total", channel="am", kind=kind) == 1


@contextmanager
def alertmanager_pair(tmp: Path, receiver: str) -> Iterator[list[int]]:
    config = tmp / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(url=receiver, group_interval=f"{GROUP_INTERVAL:g}s"))
    web = [free_port(), free_port()]
    gossip = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in (0, 1):
            log = (tmp / f"am{i}.log").open("wb")
            assert BINARY is not None
            procs.append(
                subprocess.Popen(
                    [
                        BINARY,
                        f"--config.file={config}",
                        f"--storage.path={tmp / f'am{i}'}",
                        f"--web.listen-address=127.0.0.1:{web[i]}",
                        f"--cluster.listen-address=127.0.0.1:{gossip[i]}",
                        f"--cluster.peer=127.0.0.1:{gossip[1 - i]}",
                        "--cluster.settle-timeout=5s",
                        f"--cluster.peer-timeout={PEER_TIMEOUT:g}s",
                        "--cluster.gossip-interval=100ms",
                        "--cluster.pushpull-interval=2s",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
        for port in web:
            wait_until(functools.partial(ready, port), timeout=60, interval=0.2)
        wait_until(functools.partial(cluster_formed, web), timeout=60, interval=0.2)
        yield web
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sentinel_config(target: str, am_ports: list[int]) -> str:
    urls = ", ".join(f'"http://127.0.0.1:{p}"' for p in am_ports)
    return f"""
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2
remind_every = "0s"

[[channels]]
name = "am"
type = "alertmanager"
urls = [{urls}]
resend_every = "1h"

[[sites]]
name = "shop"
url = "{target}"
"""


def test_two_sentinels_two_alertmanagers_one_notification_each_way(tmp_path: Path) -> None:
    with (
        target_server({"/shop": 200}) as target,
        WebhookSink() as sink,
        alertmanager_pair(tmp_path, sink.url("/am")) as am_ports,
    ):
        text = sentinel_config(target.url("/shop"), am_ports)
        procs = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            procs.append(SentinelProcess(tmp_path / name, text))
        try:
            for proc in procs:
                proc.start()
            for proc in procs:
                wait_until(functools.partial(site_up, proc), 20)
            target.routes["/shop"] = 500
            for proc in procs:
                wait_until(functools.partial(sent_once, proc, "down"), timeout=30)
            [firing] = sink.wait_for(1, timeout=60)
            body = firing.json()
            assert body["status"] == "firing"
            [alert] = body["alerts"]
            assert alert["labels"] == {
                "alertname": "SiteDown",
                "site": "shop",
                "severity": "critical",
            }
            # The incident lasts a while, as real ones do: the second peer holds its copy of the
            # notification back for its position x peer-timeout (PEER_TIMEOUT) and then finds in the
            # gossiped log that the first peer sent it. An incident resolved before that is, by
            # Alertmanager's design, notified by both peers.
            time.sleep(INCIDENT_LENGTH)
            target.routes["/shop"] = 200
            for proc in procs:
                wait_until(functools.partial(sent_once, proc, "recovered"), timeout=30)
            got = wait_until(
                lambda: [r for r in sink.received if r.json()["status"] == "resolved"],
                timeout=GROUP_INTERVAL + 60,
            )
            # Absence can only be observed over a while: longer than the peers' wait for each
            # other (PEER_TIMEOUT) after the group interval's tick that sent the resolved one, so
            # a duplicate would have arrived.
            time.sleep(INCIDENT_LENGTH)
            statuses = [r.json()["status"] for r in sink.received]
            assert statuses == ["firing", "resolved"], statuses
            assert got[0].json()["alerts"][0]["labels"]["site"] == "shop"
        finally:
            for proc in procs:
                if proc.proc is not None:
                    proc.stop()
