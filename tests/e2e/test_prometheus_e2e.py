"""A real Prometheus scraping a real sentinel daemon over TLS with basic auth ([sentinel]
web_config), and every query of deploy/grafana/sentinel.json answered by that Prometheus.

One stack for the module: an http target (one path up, one down), an https target (a trustme
certificate, so the expiry metric exists), a sentinel with a heartbeat and early warnings sampled
fast, serving over TLS with a bcrypt user; Prometheus scrapes it every 2 s with the right
password (job "sentinel") and with a wrong one (job "wrong-password")."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme

from daemon_proc import SentinelProcess, wait_until
from prometheus_server import PrometheusProcess, prometheus_binary
from targets import TargetHandler, TargetServer, target_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "sentinel.json"
USER, PASSWORD = "prometheus", "correct horse battery staple"
# Grafana's variables, as the dashboard's test stands them in (README "Grafana dashboard").
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${site}": ".*",
    "$site": ".*",
    "${instance}": ".*",
    "$instance": ".*",
    "${job}": "sentinel",
    "$job": "sentinel",
}
QUERY_TIMEOUT = (
    90.0  # seconds for every query to have data (rates need two scrapes, forecasts samples)
)


class TLSSentinel(SentinelProcess):
    """A SentinelProcess reached over https with basic auth."""

    context: ssl.SSLContext

    def _open(self, path: str, auth: tuple[str, str] | None) -> Any:
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}")
        if auth is not None:
            import base64

            token = base64.b64encode(":".join(auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return urllib.request.urlopen(request, timeout=5, context=self.context)

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"sentinel exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with self._open("/healthz", None) as r:  # open without a password
                return bool(r.status == 200)
        except OSError:
            return False

    def get(self, path: str) -> bytes:
        with self._open(path, (USER, PASSWORD)) as r:
            return bytes(r.read())

    def status_of(self, path: str, auth: tuple[str, str] | None) -> int:
        try:
            with self._open(path, auth) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@contextmanager
def https_target(ca: trustme.CA) -> Iterator[TargetServer]:
    server = TargetServer(("127.0.0.1", 0), TargetHandler)
    server.routes = {"/ok": 200}
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Stack:
    sentinel: TLSSentinel
    prometheus: PrometheusProcess
    web_yml: Path


SCRAPE = """
  - job_name: {job}
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: {user}
      password: {password}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{vantage: here}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_binary()  # skip early without it
    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    ca = trustme.CA()
    ca_pem = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "sentinel.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web_yml = tmp / "web.yml"
    web_yml.write_text(
        "tls_server_config:\n  cert_file: sentinel.pem\n  key_file: sentinel.pem\n"
        f"basic_auth_users:\n  {USER}: '{hashed}'\n"
    )
    pid_file = tmp / "watched.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    with target_server({"/ok": 200, "/fail": 500}) as http, https_target(ca) as https:
        sentinel = TLSSentinel(
            tmp,
            "",
        )
        sentinel.context = ssl.create_default_context(cafile=str(ca_pem))
        header = f'web_config = "{web_yml}"\n'
        sentinel.write_config(
            f"""
[defaults]
interval = "1s"
failure_threshold = 1

[[sites]]
name = "web"
url = "{http.url("/ok")}"

[[sites]]
name = "broken"
url = "{http.url("/fail")}"

[[sites]]
name = "secure"
url = "https://127.0.0.1:{https.port}/ok"
ca_file = "{ca_pem}"

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
"""
        )
        # web_config belongs to [sentinel], which write_config puts first.
        text = sentinel.config_path.read_text()
        sentinel.config_path.write_text(text.replace("[sentinel]\n", f"[sentinel]\n{header}", 1))
        sentinel.start()
        scrape = "".join(
            SCRAPE.format(job=job, ca=ca_pem, user=USER, password=pw, port=sentinel.port)
            for job, pw in (("sentinel", f'"{PASSWORD}"'), ("wrong-password", "nope"))
        )
        prometheus = PrometheusProcess(
            tmp,
            # 2s: a scrape that waits for a bcrypt check on a loaded machine still fits in its timeout.
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n"
            "scrape_configs:" + scrape,
        )
        try:
            prometheus.start()
            yield Stack(sentinel, prometheus, web_yml)
        finally:
            prometheus.stop()
            sentinel.stop()


def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_wrong_password_gets_401(
    stack: Stack,
) -> None:
    prom, sentinel = stack.prometheus, stack.sentinel

    def scraped() -> bool:
        targets = prom.targets()
        return (
            targets["sentinel"]["health"] == "up" and targets["wrong-password"]["health"] == "down"
        )

    wait_until(scraped, timeout=60, interval=0.5)
    assert "401" in prom.targets()["wrong-password"]["lastError"]
    up = wait_until(lambda: prom.query('sentinel_site_up{job="sentinel", site="web"}'), timeout=30)
    assert up[0]["metric"]["vantage"] == "here"
    assert prom.query('up{job="wrong-password"}')[0]["value"][1] == "0"
    # What stays open and what does not, asked directly.
    assert sentinel.status_of("/healthz", None) == 200
    assert sentinel.status_of("/ping/backup", None) == 200  # the heartbeat's own rules apply
    for path in ("/metrics", "/", "/api/status", "/badge/web/status.svg"):
        assert sentinel.status_of(path, None) == 401, path
        assert sentinel.status_of(path, (USER, "wrong")) == 401, path
        assert sentinel.status_of(path, (USER, PASSWORD)) == 200, path
    assert "status page https://127.0.0.1:" in sentinel.log()
    # `sentinel ping` on this machine follows web_config: https, trusting the served certificate.
    result = subprocess.run(
        [sys.executable, "-m", "sentinel", "ping", "backup", "-c", str(sentinel.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=sentinel.env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "sentinel", "check", "-c", str(sentinel.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=sentinel.env,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert f"web_config: {stack.web_yml} (TLS, basic auth)" in check.stdout


def test_a_bad_web_config_at_reload_is_one_line_and_the_old_one_keeps_serving(
    stack: Stack,
) -> None:
    sentinel = stack.sentinel
    good = stack.web_yml.read_text()
    try:
        stack.web_yml.write_text(good.replace("key_file: sentinel.pem", "key_file: missing.pem"))
        sentinel.signal(signal.SIGHUP)
        line = wait_until(
            lambda: [
                ln
                for ln in sentinel.log().splitlines()
                if "reload rejected" in ln and "web_config" in ln
            ],
            timeout=30,
        )[0]
        assert "missing.pem" in line
        # The line is logged just before the gauge is set: wait for the gauge too.
        wait_until(
            lambda: sentinel.metric("sentinel_config_last_reload_successful") == 0, timeout=30
        )
        assert sentinel.status_of("/metrics", (USER, PASSWORD)) == 200
        assert sentinel.status_of("/metrics", None) == 401
    finally:
        stack.web_yml.write_text(good)
        sentinel.signal(signal.SIGHUP)
        wait_until(
            lambda: sentinel.metric("sentinel_config_last_reload_successful") == 1, timeout=30
        )
    # After a good reload the port still speaks TLS (the listening socket was handed over).
    assert sentinel.status_of("/metrics", (USER, PASSWORD)) == 200


# ---------------------------------------------------------------- the Grafana dashboard


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel (rows included)."""
    board = json.loads(DASHBOARD.read_text())
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return found


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def test_every_dashboard_query_returns_data_from_a_real_prometheus(stack: Stack) -> None:
    prom = stack.prometheus
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    missing = {title: substitute(expr) for title, expr in exprs}
    answered: dict[str, int] = {}

    def all_answered() -> bool:
        for title, expr in list(missing.items()):
            result = prom.query(expr)
            if result:
                answered[title] = len(result)
                del missing[title]
        return not missing

    try:
        wait_until(all_answered, timeout=QUERY_TIMEOUT, interval=1.0)
    except AssertionError:
        pytest.fail(f"dashboard queries without data after {QUERY_TIMEOUT}s: {missing}")
    # The metric names are sentinel's own: each one the dashboard uses exists in /metrics.
    text = stack.sentinel.metrics_text()
    for _, expr in exprs:
        for name in re.findall(r"\b((?:sentinel|process)_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert f"# TYPE {base} " in text or f"# TYPE {name} " in text, name


def test_a_bad_web_config_at_start_is_one_line_and_exit_78(tmp_path: Path) -> None:
    web_yml = tmp_path / "web.yml"
    web_yml.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    proc = SentinelProcess(tmp_path, "")
    text = proc.config_path.read_text()
    proc.config_path.write_text(
        text.replace("[sentinel]\n", f'[sentinel]\nweb_config = "{web_yml}"\n', 1)
    )
    for command in ("run", "check"):
        result = subprocess.run(
            [sys.executable, "-m", "sentinel", command, "-c", str(proc.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=proc.env,
            check=False,
        )
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        lines = [ln for ln in result.stderr.splitlines() if "basic_auth_users" in ln]
        assert len(lines) == 1, result.stderr
        assert f"web_config {web_yml}: basic_auth_users.prometheus: not a bcrypt hash" in lines[0]
