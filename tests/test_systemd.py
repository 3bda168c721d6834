"""sd_notify and the watchdog against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sentinel.systemd import Notifier, WatchdogFeeder, sanitize_status
from timing import near

DEADLINE = 5.0


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: a bound AF_UNIX SOCK_DGRAM socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # the NOTIFY_SOCKET value

    def receive(self, timeout: float = DEADLINE) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(65536).decode()

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        out: list[str] = []
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            return out

    async def areceive(self, timeout: float = DEADLINE) -> str:
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)
        return data.decode()


@pytest.fixture
def path_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield FakeSystemd(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    name = f"sentinel-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield FakeSystemd(sock, "@" + name)
    sock.close()


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest) -> Iterator[FakeSystemd]:
    fixture = "path_systemd" if request.param == "path" else "abstract_systemd"
    yield request.getfixturevalue(fixture)


@pytest.fixture
def notifier(fake_systemd: FakeSystemd) -> Iterator[Notifier]:
    n = Notifier.from_env({"NOTIFY_SOCKET": fake_systemd.address})
    yield n
    n.close()


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def fields(datagram: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.split("\n"))


def test_ready_sends_ready_and_status_in_one_datagram(
    notifier: Notifier, fake_systemd: FakeSystemd
) -> None:
    notifier.ready("12 sites, 1 down")
    assert fake_systemd.receive() == "READY=1\nSTATUS=12 sites, 1 down"


def test_ready_without_status_sends_only_ready(
    notifier: Notifier, fake_systemd: FakeSystemd
) -> None:
    notifier.ready()
    assert fake_systemd.receive() == "READY=1"


def test_status_is_flattened_to_one_line_so_it_cannot_inject_ready(
    notifier: Notifier, fake_systemd: FakeSystemd
) -> None:
    notifier.status("3 sites\nREADY=1\r\n\x1b[31mred")
    datagram = fake_systemd.receive()
    assert "\n" not in datagram
    assert datagram == "STATUS=3 sites READY=1 [31mred"


def test_notify_replaces_newlines_inside_a_line(
    notifier: Notifier, fake_systemd: FakeSystemd
) -> None:
    notifier.notify("STATUS=a\nSTOPPING=1", "X=1")
    assert fake_systemd.receive() == "STATUS=a STOPPING=1\nX=1"


def test_reloading_carries_monotonic_usec_close_to_now(
    notifier: Notifier, fake_systemd: FakeSystemd
) -> None:
    before = monotonic_usec()
    notifier.reloading("reloading /etc/sentinel/sites.toml")
    after = monotonic_usec()
    got = fields(fake_systemd.receive())
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after
    assert got["STATUS"] == "reloading /etc/sentinel/sites.toml"


def test_stopping_and_watchdog_datagrams(notifier: Notifier, fake_systemd: FakeSystemd) -> None:
    notifier.stopping()
    notifier.watchdog()
    assert fake_systemd.receive() == "STOPPING=1"
    assert fake_systemd.receive() == "WATCHDOG=1"


def test_without_notify_socket_every_call_is_a_noop() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    n.ready("x")
    n.status("x")
    n.reloading()
    n.stopping()
    n.watchdog()
    assert n.watchdog_interval() is None


def test_unreachable_socket_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.WARNING, logger="sentinel.systemd"):
        n.ready()
        n.watchdog()
        n.stopping()
    n.close()
    warnings = [r for r in caplog.records if r.name == "sentinel.systemd"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_relative_notify_socket_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sentinel.systemd"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "relative/path"})
    assert not n.enabled
    n.ready()  # no exception
    assert any("NOTIFY_SOCKET" in r.getMessage() for r in caplog.records)


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "60000000"})
    assert n.watchdog_interval() == 30.0


def test_watchdog_pid_of_this_process_enables_the_watchdog() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval() == 1.0


def test_watchdog_pid_of_another_process_disables_the_watchdog() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval() is None


@pytest.mark.parametrize("usec", ["", "0", "abc", "-5"])
def test_missing_or_bad_watchdog_usec_means_no_watchdog(usec: str) -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": usec}).watchdog_interval() is None


def test_sanitize_status_cuts_long_text_to_one_short_line() -> None:
    line = sanitize_status("x" * 1000)
    assert len(line) <= 200
    assert line.endswith("…")


class Progress:
    """A scheduler stand-in: each call is one loop iteration, unless stalled. Every call is also
    recorded, so a test can wait until the feeder has looked N more times."""

    def __init__(self) -> None:
        self.value = 0
        self.stalled = False
        self.calls = 0
        self.called = asyncio.Event()

    def __call__(self) -> int:
        self.calls += 1
        self.called.set()
        if not self.stalled:
            self.value += 1
        return self.value

    async def wait_calls(self, n: int, timeout: float = DEADLINE) -> None:
        target = self.calls + n

        async def waiter() -> None:
            while self.calls < target:
                self.called.clear()
                await self.called.wait()

        await asyncio.wait_for(waiter(), timeout)


@pytest.fixture
async def feeder_setup(
    path_systemd: FakeSystemd,
) -> AsyncIterator[tuple[WatchdogFeeder, Progress, FakeSystemd]]:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_systemd.address, "WATCHDOG_USEC": "200000"})
    progress = Progress()
    feeder = WatchdogFeeder(notifier, progress)
    task = asyncio.create_task(feeder.run())
    yield feeder, progress, path_systemd
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()


async def test_feeder_pings_about_every_half_watchdog_usec_while_progress_advances(
    feeder_setup: tuple[WatchdogFeeder, Progress, FakeSystemd],
) -> None:
    feeder, _, systemd = feeder_setup
    assert feeder.interval == pytest.approx(0.1)
    assert await systemd.areceive() == "WATCHDOG=1"  # the immediate first ping
    start = time.monotonic()
    for _ in range(4):
        assert await systemd.areceive() == "WATCHDOG=1"
    elapsed = time.monotonic() - start
    # Four intervals of 0.1 s; loose bounds for a busy CI machine (timing.py: timers fire early).
    assert near(elapsed, 0.3), elapsed


async def test_feeder_stops_pinging_when_progress_stalls_and_resumes_after(
    feeder_setup: tuple[WatchdogFeeder, Progress, FakeSystemd],
) -> None:
    _, progress, systemd = feeder_setup
    assert await systemd.areceive() == "WATCHDOG=1"
    assert await systemd.areceive() == "WATCHDOG=1"

    progress.stalled = True
    # Pings of checks that ran before the stall may still be queued: drain them once the feeder
    # has made its first check of the stalled counter, then let it check three more times.
    await progress.wait_calls(1)
    systemd.pending()
    await progress.wait_calls(3)
    assert systemd.pending() == []

    progress.stalled = False
    assert await systemd.areceive() == "WATCHDOG=1"


async def test_feeder_without_watchdog_returns_at_once(path_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_systemd.address})
    feeder = WatchdogFeeder(notifier, Progress())
    await asyncio.wait_for(feeder.run(), DEADLINE)
    assert path_systemd.pending() == []


async def test_feeder_survives_a_failing_progress_callback_without_pinging(
    path_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_systemd.address})

    def broken() -> int:
        raise RuntimeError("scheduler gone")

    feeder = WatchdogFeeder(notifier, broken, interval=0.1)
    with caplog.at_level(logging.ERROR, logger="sentinel.systemd"):
        assert feeder.check() is False
    assert path_systemd.pending() == []
    assert "progress callback failed" in caplog.text
    notifier.close()


def test_feeder_check_pings_only_when_the_counter_changed(path_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_systemd.address})
    counter = [0]
    feeder = WatchdogFeeder(notifier, lambda: counter[0], interval=1.0)
    assert feeder.check() is True  # first look: nothing to compare with
    assert feeder.check() is False
    counter[0] += 1
    assert feeder.check() is True
    assert path_systemd.pending() == ["WATCHDOG=1", "WATCHDOG=1"]
    assert feeder.pings == 2
    notifier.close()
