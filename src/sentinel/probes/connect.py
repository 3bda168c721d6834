"""The connection side of a probe: from a host and port to a connected (TLS) transport.

Owns:
- resolution in a thread pool of its own (`Resolver`), sized to `max_concurrency`: the `dns`
  phase is the lookup's own time in its thread, so waiting for a free thread (sentinel's
  queueing, not the site's DNS) is never charged to the site;
- staggered connection attempts across a name's addresses (RFC 8305 "happy eyeballs": families
  interleaved, the next attempt starts 250 ms after the previous one or as soon as it fails,
  the first to connect wins), so a black-holed address (broken IPv6) cannot eat the timeout;
- the connect phase as the kernel timed the handshake (TCP_INFO, see rxstamp.py), not including
  how late the event loop got to it;
- TLS: contexts per (verify, ca_file, client_cert, client_key), cached with a bound and an
  expiry; handshake failures and alerts as verdicts; the earliest NotAfter among ALL the
  certificates the server sent, and which certificate it is.

Failures are raised as `ConnectError(reason, message)`; the probes turn them into results.
"""

from __future__ import annotations

import _ssl
import asyncio
import itertools
import os
import re
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sentinel.hostnames import ascii_host, parse_connect_to
from sentinel.probes.common import der_not_after
from sentinel.probes.rxstamp import handshake_seconds
from sentinel.tlsfiles import load_into

# RFC 8305 section 5: the recommended "Connection Attempt Delay".
ATTEMPT_DELAY: Final = 0.25
MAX_ADDRESSES: Final = 16  # addresses tried per connection (a name may have hundreds)
DEFAULT_RESOLVER_THREADS: Final = 16
MAX_RESOLVER_THREADS: Final = 256  # threads are started on demand, up to this many
CONTEXT_CACHE_SIZE: Final = 64  # distinct (verify, ca_file, client_cert, client_key)
CONTEXT_TTL: Final = 600.0  # seconds: a renewed ca_file or client certificate is read again

Address = tuple[int, str]  # (socket family, numeric host)
_CONTROL_RE: Final = re.compile("[\x00-\x20\x7f-\x9f]")


class ConnectError(Exception):
    """A verdict from the connection side: reason code and a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Phases(Protocol):
    """Where a probe keeps its phase times (summed over redirect hops) and its stage."""

    stage: str
    dns: float | None
    connect: float | None
    tls: float | None


@dataclass(slots=True)
class PhaseTimes:
    """A `Phases` for probes that keep no other state (the TCP probe)."""

    stage: str = "connect"
    dns: float | None = None
    connect: float | None = None
    tls: float | None = None


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


# ------------------------------------------------------------------ names and addresses


def wire_host(host: str) -> str:
    """`ascii_host` as a verdict: a redirect may name a host that is not valid IDNA."""
    if _CONTROL_RE.search(host):  # a resolver may cut a name at a NUL
        raise ConnectError("dns", f"invalid host name {host!r}")
    try:
        return ascii_host(host)
    except ValueError as exc:
        raise ConnectError("dns", str(exc)) from None


def dial_target(connect_to: str | None, url: str, host: str, port: int) -> tuple[str, int]:
    """Where to connect for `host:port`. `connect_to` applies to connections to the site's own
    URL host: "ADDRESS" (no port) to any port of it, like an /etc/hosts entry (an http -> https
    redirect goes to the same server); "ADDRESS:PORT" only to the URL's own host and port, like
    curl's --connect-to. A redirect to another host goes where it says."""
    if connect_to is None:
        return host, port
    from urllib.parse import urlsplit  # only for sites with connect_to

    parts = urlsplit(url)
    if ascii_host(parts.hostname or "") != host:
        return host, port
    to_host, to_port = parse_connect_to(connect_to)
    if to_port is None:
        return to_host, port
    if (parts.port or (443 if parts.scheme == "https" else 80)) != port:
        return host, port
    return to_host, to_port


def literal(host: str) -> list[Address] | None:
    """[(family, host)] for an IP literal (no DNS), else None. inet_pton: ipaddress is slower."""
    try:
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        pass
    else:
        return [(socket.AF_INET, host)]
    try:
        socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except (OSError, ValueError):
        return None
    return [(socket.AF_INET6, host)]


def numeric_host(sockaddr: tuple[Any, ...]) -> str:
    """The IP of a getaddrinfo socket address, with the IPv6 scope (link-local) if any."""
    if len(sockaddr) == 4 and sockaddr[3]:
        return f"{sockaddr[0]}%{sockaddr[3]}"
    return str(sockaddr[0])


def interleave(addresses: Sequence[Address]) -> list[Address]:
    """RFC 8305 section 4: alternate address families, starting with the first one's, each
    family in its resolver order; duplicates dropped; at most MAX_ADDRESSES."""
    if len(addresses) == 1:  # an IP literal or a one-address name: most probes (~15 us saved)
        return [addresses[0]]
    seen: set[Address] = set()
    unique = [a for a in addresses if not (a in seen or seen.add(a))]  # type: ignore[func-returns-value]
    if not unique:
        return []
    first = unique[0][0]
    ours = [a for a in unique if a[0] == first]
    others = [a for a in unique if a[0] != first]
    merged = [a for pair in itertools.zip_longest(ours, others) for a in pair if a is not None]
    return merged[:MAX_ADDRESSES]


def _lookup(host: str, port: int) -> tuple[float, float, list[Address] | BaseException]:
    """In a resolver thread: (started, ended, addresses or the error)."""
    began = time.perf_counter()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:  # (UnicodeError is a ValueError)
        return began, time.perf_counter(), exc
    return began, time.perf_counter(), [(info[0], numeric_host(info[4])) for info in infos]


def _libuv_pool_size(loop: asyncio.AbstractEventLoop) -> int:
    """Threads of libuv's getaddrinfo pool under uvloop (UV_THREADPOOL_SIZE, default 4), else
    0: asyncio's own getaddrinfo runs in the default executor, shared with everything else."""
    if not type(loop).__module__.startswith("uvloop"):
        return 0
    try:
        size = int(os.environ.get("UV_THREADPOOL_SIZE", "4"))
    except ValueError:
        size = 4
    return max(1, min(size, 1024))


class Resolver:
    """Name lookups whose waiting for a thread is never booked as the site's `dns` phase.

    getaddrinfo blocks, so it runs in threads: uvloop's libuv pool has 4, asyncio's default
    executor min(32, CPUs + 4) shared with everything else. With more lookups due at once than
    threads, the wait for a thread was booked as `dns`. So: while fewer lookups are in flight
    than libuv has threads, a lookup takes uvloop's native path (C, cheapest: ~70-130 us of CPU
    less than a Python thread pool, measured) and cannot queue behind another; beyond that, or
    on asyncio's loop, it runs in a pool of `threads` threads of sentinel's own (sized to
    `max_concurrency`, started on demand), and `dns` is the time the lookup took in its thread.
    `native` overrides the libuv pool size (0: always the own pool). `close()` drops the pool
    (lookups still queued are cancelled)."""

    def __init__(
        self, threads: int = DEFAULT_RESOLVER_THREADS, *, native: int | None = None
    ) -> None:
        self.threads = max(1, min(threads, MAX_RESOLVER_THREADS))
        self._native = native
        self._native_in_flight = 0
        self._pool: ThreadPoolExecutor | None = None

    def resize(self, threads: int) -> None:
        """A new pool size (max_concurrency changed on reload). The current pool, if any, is
        retired: lookups already queued on it still run there, its threads end when idle; the
        next lookup starts the new pool (on demand, as at start)."""
        threads = max(1, min(threads, MAX_RESOLVER_THREADS))
        if threads == self.threads:
            return
        self.threads = threads
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=False)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sentinel-dns")
        return self._pool

    async def resolve(self, host: str, port: int, phases: Phases) -> list[Address]:
        """The addresses of `host` (an IP literal needs no lookup); ConnectError("dns")."""
        addresses = literal(host)
        if addresses is not None:
            return addresses
        return await self.lookup(host, port, phases)

    async def lookup(self, host: str, port: int, phases: Phases) -> list[Address]:
        """The addresses of the name `host` (not an IP literal: see `resolve`)."""
        loop = asyncio.get_running_loop()
        native = self._native if self._native is not None else _libuv_pool_size(loop)
        found: list[Address] | BaseException
        if self._native_in_flight < native:
            self._native_in_flight += 1
            began = time.perf_counter()
            try:
                infos = await loop.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
                found = [(info[0], numeric_host(info[4])) for info in infos]
            except (OSError, ValueError) as exc:  # (UnicodeError is a ValueError)
                found = exc
            finally:
                self._native_in_flight -= 1
            ended = time.perf_counter()
        else:
            began, ended, found = await loop.run_in_executor(self._executor(), _lookup, host, port)
        phases.dns = _add(phases.dns, ended - began)
        if isinstance(found, BaseException):
            detail = getattr(found, "strerror", None) or str(found) or type(found).__name__
            raise ConnectError("dns", f"cannot resolve {host}: {detail}")
        if not found:
            raise ConnectError("dns", f"cannot resolve {host}: no addresses")
        return found

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# ------------------------------------------------------------------ connecting


class _Attempt(asyncio.Protocol):
    """The protocol of one of several racing attempts. uvloop makes the protocol before it
    connects, so the probe's own protocol cannot be handed to every attempt: the winner's
    transport is handed over to it (`hand_over`), with anything that arrived meanwhile."""

    __slots__ = ("data", "eof", "lost", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.data: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if sum(map(len, self.data)) < 1 << 20:  # bounded; a probe reads after its request
            self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return True  # keep the transport open: the probe's protocol decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def hand_over(self, transport: asyncio.Transport, protocol: asyncio.BaseProtocol) -> None:
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if isinstance(protocol, asyncio.Protocol):
            for data in self.data:
                protocol.data_received(data)
            if self.eof:
                protocol.eof_received()
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])


def _abort_when_done(task: asyncio.Task[tuple[asyncio.Transport, _Attempt]]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[0].abort()


def os_text(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def connect_failure(errors: Sequence[OSError], where: str) -> ConnectError:
    if errors and all(isinstance(e, ConnectionRefusedError) for e in errors):
        return ConnectError("connect_refused", f"connection refused by {where}")
    last = errors[-1] if errors else OSError("no address")
    if isinstance(last, ConnectionResetError):
        return ConnectError("connect_reset", f"connection reset by {where}")
    return ConnectError("connect", f"cannot connect to {where}: {os_text(last)}")


async def connect_staggered(
    factory: Callable[[], asyncio.BaseProtocol],
    addresses: Sequence[Address],
    port: int,
    *,
    where: str,
    delay: float = ATTEMPT_DELAY,
) -> tuple[asyncio.Transport, float]:
    """Connect to the first of `addresses` that accepts (RFC 8305); (transport, perf_counter
    time the winning attempt started). Raises ConnectError naming `where` when none does.

    `factory` is called once, for the winner; an attempt that connects after it is closed.
    Each attempt is a `loop.create_connection(host, port)` (uvloop connects in C this way,
    ~0.3 ms less than `sock=`)."""
    loop = asyncio.get_running_loop()
    ordered = interleave(addresses)
    if len(ordered) == 1:  # the common case: one address, no tasks
        family, address = ordered[0]
        started = time.perf_counter()
        try:
            transport, _ = await loop.create_connection(factory, address, port, family=family)
        except OSError as exc:
            raise connect_failure([exc], where) from None
        return transport, started

    starts: dict[asyncio.Task[tuple[asyncio.Transport, _Attempt]], float] = {}
    pending: set[asyncio.Task[tuple[asyncio.Transport, _Attempt]]] = set()
    errors: list[OSError] = []
    index = 0
    try:
        while True:
            if index < len(ordered):
                family, address = ordered[index]
                index += 1
                task = loop.create_task(
                    loop.create_connection(_Attempt, address, port, family=family)
                )
                starts[task] = time.perf_counter()
                pending.add(task)
            if not pending:
                raise connect_failure(errors, where)
            # Wait for an attempt to end, or (addresses left) the delay to start the next one.
            done, pending = await asyncio.wait(
                pending,
                timeout=delay if index < len(ordered) else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            winner: tuple[asyncio.Transport, float] | None = None
            for task in done:
                error = task.exception()
                if error is not None:
                    if not isinstance(error, OSError):
                        raise error
                    errors.append(error)
                    continue
                transport, attempt = task.result()
                if winner is not None or not isinstance(attempt, _Attempt):
                    transport.abort()  # connected too, but another one won
                    continue
                attempt.hand_over(transport, factory())
                winner = (transport, starts[task])
            if winner is not None:
                return winner
    finally:
        for task in pending:
            task.cancel()
            task.add_done_callback(_abort_when_done)


async def open_connection(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    *,
    phases: Phases,
    resolver: Resolver,
    where: str,
    delay: float = ATTEMPT_DELAY,
) -> tuple[asyncio.Transport, float]:
    """Resolve `host` (ASCII) and connect; records the dns and connect phases. Returns the
    transport and how late this process learned of the connection (its own scheduling, to be
    taken off the probe's total)."""
    # An IP literal needs no lookup, nor a coroutine to find that out.
    addresses = literal(host)
    if addresses is None:
        addresses = await resolver.lookup(host, port, phases)
    started = time.perf_counter()
    transport, attempt = await connect_staggered(factory, addresses, port, where=where, delay=delay)
    connected = time.perf_counter()
    # The kernel's handshake time, where it has one: how late this process learned of the
    # connection (a busy loop, CPU steal) is sentinel's time, not the site's.
    handshake = handshake_seconds(transport)
    late = 0.0
    if handshake is not None and handshake <= connected - attempt:
        late = connected - attempt - handshake
    phases.connect = _add(phases.connect, connected - started - late)
    return transport, late


# ------------------------------------------------------------------ TLS


def _default_no_verify() -> ssl.SSLContext:
    """create_default_context()'s settings without its trust store (~0.8 MiB), which a
    context that verifies nothing never reads."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


ContextKey = tuple[bool, str | None, str | None, str | None]


class TlsContexts:
    """SSL contexts per (verify, ca_file, client_cert, client_key), built on first use.

    At most CONTEXT_CACHE_SIZE are kept (least recently used dropped); one built from files
    is rebuilt after CONTEXT_TTL, so a renewed client certificate or CA file is picked up. The
    plain two (verify or not, no files) are built once: `given`, if set, replaces the system
    trust store for the plain verifying one (tests, `Prober(ssl_context=...)`)."""

    def __init__(
        self,
        given: ssl.SSLContext | None = None,
        *,
        size: int = CONTEXT_CACHE_SIZE,
        ttl: float = CONTEXT_TTL,
        build: Callable[[ContextKey], ssl.SSLContext] | None = None,
    ) -> None:
        self._given = given
        self._size = size
        self._ttl = ttl
        self._build = build or _build_context
        self._plain: dict[bool, ssl.SSLContext] = {}
        self._cache: OrderedDict[ContextKey, tuple[float, ssl.SSLContext]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def warm(self, verify: bool) -> None:
        """Build the plain context for `verify` now if it is not built yet (cheap when it is):
        a caller that times its work calls this before its clock starts."""
        if verify not in self._plain:
            self.get(verify=verify, now=0.0)

    def get(
        self,
        *,
        verify: bool,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        now: float,
    ) -> ssl.SSLContext:
        """The context for these settings; ConnectError("tls") if a file cannot be loaded."""
        if ca_file is None and client_cert is None:
            context = self._plain.get(verify)
            if context is None:
                if verify:
                    context = self._given or ssl.create_default_context()
                else:
                    context = _default_no_verify()
                self._plain[verify] = context
            return context
        key: ContextKey = (verify, ca_file, client_cert, client_key)
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            self._cache.move_to_end(key)
            return cached[1]
        try:
            context = self._build(key)
        except ValueError as exc:
            raise ConnectError("tls", str(exc)) from None
        self._cache[key] = (now, context)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return context


def _build_context(key: ContextKey) -> ssl.SSLContext:
    verify, ca_file, client_cert, client_key = key
    context = ssl.create_default_context() if verify else _default_no_verify()
    load_into(
        context,
        ca_file=ca_file if verify else None,
        client_cert=client_cert,
        client_key=client_key,
    )
    return context


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    server_hostname: str,
    where: str,
    phases: Phases,
) -> asyncio.Transport:
    """The TLS handshake on a connected transport; records the tls phase."""
    phases.stage = "tls"
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        tls = await loop.start_tls(transport, protocol, context, server_hostname=server_hostname)
    except ssl.SSLCertVerificationError as exc:
        detail = exc.verify_message or exc.reason or str(exc)
        raise ConnectError("tls", f"certificate not accepted: {detail}") from None
    except ssl.SSLError as exc:
        raise ConnectError("tls", f"TLS handshake with {where} failed: {tls_detail(exc)}") from None
    except ConnectionResetError:
        raise ConnectError("connect_reset", f"connection reset by {where}") from None
    except OSError as exc:
        raise ConnectError("connect", f"cannot connect to {where}: {os_text(exc)}") from None
    if tls is None:
        raise ConnectError("tls", f"TLS handshake with {where} failed")
    phases.tls = _add(phases.tls, time.perf_counter() - started)
    return tls


_ALERTS: Final = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected the client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says the client certificate expired",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure",
    "TLSV1_ALERT_ACCESS_DENIED": "access denied",
}


def tls_detail(exc: ssl.SSLError) -> str:
    """An OpenSSL error as a person reads it: `TLSV13_ALERT_CERTIFICATE_REQUIRED` -> 'the
    server requires a client certificate (alert certificate required)'."""
    reason = exc.reason or ""
    known = _ALERTS.get(reason)
    shown = reason.lower().replace("_", " ") if reason else (str(exc) or type(exc).__name__)
    return f"{known} ({shown})" if known else shown


def tls_alert_message(exc: BaseException | None) -> str | None:
    """The verdict message for a connection that ended with a TLS error after the handshake
    (TLS 1.3 sends "certificate required" then), or None if it did not."""
    if not isinstance(exc, ssl.SSLError):
        return None
    return f"TLS alert from the server: {tls_detail(exc)}"


# ------------------------------------------------------------------ certificate expiry

_SHORT_NAMES: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _subject_text(info: dict[str, Any]) -> str | None:
    subject = info.get("subject")
    if not isinstance(subject, tuple):
        return None
    parts: list[str] = []
    for rdn in subject:
        for name, value in rdn:
            parts.append(f"{_SHORT_NAMES.get(name, name)}={value}")
    return ", ".join(parts)[:200] or None


def _unverified_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[Any]:
    """The certificates the server sent, leaf first, as `_ssl.Certificate` objects (3.10+:
    the C object's method; 3.13 wraps the same one as `get_unverified_chain()`, in DER)."""
    inner = getattr(ssl_object, "_sslobj", None)
    method = getattr(inner, "get_unverified_chain", None)
    if method is None:
        return []
    chain = method()
    return list(chain) if chain else []


def chain_expiry(transport: asyncio.BaseTransport) -> tuple[float, str | None] | None:
    """(earliest notAfter among all certificates the server sent, that certificate's subject),
    or None. Falls back to the leaf alone where the chain cannot be read."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    earliest: tuple[float, str | None] | None = None
    try:
        for cert in _unverified_chain(ssl_object):
            info = cert.get_info()
            not_after = info.get("notAfter")
            if isinstance(not_after, str):
                when = float(ssl.cert_time_to_seconds(not_after))
            else:
                found = der_not_after(cert.public_bytes(_ssl.ENCODING_DER))
                if found is None:
                    continue
                when = found
            if earliest is None or when < earliest[0]:
                earliest = (when, _subject_text(info))
    except (ValueError, ssl.SSLError, AttributeError, TypeError):
        earliest = None
    if earliest is not None:
        return earliest
    return _leaf_expiry(ssl_object)


def _leaf_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[float, str | None] | None:
    try:
        cert = ssl_object.getpeercert()
        if cert and isinstance(not_after := cert.get("notAfter"), str):
            return float(ssl.cert_time_to_seconds(not_after)), _subject_text(dict(cert))
        der = ssl_object.getpeercert(binary_form=True)  # unverified: no parsed fields
    except (ValueError, ssl.SSLError):
        return None
    when = der_not_after(der) if der else None
    return None if when is None else (when, None)
