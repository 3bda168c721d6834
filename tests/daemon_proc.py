"""Runs the real `sentinel run` as a subprocess for end-to-end tests, and reads what a user sees."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def _port_range() -> range:
    """The ports `free_port` hands out in this test process: below the kernel's ephemeral range
    (where connect() takes its source ports and bind(0) its ports), split between the xdist
    workers, so a port handed out and not yet bound cannot be taken meanwhile by another
    worker's outgoing connection or free_port. Empty where that room is lacking."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    low = 10_000
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    share = (ephemeral_start - low) // workers
    if share < 500:
        return range(0)
    return range(low + worker * share, low + (worker + 1) * share)


_PORTS = _port_range()
_next_port = [0]


def free_port() -> int:
    """A loopback TCP port nothing listens on, for a server a test starts next. Handed out in
    turn from this process's own range (`_port_range`), skipping ports something holds; with no
    such range, one the kernel picks (bind to port 0)."""
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The least time any wait_until gives its condition. A timeout here bounds a HUNG test; it never
# measures speed (a test that checks promptness asserts on the time it measured, after the wait).
# CI runs on a 2-core machine that other jobs may load: a daemon that normally acts within a
# second can take ten, so a shorter bound written at a call site ("timeout=5") is raised to this.
# It costs nothing when the condition holds: the wait returns as soon as it does.
MIN_WAIT = 30.0


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail with the last value on timeout
    (at least MIN_WAIT seconds)."""
    timeout = max(timeout, MIN_WAIT)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


# Set by conftest for each test: whether it is marked `slow`. Starting the daemon in a test that
# is not would make `pytest -m "not slow"` (the quick loop) slow again.
SLOW_TEST_RUNNING = True


class SentinelProcess:
    """`python -m sentinel run -c FILE` with its own state dir and port."""

    def __init__(
        self,
        tmp: Path,
        config_text: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        # A port found free may be taken (by a probe's outgoing connection, another server)
        # before the daemon binds it: start() then moves to another one. Not a port given here.
        self._port_is_ours = port is None
        self.port = port or free_port()
        self.config_path = tmp / "sites.toml"
        self.state_dir = tmp / "state"
        self.config_text = config_text
        self.write_config(config_text)
        # The test runner's own systemd/journald context must not leak into the daemon under test.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC")
        }
        self.env.update(env or {})
        self.log_path = tmp / "sentinel.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, text: str) -> None:
        self._written = text
        header = (
            f'[sentinel]\nlisten = "127.0.0.1:{self.port}"\nstate_dir = "{self.tmp / "state"}"\n'
        )
        self.config_path.write_text(header + text)

    def start(self, *extra: str) -> SentinelProcess:
        assert SLOW_TEST_RUNNING, "a test that starts the daemon must be marked @pytest.mark.slow"
        for attempt in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start(*extra)
            except AssertionError:
                with self.log_path.open("rb") as f:
                    f.seek(logged)
                    lost_the_port = b"address already in use" in f.read()
                if not (lost_the_port and self._port_is_ours) or attempt == 2:
                    raise
                if self.proc is not None and self.proc.poll() is None:
                    self.kill9()
                self.port = free_port()
                self.write_config(self._written)
        raise AssertionError("unreachable")

    def _start(self, *extra: str) -> SentinelProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sentinel",
                "--log-level",
                "debug",
                *extra,
                "run",
                "-c",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            env=self.env,
        )
        log.close()
        wait_until(self.healthy, timeout=60)  # generous: a loaded CI machine
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"sentinel exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return bytes(r.read())

    def metrics_text(self) -> str:
        return self.get("/metrics").decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(sample name, sorted labels): value} from a real scrape."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def status(self) -> dict[str, Any]:
        data = json.loads(self.get("/api/status"))
        return {s["site"]: s for s in data["sites"]}

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"sentinel did not stop within {timeout}s:\n{self.log()}"
            ) from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
