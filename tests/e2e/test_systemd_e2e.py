"""`sentinel run` under a (simulated) systemd: a real NOTIFY_SOCKET datagram socket, the watchdog,
reload and stop notifications, and journald-style log lines."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon_proc import SentinelProcess, wait_until
from targets import target_server
from timing import run_delay

pytestmark = pytest.mark.slow  # every test here starts the daemon

CONFIG = """
[defaults]
interval = "1s"
timeout = "500ms"

[[sites]]
name = "ok"
url = "{url}"
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


class Datagrams:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[tuple[float, str]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            self.seen.append((time.monotonic(), data.decode()))

    def wait_for(self, field: str, after: int = 0, timeout: float = 60.0) -> int:
        """Index of the first datagram at or after `after` containing the line `field`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.seen)):
                if field in self.seen[i][1].split("\n"):
                    return i
            self.drain()
        raise AssertionError(f"no {field} after #{after} in {self.seen}")


def test_ready_watchdog_reload_and_stopping_notifications(
    sentinel_proc: Callable[..., SentinelProcess], notify_socket: socket.socket, tmp_path: Path
) -> None:
    with target_server({"/ok": 200}) as target:
        proc = sentinel_proc(
            CONFIG.format(url=target.url("/ok")),
            env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"},
        ).start()
        grams = Datagrams(notify_socket)
        ready = grams.wait_for("READY=1")
        assert "STATUS=1 sites, 0 down" in grams.seen[ready][1]
        # Pings every WATCHDOG_USEC/2 = 0.2 s while the scheduler makes progress. The times are
        # of receipt: a loaded machine delays a ping (or its receipt) by at most what it withheld
        # from the daemon and from this test meanwhile (timing.run_delay).
        assert proc.proc is not None
        waited_before = run_delay(proc.proc.pid) + run_delay()
        first = grams.wait_for("WATCHDOG=1", after=ready)
        fifth = first
        for _ in range(4):
            fifth = grams.wait_for("WATCHDOG=1", after=fifth + 1)
        slack = max(0.0, run_delay(proc.proc.pid) + run_delay() - waited_before) / 4
        pace = (grams.seen[fifth][0] - grams.seen[first][0]) / 4
        assert 0.1 - slack < pace < 0.4 + slack, (pace, slack)

        proc.signal(signal.SIGHUP)
        reloading = grams.wait_for("RELOADING=1", after=fifth)
        lines = grams.seen[reloading][1].split("\n")
        usec = next(int(x.split("=")[1]) for x in lines if x.startswith("MONOTONIC_USEC="))
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 5
        grams.wait_for("READY=1", after=reloading)

        proc.signal(signal.SIGTERM)
        assert proc.proc is not None and proc.proc.wait(timeout=10) == 0
        grams.wait_for("STOPPING=1", after=reloading)


def test_log_lines_carry_journald_priorities_when_stderr_is_the_journal(
    sentinel_proc: Callable[..., SentinelProcess], tmp_path: Path
) -> None:
    log_path = tmp_path / "sentinel.log"
    log_path.touch()
    st = os.stat(log_path)
    with target_server({"/ok": 200}) as target:
        proc = sentinel_proc(
            CONFIG.format(url=target.url("/ok")).replace('"/ok"', '"/ok"')
            + '[[sites]]\nname = "down"\nurl = "http://127.0.0.1:9/"\nfailure_threshold = 1\n',
            env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
        ).start()
        wait_until(lambda: "DOWN" in proc.log(), timeout=10)
        assert proc.stop() == 0
    lines = [x for x in proc.log().splitlines() if x]
    assert lines and all(x[:3] in ("<3>", "<4>", "<6>", "<7>") for x in lines), lines
    down = next(x for x in lines if "DOWN" in x)
    assert down.startswith("<4>") and "site=down" in down and "reason=connect_refused" in down
    assert not any(x[3:7].isdigit() for x in lines)  # no timestamps: journald adds its own
