"""The invariant "a probe never raises": whatever goes wrong inside a probe becomes a failed
result (reason "error"), and the daemon records a result for the site whatever happens.

A probe that raised used to freeze its site: no result, counters stopped, never DOWN, one
traceback per probe. The first tests pin the case that was found (a server-named charset whose
codec raises); the fault-injection tests make every function of the probe modules raise in turn,
so the next such bug cannot freeze a site either.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sentinel.daemon
import sentinel.hostnames
import sentinel.probes.base
import sentinel.probes.common
import sentinel.probes.connect
import sentinel.probes.lean
import sentinel.probes.response
import sentinel.probes.rxstamp
import sentinel.probes.tcp
from daemon_proc import SentinelProcess, wait_until
from sentinel.config import SiteConfig, parse_config
from sentinel.daemon import Daemon
from sentinel.probes.prober import Prober, internal_error_text
from sentinel.probes.result import ProbeResult

BODY = "café: all is ok".encode()


def http_site(port: int, **kwargs: Any) -> SiteConfig:
    kwargs.setdefault("timeout", 2.0)
    return SiteConfig(name="t", kind="http", target=f"http://127.0.0.1:{port}/", **kwargs)


def tcp_site(port: int) -> SiteConfig:
    return SiteConfig(name="t", kind="tcp", target=f"127.0.0.1:{port}", timeout=2.0)


class ThreadedServer:
    """A loopback HTTP/1.1 server in a thread answering every request with `response`."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        # Set here, not in the thread: a server closed before its thread ran would make the
        # thread's settimeout fail on a closed socket.
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(self.response)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


def response(charset: str, body: bytes = BODY) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset={charset}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
def server() -> Iterator[Callable[[bytes], ThreadedServer]]:
    started: list[ThreadedServer] = []

    def start(payload: bytes) -> ThreadedServer:
        srv = ThreadedServer(payload)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.close()


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(user_agent="sentinel-test/1") as p:
        yield p


# ------------------------------------------------------------------ the case that was found

# Codec names a server may send that raise even with errors="replace" (idna, punycode on
# non-ASCII), are no text codec (rot13, base64, hex) or no codec at all.
HOSTILE_CHARSETS = ["undefined", "idna", "punycode", "rot13", "base64", "hex", "zlib", "x-nope"]


@pytest.mark.parametrize("charset", HOSTILE_CHARSETS)
async def test_a_hostile_charset_is_judged_not_raised(
    prober: Prober, server: Callable[[bytes], ThreadedServer], charset: str
) -> None:
    srv = server(response(charset))
    found = await prober.probe(http_site(srv.port, body_contains="all is ok"))
    assert (found.ok, found.reason) == (True, "ok"), found
    missing = await prober.probe(http_site(srv.port, body_contains="not there"))
    assert (missing.ok, missing.reason) == (False, "body"), missing


# ------------------------------------------------------------------ fault injection

PROBE_MODULES: tuple[ModuleType, ...] = (
    sentinel.probes.lean,
    sentinel.probes.response,
    sentinel.probes.base,
    sentinel.probes.tcp,
    sentinel.probes.common,
    sentinel.probes.rxstamp,
    sentinel.probes.connect,
    sentinel.hostnames,
)


class InjectedError(RuntimeError):
    pass


def injection_points() -> list[tuple[str, Any, str]]:
    """(id, owner, attribute) for every function and method defined in the probe modules."""
    points: list[tuple[str, Any, str]] = []
    for module in PROBE_MODULES:
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                points.append((f"{module.__name__}.{name}", module, name))
            elif inspect.isclass(value) and not issubclass(value, BaseException):
                for attr, member in vars(value).items():
                    if inspect.isfunction(member) and (
                        not attr.startswith("__") or attr == "__init__"
                    ):
                        points.append((f"{module.__name__}.{name}.{attr}", value, attr))
    return points


POINTS = injection_points()


def raising(original: Any) -> Any:
    if inspect.iscoroutinefunction(original):

        async def fail_async(*args: Any, **kwargs: Any) -> Any:
            raise InjectedError("injected fault")

        return fail_async

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise InjectedError("injected fault")

    return fail


def test_there_are_injection_points_in_every_probe_module() -> None:
    for module in PROBE_MODULES:
        assert any(
            owner is module or getattr(owner, "__module__", "") == module.__name__
            for _, owner, _ in POINTS
        ), module.__name__
    assert len(POINTS) > 40


@pytest.mark.parametrize(("owner", "attr"), [p[1:] for p in POINTS], ids=[p[0] for p in POINTS])
async def test_a_fault_anywhere_in_a_probe_gives_a_result(
    server: Callable[[bytes], ThreadedServer],
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    attr: str,
) -> None:
    srv = server(response("utf-8"))
    async with Prober(user_agent="sentinel-test/1", precise_latency=True) as prober:
        monkeypatch.setattr(owner, attr, raising(getattr(owner, attr)))
        for site in (
            http_site(srv.port, body_contains="all is ok", timeout=1.0),
            tcp_site(srv.port),
        ):
            result = await asyncio.wait_for(prober.probe(site), timeout=10)
            assert isinstance(result, ProbeResult)
            assert result.reason == "ok" or not result.ok, result
            assert "\n" not in result.message
        monkeypatch.undo()  # start and close are not the probe's path


async def test_a_raising_http_probe_is_a_failure_with_reason_error(
    server: Callable[[bytes], ThreadedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = server(response("utf-8"))
    monkeypatch.setattr(
        sentinel.probes.lean.LeanHttpProber,
        "probe",
        raising(sentinel.probes.lean.LeanHttpProber.probe),
    )
    async with Prober() as prober:
        result = await prober.probe(http_site(srv.port))
    assert (result.ok, result.reason) == (False, "error")
    assert result.message == "internal error: InjectedError: injected fault"


def test_the_error_text_survives_an_exception_whose_str_raises() -> None:
    class NastyError(Exception):
        def __str__(self) -> str:
            raise ValueError("no")

    assert internal_error_text(NastyError()).startswith("internal error: NastyError")


# ------------------------------------------------------------------ the daemon records a result

CONFIG = """
[sentinel]
listen = ""
[[sites]]
name = "blog"
url = "http://127.0.0.1:{port}/"
failure_threshold = 2
"""


def blog_daemon() -> Daemon:
    return Daemon("x.toml", parse_config(tomllib.loads(CONFIG.format(port=9))), environ={})


def samples(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(daemon.metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_a_probe_that_raises_still_counts_and_takes_the_site_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = blog_daemon()

    async def boom(site: SiteConfig) -> ProbeResult:
        raise InjectedError("from the prober")

    monkeypatch.setattr(daemon.prober, "probe", boom)
    site = daemon.sites["blog"]
    await daemon._probe_site(site)
    await daemon._probe_site(site)
    m = samples(daemon)
    assert m[("sentinel_probe_failures_total", (("reason", "error"), ("site", "blog")))] == 2
    assert m[("sentinel_site_up", (("site", "blog"),))] == 0
    assert m[("sentinel_internal_errors_total", ())] == 2


async def test_a_result_that_cannot_be_recorded_is_counted_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = blog_daemon()

    def boom(*args: object) -> None:
        raise InjectedError("from the monitor")

    monkeypatch.setattr(sentinel.daemon, "observe", boom)
    site = daemon.sites["blog"]
    for _ in range(3):
        await daemon._probe_site(site)
    assert samples(daemon)[("sentinel_internal_errors_total", ())] == 3
    tracebacks = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert len(tracebacks) == 1  # once an hour per site, not once per probe


# ------------------------------------------------------------------ end to end

E2E_CONFIG = """
[defaults]
interval = "1s"
timeout = "900ms"
failure_threshold = 2

[[sites]]
name = "idna-ok"
url = "http://127.0.0.1:{port}/"
body_contains = "all is ok"

[[sites]]
name = "idna-missing"
url = "http://127.0.0.1:{port}/"
body_contains = "not on the page"
"""


@pytest.mark.slow
def test_a_site_whose_charset_made_the_probe_raise_now_goes_down(
    sentinel_proc: Callable[..., SentinelProcess], server: Callable[[bytes], ThreadedServer]
) -> None:
    srv = server(response("idna"))
    proc = sentinel_proc(E2E_CONFIG.format(port=srv.port)).start()
    wait_until(lambda: proc.metric("sentinel_site_up", site="idna-missing") == 0, timeout=30)
    assert proc.metric("sentinel_site_up", site="idna-ok") == 1
    failures = proc.metric("sentinel_probe_failures_total", site="idna-missing", reason="body")
    assert failures is not None and failures >= 2
    assert "Traceback" not in proc.log()
