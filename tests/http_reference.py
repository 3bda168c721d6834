"""The reference HTTP(S) prober the lean one is compared with (tests/test_probe_http.py runs
on both): one long-lived aiohttp session, a fresh connection per probe, phase timings, the body
limit, the site's checks and the certificate expiry, turned into a `ProbeResult`.

It lived in the package as `sentinel.probes.http` until the daemon stopped using it; it stays
here, with the tests, as an independent client to hold `LeanHttpProber`'s verdicts against."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import (
    ClientConnectionError,
    ClientConnectorCertificateError,
    ClientConnectorDNSError,
    ClientConnectorError,
    ClientPayloadError,
    ClientResponse,
    ClientResponseError,
    ClientSSLError,
    RedirectClientError,
    ServerDisconnectedError,
    TooManyRedirects,
)
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawResponseMessage
from aiohttp.streams import StreamReader

from sentinel import USER_AGENT
from sentinel.config import SiteConfig
from sentinel.probes.common import (
    MAX_INTERIM_RESPONSES,
    MESSAGE_LIMIT,
    AsyncLifecycle,
    clean_message,
    der_not_after,
    describe_statuses,
    host_port,
)
from sentinel.probes.result import ProbeResult

__all__ = [
    "MAX_INTERIM_RESPONSES",
    "MESSAGE_LIMIT",
    "HttpProber",
    "clean_message",
    "der_not_after",
    "describe_statuses",
    "host_port",
]

# Bytes per read of the body. Small on purpose: aiohttp joins the buffered HTTP chunks of one read
# in a Python loop, so a body sent as 1-byte chunks costs microseconds per byte; together with the
# yield after every read this keeps one hostile body from starving the other probes.
_READ_CHUNK = 8 * 1024

# asyncio on these Pythons can leak SSL transports that are closed without a clean shutdown
# (cpython#118960); aiohttp's cleanup aborts them. Every HTTPS probe closes one, so it matters here.
_NEEDS_CLEANUP_CLOSED = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)


class _Timing:
    """Phase times of one probe, filled by the trace callbacks (passed as `trace_request_ctx`,
    so concurrent probes never share one). Phases are summed over redirect hops."""

    __slots__ = (
        "connect",
        "create_started",
        "dns",
        "dns_started",
        "headers_at",
        "hop_dns",
        "processing",
        "sent_at",
    )

    def __init__(self) -> None:
        self.dns: float | None = None
        self.connect: float | None = None
        self.processing: float | None = None
        self.headers_at: float | None = None  # perf_counter when the final headers arrived
        self.dns_started = 0.0
        self.create_started = 0.0
        self.hop_dns = 0.0
        self.sent_at: float | None = None


def _timing(ctx: SimpleNamespace) -> _Timing | None:
    timing = ctx.trace_request_ctx
    return timing if isinstance(timing, _Timing) else None


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


async def _on_create_start(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceConnectionCreateStartParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        t.create_started = time.perf_counter()
        t.hop_dns = 0.0


async def _on_create_end(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceConnectionCreateEndParams,
) -> None:
    # Connection creation includes the DNS lookup; connect is the rest (TCP and TLS).
    if (t := _timing(ctx)) is not None:
        elapsed = time.perf_counter() - t.create_started - t.hop_dns
        t.connect = _add(t.connect, max(0.0, elapsed))


async def _on_dns_start(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceDnsResolveHostStartParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        t.dns_started = time.perf_counter()


async def _on_dns_end(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceDnsResolveHostEndParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        elapsed = time.perf_counter() - t.dns_started
        t.hop_dns += elapsed
        t.dns = _add(t.dns, elapsed)


async def _on_headers_sent(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        t.sent_at = time.perf_counter()


def _response_headers_received(t: _Timing) -> None:
    now = time.perf_counter()
    if t.sent_at is not None:
        t.processing = _add(t.processing, now - t.sent_at)
        t.sent_at = None
    t.headers_at = now


async def _on_redirect(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        _response_headers_received(t)


async def _on_request_end(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestEndParams,
) -> None:
    if (t := _timing(ctx)) is not None:
        _response_headers_received(t)


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(_on_create_start)
    config.on_connection_create_end.append(_on_create_end)
    config.on_dns_resolvehost_start.append(_on_dns_start)
    config.on_dns_resolvehost_end.append(_on_dns_end)
    config.on_request_headers_sent.append(_on_headers_sent)
    config.on_request_redirect.append(_on_redirect)
    config.on_request_end.append(_on_request_end)
    return config


class _Response(aiohttp.ClientResponse):
    """Notes the peer certificate's expiry when the response starts: the connection may be
    released (a short body arrives with the headers) before `session.request` returns. Refuses
    more than MAX_INTERIM_RESPONSES interim (1xx) responses before the final one."""

    tls_expiry: float | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        self.tls_expiry = _peer_cert_expiry(connection.transport)
        protocol = connection.protocol
        if protocol is None:
            return await super().start(connection)
        # aiohttp skips interim responses in a loop of its own; counting them means wrapping the
        # protocol's read for this one response (the connection is never reused: force_close).
        protocol.read = _limit_interim(protocol)  # type: ignore[method-assign]
        try:
            return await super().start(connection)
        finally:
            with contextlib.suppress(AttributeError):
                del protocol.read


def _limit_interim(
    protocol: ResponseHandler,
) -> Callable[[], Coroutine[Any, Any, tuple[RawResponseMessage, StreamReader]]]:
    read = protocol.read
    seen = 0

    async def read_limited() -> tuple[RawResponseMessage, StreamReader]:
        nonlocal seen
        message, payload = await read()
        if 100 <= message.code <= 199 and message.code != 101:
            seen += 1
            if seen > MAX_INTERIM_RESPONSES:
                raise HttpProcessingError(
                    message=f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
                )
        return message, payload

    return read_limited


class HttpProber(AsyncLifecycle):
    """Probes HTTP(S) sites through one long-lived `aiohttp.ClientSession`.

    Every probe opens a fresh connection (no keep-alive, no DNS cache), so its phase times mean
    the same thing every time: dns (resolution; None for an IP literal), connect (TCP connect
    *including* the TLS handshake, which aiohttp cannot time separately, so `tls` stays None),
    processing (request headers sent -> response headers received) and transfer (response
    headers -> last body byte read). With redirects the phases are summed over the hops.

    `tls_expiry` is the served leaf certificate's notAfter (Python 3.11 exposes only the leaf,
    not the chain). It is read with `tls_verify = false` too, from the raw certificate.

    `ssl_context`, if given, is used for every verified request instead of the system default
    (e.g. to trust a private CA). Concurrency is bounded by the caller, not here.
    """

    def __init__(
        self,
        *,
        user_agent: str = USER_AGENT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.user_agent = user_agent
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            force_close=True,
            limit=0,
            use_dns_cache=False,
            enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(),  # a cookie jar would grow with every site
            trace_configs=[_trace_config()],
            response_class=_Response,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def probe(self, site: SiteConfig) -> ProbeResult:
        """Probe `site` once. Never raises (except on cancellation): every failure is a result."""
        started_at = time.time()
        t0 = time.perf_counter()
        timing = _Timing()
        status = 0
        session = self._session
        if session is None:
            return _failure("error", "prober not started", started_at, t0, timing)
        try:
            # aiohttp's own total timeout is rounded up to whole seconds; this one is exact and
            # also bounds a body that drips in slowly.
            async with asyncio.timeout(site.timeout):
                async with session.request(
                    site.method,
                    site.target,
                    headers=dict(site.headers) if site.headers else None,
                    allow_redirects=site.follow_redirects,
                    # aiohttp fails on its max_redirects-th redirect, i.e. follows one fewer.
                    max_redirects=site.max_redirects + 1,
                    ssl=self._ssl if site.tls_verify else False,
                    timeout=aiohttp.ClientTimeout(total=site.timeout),
                    trace_request_ctx=timing,
                ) as resp:
                    status = resp.status
                    if timing.headers_at is None:
                        timing.headers_at = time.perf_counter()
                    tls_expiry = resp.tls_expiry if isinstance(resp, _Response) else None
                    keep = site.needs_body and site.accepts_status(status)
                    body, too_large = await _read_body(resp, site.max_body_bytes, keep=keep)
                    end = time.perf_counter()
                    if too_large:
                        resp.close()  # stop here; never read more than the limit
            return _judge(
                site,
                resp,
                body=body,
                too_large=too_large,
                started_at=started_at,
                t0=t0,
                end=end,
                timing=timing,
                tls_expiry=tls_expiry,
            )
        except Exception as exc:  # a probe never raises into the scheduler
            reason, message = _classify(exc, site, timing)
            if reason == "dns" and timing.dns is None and timing.dns_started:
                timing.dns = time.perf_counter() - timing.dns_started  # the failed lookup
            return _failure(reason, message, started_at, t0, timing, status=status)


async def _read_body(resp: ClientResponse, limit: int, *, keep: bool) -> tuple[bytes, bool]:
    """Read at most `limit` decoded bytes (+1 to detect more); keep them only if `keep`.
    Returns (kept body, whether the body is larger than `limit`)."""
    parts: list[bytes] = []
    count = 0
    while True:
        chunk = await resp.content.read(min(limit - count + 1, _READ_CHUNK))
        if not chunk:
            return b"".join(parts), False
        # A read returns without suspending while data is buffered: give the loop a turn.
        await asyncio.sleep(0)
        count += len(chunk)
        if count > limit:
            if keep:
                parts.append(chunk[: len(chunk) - (count - limit)])
            return b"".join(parts), True
        if keep:
            parts.append(chunk)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _judge(
    site: SiteConfig,
    resp: ClientResponse,
    *,
    body: bytes,
    too_large: bool,
    started_at: float,
    t0: float,
    end: float,
    timing: _Timing,
    tls_expiry: float | None,
) -> ProbeResult:
    status = resp.status
    total = end - t0
    phrase = clean_message(resp.reason or "", limit=60)  # the server's words: keep them short
    reason, message = "ok", f"HTTP {status} {phrase}"
    if not site.accepts_status(status):
        reason = "status"
        message = f"HTTP {status} {phrase} (expected {describe_statuses(site.expect_status)})"
    elif site.needs_body and too_large:
        reason = "body_too_large"
        message = f"body larger than {site.max_body_bytes} bytes, the read limit"
    elif site.needs_body:
        text = _decode(body, resp.charset)
        if site.body_contains is not None and site.body_contains not in text:
            reason, message = "body", f"body does not contain {site.body_contains!r}"
        elif site.body_regex is not None and not _compile(site.body_regex).search(text):
            reason, message = "body", f"body does not match /{site.body_regex}/"
    if reason == "ok" and site.max_response_time is not None and total > site.max_response_time:
        reason = "slow"
        message = f"response took {total:.2f}s (limit {site.max_response_time:g}s)"
    return ProbeResult(
        ok=reason == "ok",
        reason=reason,
        message=clean_message(message),
        started_at=started_at,
        total=total,
        status=status,
        dns=timing.dns,
        connect=timing.connect,
        processing=timing.processing,
        transfer=end - timing.headers_at if timing.headers_at is not None else None,
        tls_expiry=tls_expiry,
    )


def _failure(
    reason: str,
    message: str,
    started_at: float,
    t0: float,
    timing: _Timing,
    *,
    status: int = 0,
) -> ProbeResult:
    return ProbeResult(
        ok=False,
        reason=reason,
        message=clean_message(message),
        started_at=started_at,
        total=time.perf_counter() - t0,
        status=status,
        dns=timing.dns,
        connect=timing.connect,
        processing=timing.processing,
    )


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset named by the server
        return body.decode("utf-8", errors="replace")


def _classify(exc: Exception, site: SiteConfig, timing: _Timing) -> tuple[str, str]:
    """An exception from a probe -> (reason, human message). Order matters: aiohttp's
    exception classes inherit from each other (and from OSError / TimeoutError)."""
    if isinstance(exc, TooManyRedirects):
        return "redirects", f"too many redirects (limit {site.max_redirects})"
    if isinstance(exc, RedirectClientError):
        return "redirects", f"redirect to an invalid or non-HTTP location: {exc}"
    if isinstance(exc, TimeoutError):  # also asyncio's and aiohttp's timeouts
        if timing.headers_at is not None:
            stage = "body not complete"
        elif timing.connect is not None:
            stage = "no response"
        else:
            stage = "no connection"
        return "timeout", f"{stage} within {site.timeout:g}s"
    if isinstance(exc, ClientConnectorDNSError):
        return "dns", f"cannot resolve {exc.host}: {_os_text(exc.os_error)}"
    if isinstance(exc, ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        detail = getattr(cert_error, "verify_message", None) or str(cert_error)
        return "tls", f"certificate not accepted: {detail}"
    if isinstance(exc, ClientSSLError):
        where = host_port(exc.host, exc.port)
        return "tls", f"TLS handshake with {where} failed: {_os_text(exc.os_error)}"
    if isinstance(exc, ClientConnectorError):
        where = host_port(exc.host, exc.port)
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connect_refused", f"connection refused by {where}"
        if isinstance(os_error, ConnectionResetError):
            return "connect_reset", f"connection reset by {where}"
        return "connect", f"cannot connect to {where}: {_os_text(os_error)}"
    if isinstance(exc, ServerDisconnectedError):
        return "connect_reset", "server closed the connection without a complete response"
    if isinstance(exc, ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNRESET  # aiohttp's ClientOSError
    ):
        return "connect_reset", "connection reset by the server"
    if isinstance(exc, ClientPayloadError):
        detail = getattr(exc.__cause__, "message", None) or str(exc)
        return "protocol", f"incomplete or malformed response body: {detail}"
    if isinstance(exc, ClientResponseError):
        return "protocol", f"malformed response: {exc.message.rstrip(' ^')}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS error: {_os_text(exc)}"
    if isinstance(exc, ClientConnectionError | OSError):
        return "connect", f"connection failed: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


def _os_text(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


# ------------------------------------------------------------------ certificate expiry


def _peer_cert_expiry(transport: asyncio.Transport | None) -> float | None:
    """The served leaf certificate's notAfter (epoch seconds), read while the connection is open."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    try:
        cert = ssl_object.getpeercert()
        if cert and isinstance(not_after := cert.get("notAfter"), str):
            return float(ssl.cert_time_to_seconds(not_after))
        # Unverified connections give no parsed fields; the raw certificate is still there.
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    return der_not_after(der) if der else None
