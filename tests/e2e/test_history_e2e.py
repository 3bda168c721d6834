"""History with the real daemon: every probe a target served is in the store once, across a
clean stop, a kill -9 and restarts; the time sentinel was down is no data; the page, the API and
`sentinel status` (live, and from the store when no daemon answers) show it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon_proc import SentinelProcess, wait_until
from sentinel.history import db
from sentinel.store import Store


class Counting(ThreadingHTTPServer):
    daemon_threads = True
    served = 0
    lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Counting

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        with self.server.lock:
            self.server.served += 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def counting_target() -> Iterator[Counting]:
    server = Counting(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def config(port: int) -> str:
    return f"""
[history]
write_every = "1s"

[status_page]
title = "E2E status"

[[sites]]
name = "web"
url = "http://127.0.0.1:{port}/"
interval = "1s"
timeout = "800ms"
"""


def stored(proc: SentinelProcess) -> tuple[int, int, int]:
    """(probes, watched ms, down ms) of site web, all hours."""
    with Store.open_readonly(proc.state_dir) as store:
        rows = db.read_rollups(store, db.HOUR, 0).get("web", {})
    return (
        sum(r.probes for r in rows.values()),
        sum(r.covered_ms for r in rows.values()),
        sum(r.down_ms for r in rows.values()),
    )


def status_cmd(proc: SentinelProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", "status", "-c", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=proc.env,
    )


@pytest.mark.slow
def test_history_counts_every_probe_once_across_stop_kill_and_restart(
    sentinel_proc: Callable[..., SentinelProcess],
) -> None:
    with counting_target() as target:
        proc = sentinel_proc(config(target.server_address[1]))
        lifetimes = 0.0

        def run_until(n: int) -> float:
            began = time.monotonic()
            proc.start()
            wait_until(lambda: target.served >= n, timeout=60)
            return began

        began = run_until(5)
        # live: the page, the API and `sentinel status` ask the daemon
        page = proc.get("/").decode()
        assert '<html lang="en">' in page and "E2E status" in page and 'data-site="web"' in page
        api = proc.status()["web"]
        assert api["uptime"]["24h"] == 1.0 and api["last_check_age_seconds"] < 30
        live = status_cmd(proc)
        assert live.returncode == 0, live.stderr
        assert live.stdout.startswith("live from the running daemon at http://127.0.0.1:")
        assert "100%" in next(x for x in live.stdout.splitlines() if x.startswith("web"))
        assert proc.stop() == 0
        lifetimes += time.monotonic() - began
        served = target.served
        probes, watched, down = stored(proc)
        # a clean stop writes everything; a probe cancelled in flight may be served, not stored
        assert served - 1 <= probes <= served
        assert down == 0

        # no daemon: `sentinel status` reads the store and says so
        offline = status_cmd(proc)
        assert offline.returncode == 0, offline.stderr
        assert offline.stdout.startswith("no daemon answers at http://127.0.0.1:")
        assert "from the state store" in offline.stdout

        began = run_until(served + 5)
        before_kill = stored(proc)[0]
        proc.kill9()
        lifetimes += time.monotonic() - began
        served_at_kill = target.served
        after_kill = stored(proc)[0]
        assert before_kill <= after_kill <= served_at_kill  # nothing counted twice

        began = run_until(served_at_kill + 5)
        assert proc.stop() == 0
        lifetimes += time.monotonic() - began
        probes, watched, down = stored(proc)
        # every probe served is stored once, except those of the last write window before the
        # kill -9 (write_every 1 s, a probe a second) and one cancelled in flight per stop
        assert target.served - 2 - 3 <= probes <= target.served
        assert down == 0
        # the time sentinel was stopped or killed is no data: never more watched than it ran
        assert watched / 1000 <= lifetimes + 1


@pytest.mark.slow
def test_history_api_and_site_page(sentinel_proc: Callable[..., SentinelProcess]) -> None:
    with counting_target() as target:
        proc = sentinel_proc(config(target.server_address[1])).start()
        wait_until(lambda: target.served >= 3, timeout=60)
        hist = json.loads(proc.get("/api/sites/web/history?resolution=hour&days=1"))
        assert hist["site"] == "web" and len(hist["periods"]) == 24
        assert hist["periods"][-1]["probes"] >= 1
        assert json.loads(proc.get("/api/incidents?site=web"))["incidents"] == []
        page = proc.get("/sites/web").decode()
        assert "Latency per hour, last 7 days" in page
        badge = proc.get("/badge/web/status.svg").decode()
        assert ">up</text>" in badge
        assert proc.stop() == 0
