"""HTTP probes against real servers on loopback: aiohttp.web apps, and raw asyncio servers for
the misbehaviour aiohttp will not produce (silence, garbage, slow drip, hang-ups)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import socket
import ssl
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from http_reference import HttpProber
from sentinel.config import SiteConfig
from sentinel.probes.common import clean_message, der_not_after, describe_statuses
from sentinel.probes.lean import LeanHttpProber
from sentinel.probes.prober import Prober
from timing import Stopwatch, near

Serve = Callable[..., Awaitable[str]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServe = Callable[[RawHandler], Awaitable[int]]

NOT_AFTER = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def site(target: str, **kwargs: Any) -> SiteConfig:
    kwargs.setdefault("timeout", 5.0)
    return SiteConfig(name="test", kind="http", target=target, **kwargs)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(params=["aiohttp", "lean"])
async def prober(request: pytest.FixtureRequest) -> AsyncIterator[HttpProber | LeanHttpProber]:
    """Each test that takes `prober` runs against both HTTP probers: the lean one (what the
    daemon uses) is held to the same verdicts as the aiohttp one."""
    kind = HttpProber if request.param == "aiohttp" else LeanHttpProber
    async with kind(user_agent="sentinel-test/1") as p:
        yield p


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp.web app on an ephemeral loopback port; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, *, ssl_context: ssl.SSLContext | None = None) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        port = runner.addresses[0][1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServe]:
    """A plain TCP server on loopback running `handler` per connection; returns the port."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(handler: RawHandler) -> int:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            try:
                await handler(reader, writer)
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


def text_app(text: str = "hello sentinel", status: int = 200) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, status=status)

    app = web.Application()
    app.router.add_route("*", "/", handler)
    return app


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=NOT_AFTER).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def free_port() -> Iterator[int]:
    """A loopback port with nothing listening: bound (never listening) while the test runs, so
    no other socket can take it meanwhile (a released port can be reused, even as the source
    port of a probe's own connection, which then connects to itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def assert_clean(message: str) -> None:
    assert 0 < len(message) <= 200
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in message)


# ------------------------------------------------------------------ success and phases


async def test_ok_response_reports_ok_with_sane_phases(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app())
    before = time.time()
    result = await prober.probe(site(url + "/"))
    assert result.ok, result
    assert (result.reason, result.status, result.message) == ("ok", 200, "HTTP 200 OK")
    assert before <= result.started_at <= time.time()
    assert result.dns is None  # an IP literal is not resolved
    assert result.tls is None and result.tls_expiry is None
    phases = [result.connect, result.processing, result.transfer]
    assert all(p is not None and p >= 0 for p in phases), result
    assert sum(p for p in phases if p is not None) <= result.total < 5.0


async def test_hostname_target_reports_dns_time(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app())
    result = await prober.probe(site(url.replace("127.0.0.1", "localhost") + "/"))
    assert result.ok, result
    assert result.dns is not None and 0 <= result.dns <= result.total


async def test_concurrent_probes_keep_their_own_timings(prober: HttpProber, serve: Serve) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/held", held)
    slow_url = await serve(app)
    fast_url = await serve(text_app())
    slow_task = asyncio.create_task(prober.probe(site(slow_url + "/held")))
    await asyncio.wait_for(arrived.wait(), 5)
    fast = await prober.probe(site(fast_url + "/"))
    release.set()
    slow = await slow_task
    assert fast.ok and slow.ok, (fast, slow)
    assert fast.processing is not None and slow.processing is not None
    assert slow.processing >= fast.total > fast.processing


async def test_probe_before_start_returns_error_result() -> None:
    result = await HttpProber().probe(site("http://127.0.0.1:9/"))
    assert (result.ok, result.reason) == (False, "error")


# ------------------------------------------------------------------ status


async def test_http_500_reports_status_with_reason_phrase(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app(status=500))
    result = await prober.probe(site(url + "/"))
    assert (result.ok, result.reason, result.status) == (False, "status", 500)
    assert result.message == "HTTP 500 Internal Server Error (expected 2xx)"


async def test_expect_status_accepts_301_without_following(
    prober: HttpProber, serve: Serve
) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/elsewhere")

    app = web.Application()
    app.router.add_get("/", moved)
    url = await serve(app)
    result = await prober.probe(site(url + "/", expect_status=(200, 301), follow_redirects=False))
    assert (result.ok, result.status) == (True, 301), result

    result = await prober.probe(site(url + "/", follow_redirects=False))
    assert (result.reason, result.status) == ("status", 301)
    assert result.message.endswith("(expected 2xx)")


def test_expected_statuses_are_described_compactly() -> None:
    assert describe_statuses(None) == "2xx"
    assert describe_statuses((200, 204)) == "200, 204"
    assert describe_statuses((*range(200, 300), 301)) == "2xx, 301"


# ------------------------------------------------------------------ redirects


def redirect_app() -> web.Application:
    async def start(request: web.Request) -> web.Response:
        raise web.HTTPFound("/final")

    async def final(request: web.Request) -> web.Response:
        return web.Response(text="arrived")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/start", start)
    app.router.add_get("/final", final)
    app.router.add_get("/loop", loop)
    return app


async def test_redirect_is_followed_to_the_final_page(prober: HttpProber, serve: Serve) -> None:
    url = await serve(redirect_app())
    result = await prober.probe(site(url + "/start", body_contains="arrived"))
    assert (result.ok, result.status) == (True, 200), result
    assert result.connect is not None and result.processing is not None


async def test_redirect_loop_reports_redirects(prober: HttpProber, serve: Serve) -> None:
    url = await serve(redirect_app())
    result = await prober.probe(site(url + "/loop"))
    assert (result.ok, result.reason) == (False, "redirects"), result
    assert "redirect" in result.message


# ------------------------------------------------------------------ body checks and limits


async def test_body_contains_passes_when_text_is_present(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app("Welcome to the social dance"))
    result = await prober.probe(site(url + "/", body_contains="social dance"))
    assert result.ok, result


async def test_body_contains_fails_when_text_is_missing(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app("Maintenance\r\nback soon"))
    result = await prober.probe(site(url + "/", body_contains="Welcome\nhome"))
    assert (result.ok, result.reason, result.status) == (False, "body", 200)
    assert "Welcome" in result.message
    assert_clean(result.message)


async def test_body_regex_matches_and_mismatches(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app("build 1234 ok"))
    assert (await prober.probe(site(url + "/", body_regex=r"build \d+ ok"))).ok
    result = await prober.probe(site(url + "/", body_regex=r"^build \d+ failed$"))
    assert (result.ok, result.reason) == (False, "body")


async def test_body_is_decoded_with_the_declared_charset(prober: HttpProber, serve: Serve) -> None:
    async def latin1(request: web.Request) -> web.Response:
        body = "Café".encode("latin-1")
        return web.Response(body=body, content_type="text/plain", charset="latin-1")

    app = web.Application()
    app.router.add_get("/", latin1)
    url = await serve(app)
    assert (await prober.probe(site(url + "/", body_contains="Café"))).ok


async def test_body_larger_than_limit_with_body_check_reports_body_too_large(
    prober: HttpProber, serve: Serve
) -> None:
    url = await serve(text_app("x" * 5000 + "needle"))
    result = await prober.probe(site(url + "/", body_contains="needle", max_body_bytes=1000))
    assert (result.ok, result.reason, result.status) == (False, "body_too_large", 200)


async def test_body_check_passes_within_the_limit(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app("needle" + "x" * 5000))
    result = await prober.probe(site(url + "/", body_contains="needle", max_body_bytes=5006))
    assert result.ok, result


async def test_body_larger_than_limit_without_body_check_is_ok(
    prober: HttpProber, serve: Serve
) -> None:
    url = await serve(text_app("x" * 200_000))
    result = await prober.probe(site(url + "/", max_body_bytes=1000))
    assert result.ok, result
    assert result.transfer is not None


async def test_endless_body_without_body_check_stops_at_the_limit(
    prober: HttpProber, raw_server: RawServe
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        while True:  # until the prober hangs up
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    port = await raw_server(endless)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/", max_body_bytes=100_000))
    assert result.ok, result


async def test_gzip_body_is_limited_after_decompression(prober: HttpProber, serve: Serve) -> None:
    decoded = b"a" * 100_000 + b"needle"
    compressed = gzip.compress(decoded, mtime=0)
    assert len(compressed) < 1000

    async def gzipped(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        return web.Response(body=compressed, headers=headers)

    app = web.Application()
    app.router.add_get("/", gzipped)
    url = await serve(app)
    small = await prober.probe(site(url + "/", body_contains="needle", max_body_bytes=50_000))
    assert small.reason == "body_too_large", small
    large = await prober.probe(site(url + "/", body_contains="needle", max_body_bytes=200_000))
    assert large.ok, large


# ------------------------------------------------------------------ slow, timeout


async def test_response_slower_than_max_response_time_reports_slow(
    prober: HttpProber, serve: Serve
) -> None:
    url = await serve(text_app())
    result = await prober.probe(site(url + "/", max_response_time=1e-9))
    assert (result.ok, result.reason, result.status) == (False, "slow", 200)
    assert "limit" in result.message


async def test_server_that_never_answers_times_out_within_the_deadline(
    prober: HttpProber, raw_server: RawServe
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the prober gives up and closes

    port = await raw_server(silent)
    start = time.perf_counter()
    result = await prober.probe(site(f"http://127.0.0.1:{port}/", timeout=0.3))
    elapsed = time.perf_counter() - start
    assert (result.ok, result.reason) == (False, "timeout"), result
    assert near(elapsed, 0.3), elapsed  # uvloop's timers may fire ~1 ms early (timing.py)
    assert result.message == "no response within 0.3s"


async def test_slow_drip_body_is_cut_at_the_deadline(
    prober: HttpProber, raw_server: RawServe
) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes")
        await reader.read()  # the rest never comes

    port = await raw_server(drip)
    watch = Stopwatch()
    # (1.5 s: a loaded machine can hold the head back past a shorter deadline)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/", timeout=1.5))
    assert watch.elapsed() < 1.5 + 0.5
    assert (result.reason, result.status) == ("timeout", 200), result
    assert result.message == "body not complete within 1.5s"


# ------------------------------------------------------------------ connection failures


async def test_refused_port_reports_connect_refused(prober: HttpProber, free_port: int) -> None:
    result = await prober.probe(site(f"http://127.0.0.1:{free_port}/"))
    assert (result.ok, result.reason, result.status) == (False, "connect_refused", 0)
    assert result.message == f"connection refused by 127.0.0.1:{free_port}"


async def test_unresolvable_name_reports_dns(prober: HttpProber) -> None:
    result = await prober.probe(site("http://nonexistent.invalid/"))
    assert (result.ok, result.reason) == (False, "dns"), result
    assert "nonexistent.invalid" in result.message


async def test_server_closing_without_response_reports_connect_reset(
    prober: HttpProber, raw_server: RawServe
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    port = await raw_server(hang_up)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/"))
    assert (result.ok, result.reason) == (False, "connect_reset"), result


async def test_malformed_response_reports_protocol(
    prober: HttpProber, raw_server: RawServe
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    port = await raw_server(garbage)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/"))
    assert (result.ok, result.reason) == (False, "protocol"), result
    assert_clean(result.message)


async def test_truncated_body_reports_protocol(prober: HttpProber, raw_server: RawServe) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
        await writer.drain()

    port = await raw_server(truncated)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/"))
    assert (result.ok, result.reason, result.status) == (False, "protocol", 200), result
    assert_clean(result.message)


async def test_hostile_reason_phrase_is_sanitised_and_capped(
    prober: HttpProber, raw_server: RawServe
) -> None:
    reason = "Oops\x1b[31m\u202e\u2028" + "y" * 1000

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 503 {reason}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        await reader.read()

    port = await raw_server(hostile)
    result = await prober.probe(site(f"http://127.0.0.1:{port}/"))
    assert (result.ok, result.reason, result.status) == (False, "status", 503), result
    assert_clean(result.message)
    assert result.message.startswith("HTTP 503 Oops")
    assert result.message.endswith("(expected 2xx)")


def test_clean_message_makes_one_short_safe_line() -> None:
    assert clean_message("a\r\nb\tc\x00d\u2028e\u202ef") == "a b c d e f"
    capped = clean_message("z" * 500)
    assert len(capped) == 200 and capped.endswith("…")


# ------------------------------------------------------------------ request shape


async def test_method_headers_and_user_agent_arrive_at_the_server(
    prober: HttpProber, serve: Serve
) -> None:
    seen: dict[str, str] = {}

    async def record(request: web.Request) -> web.Response:
        seen["method"] = request.method
        seen["x-token"] = request.headers.get("X-Token", "")
        seen["user-agent"] = request.headers.get("User-Agent", "")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/hook", record)
    url = await serve(app)
    result = await prober.probe(site(url + "/hook", method="POST", headers=(("X-Token", "s3"),)))
    assert result.ok, result
    assert seen == {"method": "POST", "x-token": "s3", "user-agent": "sentinel-test/1"}

    await prober.probe(site(url + "/hook", headers=(("User-Agent", "custom/2"),)))
    assert (seen["method"], seen["user-agent"]) == ("GET", "custom/2")


async def test_head_request_succeeds_without_a_body(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app())
    result = await prober.probe(site(url + "/", method="HEAD"))
    assert (result.ok, result.status) == (True, 200), result


# ------------------------------------------------------------------ TLS


async def test_untrusted_certificate_reports_tls(
    prober: HttpProber, serve: Serve, server_tls: ssl.SSLContext
) -> None:
    url = await serve(text_app(), ssl_context=server_tls)
    result = await prober.probe(site(url + "/"))
    assert (result.ok, result.reason, result.status) == (False, "tls", 0), result
    assert "certificate" in result.message
    assert_clean(result.message)


async def test_tls_verify_false_accepts_untrusted_certificate_and_reads_expiry(
    prober: HttpProber, serve: Serve, server_tls: ssl.SSLContext
) -> None:
    url = await serve(text_app(), ssl_context=server_tls)
    result = await prober.probe(site(url + "/", tls_verify=False))
    assert (result.ok, result.status) == (True, 200), result
    assert result.tls_expiry == NOT_AFTER.timestamp()


async def test_trusted_certificate_is_ok_and_reports_expiry(
    serve: Serve, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    url = await serve(text_app(), ssl_context=server_tls)
    async with HttpProber(ssl_context=trusting) as prober:
        result = await prober.probe(site(url + "/"))
    assert (result.ok, result.status) == (True, 200), result
    assert result.tls_expiry == NOT_AFTER.timestamp()
    assert result.connect is not None and result.tls is None  # the handshake is in connect


async def test_expired_certificate_reports_tls(
    serve: Serve, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ca.issue_cert(
        "127.0.0.1", not_before=expired - dt.timedelta(days=30), not_after=expired
    ).configure_cert(server_ctx)
    url = await serve(text_app(), ssl_context=server_ctx)
    async with HttpProber(ssl_context=trusting) as prober:
        result = await prober.probe(site(url + "/"))
    assert (result.ok, result.reason) == (False, "tls"), result
    assert "expired" in result.message


async def test_certificate_for_another_host_reports_tls(
    serve: Serve, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(server_ctx)
    url = await serve(text_app(), ssl_context=server_ctx)
    async with HttpProber(ssl_context=trusting) as prober:
        result = await prober.probe(site(url + "/"))
    assert (result.ok, result.reason) == (False, "tls"), result


async def test_plain_http_server_on_https_url_reports_tls(prober: HttpProber, serve: Serve) -> None:
    url = await serve(text_app())
    result = await prober.probe(site(url.replace("http://", "https://") + "/"))
    assert (result.ok, result.reason) == (False, "tls"), result


def test_der_not_after_reads_utctime_and_generalizedtime(ca: trustme.CA) -> None:
    for when in (NOT_AFTER, dt.datetime(2051, 6, 7, 8, 9, 10, tzinfo=dt.UTC)):
        pem = ca.issue_cert("a.example", not_after=when).cert_chain_pems[0].bytes()
        der = ssl.PEM_cert_to_DER_cert(pem.decode())
        assert der_not_after(der) == when.timestamp()
    assert der_not_after(b"\x30\x03junk") is None


# ------------------------------------------------------------------ Prober


async def test_prober_dispatches_http_and_tcp_sites(serve: Serve, free_port: int) -> None:
    url = await serve(text_app())
    port = int(url.rsplit(":", 1)[1])
    async with Prober(user_agent="sentinel-test/1") as prober:
        http = await prober.probe(site(url + "/"))
        tcp_ok = await prober.probe(SiteConfig(name="t", kind="tcp", target=f"127.0.0.1:{port}"))
        tcp_refused = await prober.probe(
            SiteConfig(name="t", kind="tcp", target=f"127.0.0.1:{free_port}")
        )
    assert (http.ok, http.status) == (True, 200)
    assert (tcp_ok.ok, tcp_ok.status) == (True, 0)
    assert tcp_refused.reason == "connect_refused"
