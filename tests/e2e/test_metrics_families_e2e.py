"""A running daemon's /metrics keeps every family users' dashboards and rules know, and the
daemon loads no prometheus_client.

sentinel formats its metrics itself (sentinel.promtext) since it dropped prometheus_client from
its runtime (~3 MiB of RSS). `metric_families.txt` is what a daemon with every metric-producing
feature on exposed while it still used prometheus_client: name, type, label names and HELP text
of each family, in order. `python tests/e2e/test_metrics_families_e2e.py OUT` writes the list of
the sentinel on PYTHONPATH (how it was captured).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon_proc import SentinelProcess, wait_until
from targets import target_server

PINNED = Path(__file__).with_name("metric_families.txt")


def rich_config(http_url: str, canary_port: int, pid_file: Path) -> str:
    """Sites that pass and fail, a heartbeat, watches, host disks, a maintenance window, a
    canary and a dead man's switch: every family has its header, most have samples."""
    return f"""
canaries = ["tcp://127.0.0.1:{canary_port}"]

[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 1

[[sites]]
name = "web"
url = "{http_url}/ok"

[[sites]]
name = "broken"
url = "{http_url}/fail"

[[sites]]
name = 'we"ird\\site'
url = "{http_url}/ok"

[[heartbeats]]
name = "backup"
every = "1h"

[[watch]]
name = "tests"
pid_file = "{pid_file}"
sample_every = "100ms"
window = "6s"
limit = "64GiB"

[host]
disks = ["/"]
disk_sample_every = "100ms"
disk_window = "6s"
cpu_steal_sample_every = "100ms"

[[maintenance]]
name = "xmas"
sites = ["web"]
start = "2099-12-24T22:00:00+01:00"
end = "2099-12-25T02:00:00+01:00"

[deadman]
url = "{http_url}/ping"
every = "2s"
"""


def families(text: str) -> list[str]:
    """One line per family: name, type, the label names of its samples, HELP (as parsed)."""
    out = []
    for family in text_string_to_metric_families(text):
        labels = sorted({name for s in family.samples for name in s.labels})
        out.append(f"{family.name} {family.type} [{','.join(labels)}] {family.documentation}")
    return out


@contextmanager
def rich_daemon(tmp: Path) -> Iterator[SentinelProcess]:
    pid_file = tmp / "watched.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    routes = {"/ok": 200, "/fail": 500, "/ping": 200}
    with target_server(routes) as http, target_server(routes) as canary:
        proc = SentinelProcess(tmp, rich_config(http.url("").rstrip("/"), canary.port, pid_file))
        proc.start()
        try:
            # Every site probed, a dead man's ping tried, the watch and the disk sampled.
            wait_until(
                lambda: (
                    all(
                        proc.metric("sentinel_probes_total", site=s, result=r) is not None
                        for s, r in (("web", "success"), ("broken", "failure"))
                    )
                    # (the target server refuses its POST: an "error" ping is a ping too)
                    and (proc.metric("sentinel_deadman_pings_total", result="error") or 0) >= 1
                    and proc.metric("sentinel_watch_readable", watch="tests") == 1
                    and proc.metric("sentinel_host_disk_readable", mount="/") == 1
                ),
                timeout=60,
            )
            yield proc
        finally:
            proc.stop()


@pytest.mark.slow
def test_a_running_daemon_exposes_the_families_it_did_with_prometheus_client(
    tmp_path: Path,
) -> None:
    with rich_daemon(tmp_path) as proc:
        text = proc.metrics_text()
    assert families(text) == PINNED.read_text().splitlines()
    assert 'site="we\\"ird\\\\site"' in text  # escaped as prometheus_client escapes


def test_the_daemon_and_the_cli_import_no_prometheus_client() -> None:
    """prometheus_client is a test dependency only: the runtime formats metrics itself."""
    code = (
        "import sys, sentinel.daemon, sentinel.cli, sentinel.entry, sentinel.metrics\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('prometheus_client'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


if __name__ == "__main__":  # capture the list from the sentinel on PYTHONPATH
    import daemon_proc

    daemon_proc.SLOW_TEST_RUNNING = True
    with tempfile.TemporaryDirectory() as d, rich_daemon(Path(d)) as daemon:
        Path(sys.argv[1]).write_text("\n".join(families(daemon.metrics_text())) + "\n")
