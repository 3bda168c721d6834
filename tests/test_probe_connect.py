"""The connection side of the probes (sentinel.probes.connect, sentinel.hostnames,
sentinel.tlsfiles): pure parts exhaustively, the rest against real loopback servers.

Covered: staggered connection attempts (a black-holed first address, made by a listening socket
whose accept queue is full, does not eat the timeout), the resolver pool (queueing not charged
to `dns`), IDNA 2008 hosts (on the wire, in SNI, in `Host:`), ca_file added to the system store,
client certificates, the TLS 1.3 "certificate required" alert, connect_to, and the earliest
expiry among all the certificates a server sent (an intermediate), with its subject.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import SiteConfig
from sentinel.hostnames import ascii_host, parse_connect_to
from sentinel.probes.connect import (
    MAX_ADDRESSES,
    ConnectError,
    PhaseTimes,
    Resolver,
    TlsContexts,
    connect_staggered,
    dial_target,
    interleave,
    wire_host,
)
from sentinel.probes.prober import Prober
from sentinel.probes.tcp import probe_tcp

V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


# ------------------------------------------------------------------ pure: host names


def test_a_non_ascii_host_is_idna_2008_not_2003() -> None:
    assert ascii_host("faß.de") == "xn--fa-hia.de"  # IDNA 2003 (Python's codec): fass.de
    assert ascii_host("Bücher.example") == "xn--bcher-kva.example"  # UTS #46 maps case
    assert ascii_host("www.example.org") == "www.example.org"
    assert ascii_host("my_host.lan") == "my_host.lan"  # ASCII is left alone: resolvers take it


@pytest.mark.parametrize("host", ["a\u200d.example", "☃\u0301.--x.de", "xn--ü.de", "ä..de"])
def test_a_host_that_is_not_valid_idna_is_a_one_line_error(host: str) -> None:
    with pytest.raises(ValueError) as info:
        ascii_host(host)
    assert "not valid IDNA 2008" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.10", ("192.0.2.10", None)),
        ("192.0.2.10:8443", ("192.0.2.10", 8443)),
        ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
        ("[::1]", ("::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("backend.internal:80", ("backend.internal", 80)),
        ("bücher.example", ("xn--bcher-kva.example", None)),
    ],
)
def test_connect_to_values(value: str, expected: tuple[str, int | None]) -> None:
    assert parse_connect_to(value) == expected


@pytest.mark.parametrize(
    "value", ["", ":80", "host:0", "host:99999", "host:x", "[::1", "[::1]x", "a b", "h/p"]
)
def test_bad_connect_to_values_are_one_line_errors(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_connect_to(value)
    assert "connect_to" in str(info.value) and "\n" not in str(info.value)


@given(st.text(max_size=40))
def test_parse_connect_to_raises_only_value_error(value: str) -> None:
    try:
        host, port = parse_connect_to(value)
    except ValueError:
        return
    assert host.isascii() and host
    assert port is None or 1 <= port <= 65535


@pytest.mark.parametrize(
    ("connect_to", "host", "port", "expected"),
    [
        (None, "shop.example", 443, ("shop.example", 443)),
        ("192.0.2.1", "shop.example", 443, ("192.0.2.1", 443)),
        ("192.0.2.1", "shop.example", 80, ("192.0.2.1", 80)),  # any port of the URL's host
        ("192.0.2.1:8443", "shop.example", 443, ("192.0.2.1", 8443)),
        ("192.0.2.1:8443", "shop.example", 80, ("shop.example", 80)),  # not the URL's port
        ("192.0.2.1", "cdn.example", 443, ("cdn.example", 443)),  # a redirect elsewhere
        ("192.0.2.1", "xn--fa-hia.example", 443, ("xn--fa-hia.example", 443)),
    ],
)
def test_connect_to_applies_to_the_sites_own_host(
    connect_to: str | None, host: str, port: int, expected: tuple[str, int]
) -> None:
    assert dial_target(connect_to, "https://shop.example/", host, port) == expected
    assert dial_target("192.0.2.1", "https://faß.example/", "xn--fa-hia.example", 443) == (
        "192.0.2.1",
        443,
    )


# ------------------------------------------------------------------ pure: address order

addresses = st.lists(
    st.tuples(st.sampled_from([V4, V6]), st.sampled_from([f"10.0.0.{i}" for i in range(40)])),
    max_size=40,
)


@given(addresses)
def test_interleave_alternates_families_keeping_resolver_order(
    given_: list[tuple[int, str]],
) -> None:
    out = interleave(given_)
    unique = list(dict.fromkeys(given_))
    assert len(out) == min(len(unique), MAX_ADDRESSES)
    assert set(out) <= set(unique)
    if not out:
        return
    assert out[0] == unique[0]  # the resolver's first choice goes first (RFC 8305 4)
    for family in (V4, V6):  # each family keeps its own order
        mine = [a for a in out if a[0] == family]
        assert mine == [a for a in unique if a[0] == family][: len(mine)]
    # Families alternate while both have addresses left.
    both = min(sum(a[0] == V4 for a in unique), sum(a[0] == V6 for a in unique))
    head = out[: 2 * both]
    assert all(head[i][0] != head[i + 1][0] for i in range(len(head) - 1))


# ------------------------------------------------------------------ pure: the context cache


def test_contexts_are_cached_per_key_bounded_and_expire() -> None:
    built: list[tuple[Any, ...]] = []

    def build(key: tuple[bool, str | None, str | None, str | None]) -> ssl.SSLContext:
        built.append(key)
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    contexts = TlsContexts(size=3, ttl=100.0, build=build)
    first = contexts.get(verify=True, ca_file="/a.pem", now=0.0)
    assert contexts.get(verify=True, ca_file="/a.pem", now=50.0) is first
    assert len(built) == 1
    assert contexts.get(verify=False, ca_file="/a.pem", now=50.0) is not first  # verify is part
    for name in ("/b.pem", "/c.pem", "/d.pem"):
        contexts.get(verify=True, ca_file=name, now=60.0)
    assert len(contexts) == 3  # bounded: the least recently used went
    assert contexts.get(verify=True, ca_file="/d.pem", now=159.0) is not None
    count = len(built)
    contexts.get(verify=True, ca_file="/d.pem", now=161.0)  # expired: built again
    assert len(built) == count + 1
    # The plain ones (no files) are not in the cache and are built once.
    plain = contexts.get(verify=True, now=0.0)
    assert contexts.get(verify=True, now=1e9) is plain and len(contexts) == 3


async def test_the_trust_store_is_loaded_by_the_first_https_probe_not_at_start() -> None:
    # ~2.5 MiB a daemon of plain-HTTP sites never needs; loaded before the probe's clock starts.
    from sentinel.probes.lean import LeanHttpProber

    prober = LeanHttpProber()
    await prober.start()
    try:
        contexts = prober._contexts
        assert contexts is not None and contexts._plain == {}
        site = SiteConfig(name="s", kind="http", target="https://127.0.0.1:1/", timeout=5)
        result = await prober.probe(site)  # refused: nothing listens on port 1
        assert not result.ok
        verifying = contexts._plain[True]
        assert verifying.verify_mode == ssl.CERT_REQUIRED and verifying.check_hostname
        contexts.warm(False)
        plain = contexts._plain[False]
        assert plain.verify_mode == ssl.CERT_NONE and not plain.check_hostname
        contexts.warm(True)
        assert contexts._plain[True] is verifying  # built once
    finally:
        await prober.close()


def test_a_context_whose_file_went_away_is_a_tls_verdict(tmp_path: Path) -> None:
    with pytest.raises(ConnectError) as info:
        TlsContexts().get(verify=True, ca_file=str(tmp_path / "gone.pem"), now=0.0)
    assert info.value.reason == "tls"
    assert "ca_file" in info.value.message and "no such file" in info.value.message


def test_ca_file_is_added_to_the_system_store_not_instead(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    context = TlsContexts().get(verify=True, ca_file=str(pem), now=0.0)
    assert context.cert_store_stats()["x509_ca"] == system + 1


# ------------------------------------------------------------------ staggered attempts


def same_port(*where: tuple[int, str]) -> list[socket.socket]:
    """Sockets bound to one port on each (family, host): a port free on the first address may
    be taken on another (other tests, other programs), so try a few."""
    for _ in range(50):
        socks: list[socket.socket] = []
        try:
            port = 0
            for family, host in where:
                sock = socket.socket(family)
                socks.append(sock)
                sock.bind((host, port))
                port = sock.getsockname()[1]
        except OSError:
            for sock in socks:
                sock.close()
            continue
        return socks
    raise RuntimeError(f"no port free on all of {where}")


class Blackhole:
    """A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    connection attempt to it hangs (a black-holed address, on loopback)."""

    def __init__(self, server: socket.socket) -> None:
        self.server = server
        self.server.listen(0)  # room for one connection that is never accepted
        host, self.port = server.getsockname()[:2]
        self.fillers = [socket.create_connection((host, self.port), timeout=5.0)]
        for _ in range(2):  # half-open attempts, in case the first is not queued yet
            extra = socket.socket(server.family)
            extra.setblocking(False)
            extra.connect_ex((host, self.port))
            self.fillers.append(extra)

    def close(self) -> None:
        for sock in (*self.fillers, self.server):
            sock.close()


@pytest.fixture
def blackhole_then_listener() -> Iterator[Callable[..., tuple[Blackhole, socket.socket]]]:
    """(a black hole on the first address, a listener on the second), on one port."""
    made: list[socket.socket | Blackhole] = []

    def make(first: tuple[int, str], second: tuple[int, str]) -> tuple[Blackhole, socket.socket]:
        hole_sock, good = same_port(first, second)
        made.append(good)
        hole = Blackhole(hole_sock)
        made.append(hole)
        good.listen(16)
        return hole, good

    yield make
    for item in made:
        item.close()


class Counting(asyncio.Protocol):
    made = 0

    def __init__(self) -> None:
        Counting.made += 1


@needs_ipv6
async def test_a_black_holed_ipv6_address_does_not_eat_the_timeout(
    blackhole_then_listener: Callable[..., tuple[Blackhole, socket.socket]],
) -> None:
    hole, _ = blackhole_then_listener((V6, "::1"), (V4, "127.0.0.1"))
    async with asyncio.timeout(20):  # one-by-one, the SYN retransmits would take minutes
        transport, _ = await connect_staggered(
            asyncio.Protocol, [(V6, "::1"), (V4, "127.0.0.1")], hole.port, where="x"
        )
    assert transport.get_extra_info("peername")[0] == "127.0.0.1"
    transport.abort()


async def test_a_black_holed_first_address_does_not_eat_the_timeout_ipv4(
    blackhole_then_listener: Callable[..., tuple[Blackhole, socket.socket]],
) -> None:
    hole, _ = blackhole_then_listener((V4, "127.0.0.2"), (V4, "127.0.0.3"))
    Counting.made = 0
    async with asyncio.timeout(20):
        transport, _ = await connect_staggered(
            Counting, [(V4, "127.0.0.2"), (V4, "127.0.0.3")], hole.port, where="x"
        )
    assert transport.get_extra_info("peername")[0] == "127.0.0.3"
    assert Counting.made == 1  # the factory is the winner's only
    transport.abort()


async def test_when_several_attempts_connect_one_wins() -> None:
    Counting.made = 0
    first, second = same_port((V4, "127.0.0.1"), (V4, "127.0.0.2"))
    with first, second:
        first.listen(16)
        second.listen(16)
        port = first.getsockname()[1]
        for _ in range(5):
            transport, _ = await connect_staggered(
                Counting, [(V4, "127.0.0.1"), (V4, "127.0.0.2")], port, where="x", delay=0.0
            )
            transport.abort()
    assert Counting.made == 5


async def test_refused_everywhere_is_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused on 127.0.0.1
        with pytest.raises(ConnectError) as info:
            await connect_staggered(
                asyncio.Protocol,
                [(V4, "127.0.0.1"), (V4, "127.0.0.1")],  # duplicates are tried once
                port,
                where="name:1",
            )
    assert (info.value.reason, info.value.message) == (
        "connect_refused",
        "connection refused by name:1",
    )


async def test_a_refused_first_address_moves_on_at_once() -> None:
    refusing, good = same_port((V4, "127.0.0.1"), (V4, "127.0.0.2"))  # bound, not listening
    with refusing, good:
        good.listen(16)
        port = good.getsockname()[1]
        async with asyncio.timeout(20):
            # With a delay longer than the deadline, only "moves on when refused" can pass.
            transport, _ = await connect_staggered(
                asyncio.Protocol, [(V4, "127.0.0.1"), (V4, "127.0.0.2")], port, where="x", delay=60
            )
        assert transport.get_extra_info("peername")[0] == "127.0.0.2"
        transport.abort()


# ------------------------------------------------------------------ the resolver pool


async def test_waiting_for_a_resolver_thread_is_not_charged_to_dns() -> None:
    resolver = Resolver(threads=1, native=0)  # (uvloop's own path is tested below)
    release = threading.Event()
    blocker = resolver._executor().submit(release.wait, 30)  # the one thread is busy
    phases = PhaseTimes()
    lookup = asyncio.ensure_future(resolver.resolve("localhost", 80, phases))
    try:
        queued = 1.0
        started = time.perf_counter()
        await asyncio.sleep(queued)  # the lookup waits this long for a thread
        release.set()
        async with asyncio.timeout(20):
            found = await lookup
        waited = time.perf_counter() - started
    finally:
        release.set()
        blocker.result(timeout=10)
        resolver.close()
    assert found and all(address for _, address in found)
    assert waited >= queued
    assert phases.dns is not None and phases.dns < queued  # only the lookup's own time


def test_the_resolver_pool_is_sized_to_max_concurrency_with_a_cap() -> None:
    assert Resolver(200).threads == 200
    assert Resolver(100_000).threads == 256
    assert Prober(resolver_threads=50)._resolver.threads == 50


async def test_the_resolver_pool_follows_max_concurrency_on_reload() -> None:
    # A reload that raises max_concurrency must not leave lookups queueing for the old size.
    prober = Prober(resolver_threads=2)
    resolver = prober._resolver
    old_pool = resolver._executor()
    in_flight = old_pool.submit(time.sleep, 0.2)  # queued work on the retired pool still runs
    prober.set_max_concurrency(40)
    assert resolver.threads == 40 and resolver._pool is None
    try:
        assert resolver._executor()._max_workers == 40
        async with asyncio.timeout(20):
            assert await resolver.resolve("localhost", 80, PhaseTimes())
        prober.set_max_concurrency(100_000)
        assert resolver.threads == 256
        pool = resolver._executor()
        prober.set_max_concurrency(256)  # the same size: the pool is kept
        assert resolver._pool is pool
    finally:
        resolver.close()
    in_flight.result(timeout=10)


async def test_lookups_beyond_libuvs_threads_go_to_the_own_pool() -> None:
    # Under uvloop the first `native` lookups in flight take its C path; the rest the pool.
    resolver = Resolver(threads=4, native=2)
    phases = [PhaseTimes() for _ in range(8)]
    try:
        async with asyncio.timeout(30):
            found = await asyncio.gather(*(resolver.resolve("localhost", 80, p) for p in phases))
    finally:
        resolver.close()
    assert all(found) and all(p.dns is not None for p in phases)
    assert resolver._native_in_flight == 0


def test_a_name_with_a_control_character_is_never_looked_up() -> None:
    # glibc would resolve "localhost\0.evil.example" as localhost.
    for name in ("localhost\x00.evil.example", "a b", "tab\there"):
        with pytest.raises(ConnectError) as info:
            wire_host(name)
        assert info.value.reason == "dns" and "invalid host name" in info.value.message


async def test_an_ip_literal_is_not_looked_up() -> None:
    phases = PhaseTimes()
    assert await Resolver(1).resolve("::1", 80, phases) == [(V6, "::1")]
    assert phases.dns is None


# ------------------------------------------------------------------ TLS servers on loopback


class Server:
    """An asyncio HTTPS/HTTP server on loopback answering every request with 200 "hello";
    `heads` holds each request head received, `peer_certs` each client certificate seen."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.peer_certs: list[Any] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, context: ssl.SSLContext | None, host: str = "127.0.0.1") -> Server:
        self.server = await asyncio.start_server(self._serve, host, 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.peer_certs.append(ssl_object.getpeercert())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    started: list[Server] = []

    async def start(context: ssl.SSLContext | None, host: str = "127.0.0.1") -> Server:
        server = await Server().start(context, host)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str, **options: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, **options).configure_cert(context)
    return context


def http_site(url: str, **kwargs: Any) -> SiteConfig:
    kwargs.setdefault("timeout", 10.0)
    return SiteConfig(name="t", kind="http", target=url, **kwargs)


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(user_agent="sentinel-test/1") as p:  # the system trust store only
        yield p


async def test_ca_file_trusts_a_private_ca(
    prober: Prober, servers: Callable[..., Awaitable[Server]], ca: trustme.CA, ca_file: str
) -> None:
    server = await servers(server_context(ca, "127.0.0.1"))
    url = f"https://127.0.0.1:{server.port}/"
    untrusted = await prober.probe(http_site(url))
    assert (untrusted.ok, untrusted.reason) == (False, "tls"), untrusted
    assert "certificate not accepted" in untrusted.message
    trusted = await prober.probe(http_site(url, ca_file=ca_file))
    assert (trusted.ok, trusted.reason, trusted.status) == (True, "ok", 200), trusted


async def test_connect_to_keeps_the_urls_host_for_sni_and_host(
    prober: Prober, servers: Callable[..., Awaitable[Server]], ca: trustme.CA, ca_file: str
) -> None:
    server = await servers(server_context(ca, "shop.example"))
    result = await prober.probe(
        http_site(
            f"https://shop.example:{server.port}/",
            ca_file=ca_file,
            connect_to="127.0.0.1",  # the URL's port
        )
    )
    assert (result.ok, result.status, result.dns) == (True, 200, None), result
    assert f"\r\nHost: shop.example:{server.port}\r\n".encode() in server.heads[-1]
    # With a port: the URL's default port 443 is not where the server is.
    result = await prober.probe(
        http_site("https://shop.example/", ca_file=ca_file, connect_to=f"127.0.0.1:{server.port}")
    )
    assert result.ok, result
    assert b"\r\nHost: shop.example\r\n" in server.heads[-1]


async def test_connect_to_names_both_places_when_it_fails(prober: Prober) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = await prober.probe(
            http_site("http://shop.example/", connect_to=f"127.0.0.1:{port}")
        )
    assert (result.ok, result.reason) == (False, "connect_refused"), result
    assert result.message == f"connection refused by shop.example:80 (connect_to 127.0.0.1:{port})"


async def test_a_non_ascii_host_goes_out_as_idna_2008_in_sni_and_host(
    prober: Prober, servers: Callable[..., Awaitable[Server]], ca: trustme.CA, ca_file: str
) -> None:
    # The certificate is for the IDNA 2008 name only: IDNA 2003 (fass.example) would fail it.
    server = await servers(server_context(ca, "xn--fa-hia.example"))
    result = await prober.probe(
        http_site(f"https://faß.example:{server.port}/", ca_file=ca_file, connect_to="127.0.0.1")
    )
    assert (result.ok, result.status) == (True, 200), result
    assert f"\r\nHost: xn--fa-hia.example:{server.port}\r\n".encode() in server.heads[-1]


async def test_a_redirect_to_a_host_that_is_not_idna_is_a_verdict(
    prober: Prober, servers: Callable[..., Awaitable[Server]]
) -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        location = "http://a\u200d.example/".encode()
        writer.write(
            b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await prober.probe(http_site(f"http://127.0.0.1:{port}/"))
    finally:
        server.close()
    assert (result.ok, result.reason) == (False, "dns"), result
    assert "not valid IDNA 2008" in result.message


async def test_a_tcp_target_that_is_not_idna_is_a_failure_not_a_lookup() -> None:
    result = await probe_tcp(SiteConfig(name="t", kind="tcp", target="a\u200d.example:25"))
    assert (result.ok, result.reason) == (False, "dns"), result
    assert "not valid IDNA 2008" in result.message and result.dns is None


# ------------------------------------------------------------------ client certificates


def client_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    leaf = ca.issue_cert("probe@sentinel.example", common_name="sentinel probe")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def requiring_client_cert(ca: trustme.CA, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = server_context(ca, "127.0.0.1")
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    context.minimum_version = context.maximum_version = version
    return context


class BlockingTlsServer:
    """A loopback HTTPS server in a thread on blocking sockets, as OpenSSL servers behave: a
    refused handshake sends its alert, then the server closes without a reset (it reads what
    the client sent first, like nginx's lingering close). `peer_certs`: client certificates."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.peer_certs: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)  # to see `_stop`: a close() does not wake accept()
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(10.0)
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.peer_certs.append(tls.getpeercert())
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            except (OSError, ssl.SSLError):
                self._linger(tls)  # the alert is sent: read what the client sent, then close
            finally:
                tls.close()

    @staticmethod
    def _linger(raw: socket.socket) -> None:
        try:
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def tls_servers() -> Iterator[Callable[[ssl.SSLContext], BlockingTlsServer]]:
    started: list[BlockingTlsServer] = []

    def start(context: ssl.SSLContext) -> BlockingTlsServer:
        server = BlockingTlsServer(context)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


async def test_tls13_certificate_required_alert_is_a_tls_failure_and_a_client_cert_passes(
    prober: Prober,
    tls_servers: Callable[[ssl.SSLContext], BlockingTlsServer],
    ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
) -> None:
    server = tls_servers(requiring_client_cert(ca, ssl.TLSVersion.TLSv1_3))
    url = f"https://127.0.0.1:{server.port}/"
    # TLS 1.3: the client's handshake is done before the server has seen (no) certificate; the
    # server's refusal comes as an alert after it, on the first read. Not a "reset".
    refused = await prober.probe(http_site(url, ca_file=ca_file))
    assert (refused.ok, refused.reason) == (False, "tls"), refused
    assert "requires a client certificate" in refused.message, refused
    cert, key = client_files(ca, tmp_path)
    accepted = await prober.probe(http_site(url, ca_file=ca_file, client_cert=cert, client_key=key))
    assert (accepted.ok, accepted.status) == (True, 200), accepted
    assert (("commonName", "sentinel probe"),) in server.peer_certs[-1]["subject"]


async def test_tls12_client_certificate_refusal_is_a_tls_failure(
    prober: Prober,
    tls_servers: Callable[[ssl.SSLContext], BlockingTlsServer],
    ca: trustme.CA,
    ca_file: str,
) -> None:
    server = tls_servers(requiring_client_cert(ca, ssl.TLSVersion.TLSv1_2))
    result = await prober.probe(http_site(f"https://127.0.0.1:{server.port}/", ca_file=ca_file))
    assert (result.ok, result.reason) == (False, "tls"), result
    assert "TLS handshake with 127.0.0.1" in result.message


# ------------------------------------------------------------------ the served chain's expiry


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_after: dt.datetime,
    *,
    ca: bool,
    san: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Key identifiers: Python 3.13's default context verifies strictly (RFC 5280).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    if san is not None:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def chain_with_a_soon_expiring_intermediate(tmp_path: Path) -> tuple[ssl.SSLContext, str, float]:
    """A root, an intermediate expiring in 3 days, a leaf for 127.0.0.1 valid for 60: the
    server's context (sending leaf + intermediate), the root as a ca_file, and the
    intermediate's notAfter."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(
        "Test Root", root_key, "Test Root", root_key, now + dt.timedelta(days=3650), ca=True
    )
    soon = now + dt.timedelta(days=3)
    inter = _cert("Test Intermediate", inter_key, "Test Root", root_key, soon, ca=True)
    leaf = _cert(
        "127.0.0.1",
        leaf_key,
        "Test Intermediate",
        inter_key,
        now + dt.timedelta(days=60),
        ca=False,
        san="127.0.0.1",
    )
    pem = serialization.Encoding.PEM
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    key = tmp_path / "leaf.key"
    key.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(root.public_bytes(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    return context, str(root_file), soon.timestamp()


async def test_the_earliest_expiry_in_the_served_chain_is_reported_with_its_subject(
    prober: Prober, servers: Callable[..., Awaitable[Server]], tmp_path: Path
) -> None:
    context, root_file, soon = chain_with_a_soon_expiring_intermediate(tmp_path)
    server = await servers(context)
    url = f"https://127.0.0.1:{server.port}/"
    for site in (http_site(url, ca_file=root_file), http_site(url, tls_verify=False)):
        result = await prober.probe(site)
        assert result.ok, result
        assert result.tls_expiry == soon  # the intermediate's, not the leaf's (60 days)
        assert result.tls_expiry_subject == "CN=Test Intermediate"


# ------------------------------------------------------------------ config


def test_config_keys_resolve_from_defaults_and_sites(tmp_path: Path, ca: trustme.CA) -> None:
    import tomllib

    from sentinel.config import parse_config

    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert, key = client_files(ca, tmp_path)
    text = f"""
[defaults]
ca_file = "{ca_path}"
[[sites]]
name = "a"
url = "https://faß.example/"
client_cert = "{cert}"
client_key = "{key}"
connect_to = "[::1]:8443"
[[sites]]
name = "b"
tcp = "bücher.example:25"
"""
    config = parse_config(tomllib.loads(text))
    a, b = config.sites
    assert (a.ca_file, a.client_cert, a.client_key, a.connect_to) == (
        str(ca_path),
        cert,
        key,
        "[::1]:8443",
    )
    assert b.ca_file == str(ca_path) and b.connect_to is None


def config_errors(text: str) -> list[str]:
    import tomllib

    from sentinel.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text))
    assert all("\n" not in line for line in info.value.errors)
    return info.value.errors


def test_config_errors_are_one_line_and_name_the_place(tmp_path: Path, ca: trustme.CA) -> None:
    cert, key = client_files(ca, tmp_path)
    other_key = tmp_path / "other.key"
    trustme.CA().issue_cert("x.example").private_key_pem.write_to_path(str(other_key))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    loaded = load_pem_private_key(Path(key).read_bytes(), password=None)
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    site = '[[sites]]\nname = "blog"\nurl = "https://blog.example/"\n'
    cases = {
        f'{site}ca_file = "{tmp_path}/missing.pem"\n': 'sites[0] "blog": ca_file: cannot load',
        f'{site}ca_file = "{garbage}"\n': 'sites[0] "blog": ca_file: cannot load',
        f'{site}ca_file = "relative.pem"\n': "must be an absolute path",
        f'[defaults]\nca_file = "{garbage}"\n': "defaults: ca_file: cannot load",
        f'{site}client_cert = "{cert}"\n': 'sites[0] "blog": client_cert: needs client_key too',
        f'{site}client_key = "{key}"\n': 'sites[0] "blog": client_key: needs client_cert too',
        f'{site}client_cert = "{cert}"\nclient_key = "{other_key}"\n': (
            'sites[0] "blog": client_cert: cannot load'
        ),
        f'{site}client_cert = "{cert}"\nclient_key = "{encrypted}"\n': "is encrypted",
        f'{site}connect_to = "host:0"\n': 'sites[0] "blog": connect_to: invalid port',
        '[[sites]]\nname = "blog"\nurl = "https://a\u200d.example/"\n': (
            'sites[0] "blog": url: host name'
        ),
        '[[sites]]\nname = "blog"\ntcp = "a\u200d.example:25"\n': 'sites[0] "blog": tcp: host name',
    }
    for text, expected in cases.items():
        errors = config_errors(text)
        assert len(errors) == 1 and expected in errors[0], (text, errors)


# ------------------------------------------------------------------ the warning email, end to end


@pytest.mark.slow
def test_the_certificate_email_says_which_certificate_expires(
    sentinel_proc: Callable[..., Any],
    tls_servers: Callable[[ssl.SSLContext], BlockingTlsServer],
    tmp_path: Path,
) -> None:
    from daemon_proc import wait_until
    from smtp_server import SmtpServer

    context, root_file, _ = chain_with_a_soon_expiring_intermediate(tmp_path)
    server = tls_servers(context)
    with SmtpServer() as smtp:
        config = f"""
[defaults]
interval = "1s"
timeout = "900ms"

[email]
from = "sentinel <sentinel@example.org>"
to = ["owner@example.org"]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
security = "none"
timeout = "3s"

[[sites]]
name = "shop"
url = "https://127.0.0.1:{server.port}/"
ca_file = "{root_file}"
"""
        proc = sentinel_proc(config).start()
        mails = wait_until(lambda: list(smtp.messages_received), timeout=30)
        proc.stop()
    message = mails[0].message
    assert str(message["Subject"]).startswith("[sentinel] CERTIFICATE: shop expires in 2 days")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Certificate:" in text and "CN=Test Intermediate" in text, text
