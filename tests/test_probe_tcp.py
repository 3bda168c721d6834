"""TCP connect probes against real listening (and not listening) sockets on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import daemon_proc
from sentinel.config import SiteConfig
from sentinel.probes.tcp import probe_tcp
from timing import near


def site(target: str, **kwargs: Any) -> SiteConfig:
    kwargs.setdefault("timeout", 5.0)
    return SiteConfig(name="tcp", kind="tcp", target=target, **kwargs)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on 127.0.0.1 (the kernel completes handshakes without accept())."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


@pytest.fixture
def free_port() -> int:
    return daemon_proc.free_port()


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: Linux drops further SYNs, so a connect hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # room for one not-yet-accepted connection
        port: int = server.getsockname()[1]
        fillers = [socket.create_connection(("127.0.0.1", port), timeout=1.0)]
        for _ in range(2):  # extra half-open attempts, in case the first is not queued yet
            extra = socket.socket()
            extra.setblocking(False)
            extra.connect_ex(("127.0.0.1", port))
            fillers.append(extra)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_open_port_reports_ok_with_connect_time(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    before = time.time()
    result = await probe_tcp(site(f"127.0.0.1:{port}"))
    assert (result.ok, result.reason, result.status) == (True, "ok", 0), result
    assert result.message == f"connected to 127.0.0.1:{port}"
    assert before <= result.started_at <= time.time()
    assert result.dns is None  # an IP literal is not resolved
    assert result.connect is not None and 0 <= result.connect <= result.total < 5.0


async def test_hostname_target_reports_dns_time(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = await probe_tcp(site(f"localhost:{port}"))
    assert result.ok, result
    assert result.dns is not None and result.connect is not None
    assert result.dns + result.connect <= result.total


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
async def test_ipv6_literal_target_connects() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = await probe_tcp(site(f"[::1]:{port}"))
    assert result.ok, result
    assert result.message == f"connected to [::1]:{port}"


async def test_refused_port_reports_connect_refused(free_port: int) -> None:
    result = await probe_tcp(site(f"127.0.0.1:{free_port}"))
    assert (result.ok, result.reason) == (False, "connect_refused"), result
    assert result.message == f"connection refused by 127.0.0.1:{free_port}"


async def test_unresolvable_name_reports_dns() -> None:
    result = await probe_tcp(site("nonexistent.invalid:587"))
    assert (result.ok, result.reason) == (False, "dns"), result
    assert "nonexistent.invalid" in result.message


async def test_full_backlog_times_out_within_the_deadline(full_backlog: int) -> None:
    start = time.perf_counter()
    result = await probe_tcp(site(f"127.0.0.1:{full_backlog}", timeout=0.3))
    elapsed = time.perf_counter() - start
    assert (result.ok, result.reason) == (False, "timeout"), result
    assert near(elapsed, 0.3), elapsed  # uvloop's timers may fire ~1 ms early (timing.py)
    assert result.message == f"no connection to 127.0.0.1:{full_backlog} within 0.3s"


async def test_malformed_target_reports_error_without_raising() -> None:
    result = await probe_tcp(site("no-port-here"))
    assert (result.ok, result.reason) == (False, "error")
