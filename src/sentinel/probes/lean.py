"""The "http" probe kind (http:// and https:// URLs): one `asyncio.Protocol` per probe, no
client framework.

`LeanHttpProber` gives the verdicts (reason codes, message styles) of the aiohttp client it is
tested against (tests/http_reference.py; the differences by design are in docs/http-probe.md)
at a fraction of its CPU cost, and times the TLS handshake as a phase of its own. Every probe
opens a fresh connection and sends one request with `Connection: close`:

    dns        getaddrinfo (None for an IP literal)
    connect    TCP connect
    tls        TLS handshake (https only)
    processing request written -> first byte of the response (its arrival as the kernel
               stamped it, with `precise_latency`, for plain HTTP on Linux: see rxstamp.py)
    transfer   first byte -> last byte read

With redirects the phases are summed over the hops (at most the site's `max_redirects`). The
response itself is read by `response.ResponseProtocol` (llhttp via httptools, strict, with the
limits on head, fields, interim responses and bytes read); this module owns the request, the
connection, the redirect loop and the verdict (`_judge`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from typing import Final, Self
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

from sentinel.config import SiteConfig
from sentinel.probes.base import Probe, ProbeSettings, register
from sentinel.probes.common import (
    MESSAGE_LIMIT,
    clean_message,
    describe_statuses,
    host_port,
)
from sentinel.probes.connect import (
    ConnectError,
    Resolver,
    TlsContexts,
    chain_expiry,
    dial_target,
    open_connection,
    start_tls,
    wire_host,
)
from sentinel.probes.response import ResponseProtocol, charset, decode_text
from sentinel.probes.result import ProbeResult
from sentinel.probes.rxstamp import RxStamp

_NO_BODY_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"))
_PATH_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"  # keep reserved characters and existing escapes
# A path or query made only of these is what `quote(..., safe=_PATH_SAFE)` returns unchanged:
# the common case, checked in ~0.3 us instead of quoting in ~4 us.
_QUOTED_ALREADY: Final = re.compile(r"[A-Za-z0-9_.\-~!#$%&'()*+,/:;=?@\[\]]*\Z")


class _VerdictError(Exception):
    """A probe verdict raised from deep inside: reason code and human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------ the prober


class _Probe:
    """Per-probe state: phase times (summed over hops) and where the probe is."""

    __slots__ = (
        "conn",
        "connect",
        "dns",
        "processing",
        "stage",
        "tls",
        "tls_expiry",
        "tls_expiry_subject",
        "transfer",
    )

    def __init__(self) -> None:
        self.dns: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.processing: float | None = None
        self.transfer: float | None = None
        self.tls_expiry: float | None = None
        self.tls_expiry_subject: str | None = None  # whose notAfter tls_expiry is
        self.stage = "connect"
        self.conn: ResponseProtocol | None = None  # the current hop's protocol


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


class _Hop:
    """One request's target, worked out from its URL: where to connect, what to send. A site's
    first hop is the same on every probe, so it is worked out once and kept
    (`LeanHttpProber._first_hops`): ~6 % of a probe's CPU was re-parsing its own URL."""

    __slots__ = ("auth", "dial_host", "dial_port", "host", "https", "port", "request", "where")

    def __init__(
        self,
        *,
        https: bool,
        host: str,
        port: int,
        auth: str | None,
        dial: tuple[str, int],
        where: str,
        request: bytes,
    ) -> None:
        self.https = https
        self.host = host  # ASCII, as sent in Host and SNI
        self.port = port
        self.auth = auth
        self.dial_host, self.dial_port = dial
        self.where = where
        self.request = request


# Kept first hops (by site name); cleared if ever this many (sites are forgotten at removal).
MAX_FIRST_HOPS = 100_000


@register
class LeanHttpProber(Probe):
    """Probes HTTP(S) sites with one bare asyncio protocol per probe (see the module docstring).

    A `Probe` (base.py): `start()`, `close()`, `probe(site)` (never raises except on
    cancellation), async context manager. `ssl_context`, if given, is used for every verified
    connection instead of the system default (e.g. to trust a private CA). `precise_latency`
    times plain-HTTP responses by the kernel's receive stamp (rxstamp.py): p99 error ~1 ms on
    a busy machine, for ~0.08 ms more CPU a probe; it may be changed between probes.
    """

    def __init__(
        self,
        *,
        user_agent: str = "sentinel-uptime/0.1",
        ssl_context: ssl.SSLContext | None = None,
        precise_latency: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.precise_latency = precise_latency
        self._given_ssl = ssl_context
        self._given_resolver = resolver
        self._resolver: Resolver | None = None
        self._contexts: TlsContexts | None = None
        self._started = False
        # A site's first hop by its name, with what it was worked out from (a reload may change
        # the URL or the headers): bounded by the configured sites (`forget` at removal).
        self._first_hops: dict[str, tuple[tuple[object, ...], _Hop]] = {}

    kind = "http"
    schemes = ("http", "https")

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> Self:
        return cls(
            user_agent=settings.user_agent,
            ssl_context=settings.ssl_context,
            precise_latency=settings.precise_latency,
            resolver=settings.resolver,
        )

    def set_precise_latency(self, on: bool) -> None:
        self.precise_latency = on

    async def start(self) -> None:
        if self._started:
            return
        # The system trust store (~2.5 MiB, ~20 ms to load) is loaded by the first https probe,
        # before its clock starts (see probe): a daemon of plain-HTTP sites never needs it.
        self._contexts = TlsContexts(self._given_ssl)
        self._resolver = self._given_resolver or Resolver()
        self._started = True

    async def close(self) -> None:
        if self._resolver is not None and self._resolver is not self._given_resolver:
            self._resolver.close()
        self._started = False

    # -------------------------------------------------------------- probe

    async def probe(self, site: SiteConfig) -> ProbeResult:
        """Probe `site` once. Never raises (except on cancellation): every failure is a result."""
        if self._contexts is not None and site.target[:6].lower() == "https:":
            self._contexts.warm(site.tls_verify)  # once: not charged to the probe's time
        started_at = time.time()
        t0 = time.perf_counter()
        probe = _Probe()
        if not self._started:
            return _failure("error", "prober not started", started_at, t0, probe)
        deadline = asyncio.timeout(site.timeout)
        try:
            async with deadline:
                conn = await self._fetch(site, probe)
        except TimeoutError:
            if not deadline.expired():  # an OSError subclass from the socket, not the deadline
                return _failure("connect", "connection timed out", started_at, t0, probe)
            return _failure(
                "timeout",
                f"{_stage_text(probe)} within {site.timeout:g}s",
                started_at,
                t0,
                probe,
                status=_status(probe),
            )
        except _VerdictError as fail:
            return _failure(fail.reason, fail.message, started_at, t0, probe, status=_status(probe))
        except Exception as exc:  # a probe never raises into the scheduler
            message = f"{type(exc).__name__}: {exc}"
            return _failure("error", message, started_at, t0, probe, status=_status(probe))
        return _judge(site, conn, probe, started_at, t0)

    async def _fetch(self, site: SiteConfig, probe: _Probe) -> ResponseProtocol:
        url = site.target
        method = site.method.upper()
        extra = site.headers
        auth: str | None = None  # from the URL's user info; kept within its origin
        limit = site.max_redirects
        for redirects in range(limit + 1):
            hop = self._first_hop(site) if not redirects else None
            if hop is None:
                parts, host, port = _url_parts(url, redirected=bool(redirects))
                if parts.username is not None:
                    auth = _basic_auth(parts)
                try:
                    hop = self._hop(
                        site, method, parts, host=host, port=port, extra=extra, auth=auth
                    )
                except ConnectError as fail:  # a host name that is not valid IDNA
                    raise _VerdictError(fail.reason, fail.message) from None
            auth = hop.auth
            conn = await self._exchange(site, probe=probe, method=method, hop=hop)
            if not conn.redirect:
                return conn
            probe.conn = None  # a failure from here on has no final status
            if redirects == limit:  # `limit` followed, this one is too many
                break
            if (conn.status == 303 and method != "HEAD") or (
                conn.status in (301, 302) and method == "POST"
            ):
                method = "GET"
            location = conn.location or ""
            try:
                new_url = urljoin(url, location)
            except ValueError:
                raise _VerdictError(
                    "redirects", f"redirect to an invalid or non-HTTP location: {location}"
                ) from None
            if _origin(new_url) != _origin(url):  # credentials stay with their origin
                auth = None
                extra = tuple(
                    (k, v) for k, v in extra if k.lower() not in ("authorization", "cookie")
                )
            url = new_url
        raise _VerdictError("redirects", f"too many redirects (limit {limit})")

    async def _exchange(
        self,
        site: SiteConfig,
        *,
        probe: _Probe,
        method: str,
        hop: _Hop,
    ) -> ResponseProtocol:
        """One request/response on a fresh connection."""
        loop = asyncio.get_running_loop()
        probe.stage = "connect"
        probe.conn = None
        conn = ResponseProtocol(
            loop.create_future(),
            limit=site.max_body_bytes,
            keep_body=site.accepts_status if site.needs_body else None,
            head_request=method == "HEAD",
            follow_redirects=site.follow_redirects,
            needle=site.body_contains,
        )
        transport: asyncio.Transport | None = None
        try:
            # The connection side (names, addresses, TLS) lives in connect.py.
            host, where = hop.host, hop.where
            assert self._resolver is not None and self._contexts is not None
            transport, late = await open_connection(
                lambda: conn,
                hop.dial_host,
                hop.dial_port,
                phases=probe,
                resolver=self._resolver,
                where=where,
            )
            if hop.https:
                context = self._contexts.get(
                    verify=site.tls_verify,
                    ca_file=site.ca_file,
                    client_cert=site.client_cert,
                    client_key=site.client_key,
                    now=time.monotonic(),
                )
                transport = await start_tls(
                    transport, conn, context, server_hostname=host, where=where, phases=probe
                )
                conn.transport = transport
                probe.tls_expiry, probe.tls_expiry_subject = chain_expiry(transport) or (
                    None,
                    None,
                )
            else:
                probe.tls_expiry = probe.tls_expiry_subject = None

            probe.stage = "response"
            probe.conn = conn
            request = hop.request
            stamp = RxStamp() if self.precise_latency and not hop.https else None
            if stamp is not None and not stamp.arm(loop, transport, conn.socket_error):
                stamp = None
            transport.write(request)
            sent = time.perf_counter()
            try:
                await conn.done
            finally:
                if stamp is not None:
                    stamp.disarm()
            first = conn.first_at if conn.first_at is not None else conn.end_at
            if stamp is not None and stamp.at is not None and sent <= stamp.at <= first:
                # The kernel saw the first byte before this process got to it: that wait is
                # sentinel's scheduling, not the site's latency.
                conn.end_at -= first - stamp.at
                first = conn.first_at = stamp.at
            probe.processing = _add(probe.processing, first - sent)
            probe.transfer = _add(probe.transfer, conn.end_at - first)
            conn.end_at -= late  # (the total is end_at - start: without the connect's wait)
            if conn.error is not None:
                raise _VerdictError(*conn.error)
            return conn
        except ConnectError as fail:
            raise _VerdictError(fail.reason, fail.message) from None
        finally:
            if transport is not None:
                transport.abort()

    def _first_hop(self, site: SiteConfig) -> _Hop | None:
        """The site's first hop, kept; None when its URL is invalid (the caller says why)."""
        key = (site.target, site.method, site.headers, site.connect_to, self.user_agent)
        kept = self._first_hops.get(site.name)
        hop = kept[1] if kept is not None and kept[0] == key else None
        if hop is None:
            try:
                parts, host, port = _url_parts(site.target, redirected=False)
                auth = _basic_auth(parts) if parts.username is not None else None
                hop = self._hop(
                    site,
                    site.method.upper(),
                    parts,
                    host=host,
                    port=port,
                    extra=site.headers,
                    auth=auth,
                )
            except (_VerdictError, ConnectError):
                return None
            if len(self._first_hops) >= MAX_FIRST_HOPS:
                self._first_hops.clear()  # a last bound (sites are forgotten at removal)
            self._first_hops[site.name] = (key, hop)
        return hop

    def forget(self, site: str) -> None:
        self._first_hops.pop(site, None)

    def _hop(
        self,
        site: SiteConfig,
        method: str,
        parts: SplitResult,
        *,
        host: str,
        port: int,
        extra: tuple[tuple[str, str], ...],
        auth: str | None,
    ) -> _Hop:
        """Raises ConnectError for a host name that is not valid IDNA."""
        host = wire_host(host)
        dial = dial_target(site.connect_to, site.target, host, port)
        where = host_port(host, port)
        if dial != (host, port):
            where = f"{where} (connect_to {host_port(*dial)})"
        request = self._request(
            method=method, parts=parts, host=host, port=port, extra=extra, auth=auth
        )
        https = parts.scheme == "https"
        return _Hop(
            https=https, host=host, port=port, auth=auth, dial=dial, where=where, request=request
        )

    def _request(
        self,
        *,
        method: str,
        parts: SplitResult,
        host: str,
        port: int,
        extra: tuple[tuple[str, str], ...],
        auth: str | None,
    ) -> bytes:
        path = _quote(parts.path or "/")
        if parts.query:
            path += "?" + _quote(parts.query)
        given = {name.lower() for name, _ in extra}
        lines = [f"{method} {path} HTTP/1.1"]
        if "host" not in given:
            shown = host.encode("idna").decode("ascii") if not host.isascii() else host
            if ":" in shown:
                shown = f"[{shown}]"
            default = 443 if parts.scheme == "https" else 80
            lines.append(f"Host: {shown}" if port == default else f"Host: {shown}:{port}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {self.user_agent}")
        if "accept" not in given:
            lines.append("Accept: */*")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: gzip, deflate")
        if auth is not None and "authorization" not in given:
            lines.append(f"Authorization: {auth}")
        if method not in _NO_BODY_METHODS and "content-length" not in given:
            lines.append("Content-Length: 0")
        lines.append("Connection: close")
        lines.extend(f"{name}: {value}" for name, value in extra if name.lower() != "connection")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8")


# ------------------------------------------------------------------ helpers


def clean_fast(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`clean_message`, with a fast path for the common case it would return unchanged."""
    if (
        len(text) <= limit
        and text.isascii()
        and text.isprintable()
        and "  " not in text
        and text[:1] != " "
        and text[-1:] != " "
    ):
        return text
    return clean_message(text, limit)


def _quote(text: str) -> str:
    """`quote(text, safe=_PATH_SAFE)`, without its cost when it would change nothing."""
    return text if _QUOTED_ALREADY.match(text) else quote(text, safe=_PATH_SAFE)


def _url_parts(url: str, *, redirected: bool) -> tuple[SplitResult, str, int]:
    """(parts, host, port) of an http(s) URL; a verdict when it is not one."""
    host: str | None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
        if port is None:
            port = 443 if parts.scheme == "https" else 80
    except ValueError:
        host = None
    if host is None or parts.scheme not in ("http", "https") or not port:
        if redirected:
            raise _VerdictError("redirects", f"redirect to an invalid or non-HTTP location: {url}")
        raise _VerdictError("error", f"invalid URL {url!r}")
    return parts, host, port


def _basic_auth(parts: SplitResult) -> str:
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname, parts.port
    except ValueError:
        return "", None, None


def _stage_text(probe: _Probe) -> str:
    stage = probe.stage
    if stage == "response":
        conn = probe.conn
        return "body not complete" if conn is not None and conn.head_done else "no response"
    if stage == "tls":
        return "no TLS handshake"
    return "no connection"


def _status(probe: _Probe) -> int:
    conn = probe.conn
    return conn.status if conn is not None and conn.head_done else 0


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        if len(_PATTERNS) >= 256:  # bounded: the config's patterns, not per probe
            _PATTERNS.clear()
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


# "HTTP 200 OK" and the like, one string per (status, reason phrase): a site keeps its last few
# results, and 1,000 sites held ~4,700 equal copies (~270 KiB). Bounded like _PATTERNS.
_OK_MESSAGES: dict[tuple[int, str], str] = {}


def _ok_message(status: int, raw_phrase: str) -> str:
    key = (status, raw_phrase)
    message = _OK_MESSAGES.get(key)
    if message is None:
        phrase = clean_fast(raw_phrase, limit=60)  # the server's words: keep them short
        message = clean_fast(f"HTTP {status} {phrase}")
        if len(raw_phrase) <= 60:  # (a long phrase is not kept as a key)
            if len(_OK_MESSAGES) >= 256:
                _OK_MESSAGES.clear()
            _OK_MESSAGES[key] = message
    return message


def _judge(
    site: SiteConfig, conn: ResponseProtocol, probe: _Probe, started_at: float, t0: float
) -> ProbeResult:
    status = conn.status
    total = conn.end_at - t0
    reason, message = "ok", _ok_message(status, conn.phrase)
    if not site.accepts_status(status):
        reason = "status"
        message = f"{message} (expected {describe_statuses(site.expect_status)})"
    elif site.needs_body and not conn.matched:
        # Judged on the first max_body_bytes decoded bytes: a match there passes, even when
        # the body goes on past the limit.
        text = decode_text(conn.body, charset(conn.content_type))
        if site.body_contains is not None and site.body_contains not in text:
            reason, message = "body", f"body does not contain {site.body_contains!r}"
        elif site.body_regex is not None and not _compile(site.body_regex).search(text):
            reason, message = "body", f"body does not match /{site.body_regex}/"
        if reason == "body" and conn.too_large:
            reason = "body_too_large"
            kept = min(conn.count, site.max_body_bytes)
            message = f"{conn.too_large_text}: {message} in its first {kept} bytes"
    if reason == "ok" and site.max_response_time is not None and total > site.max_response_time:
        reason = "slow"
        message = f"response took {total:.2f}s (limit {site.max_response_time:g}s)"
    return ProbeResult(
        ok=reason == "ok",
        reason=reason,
        message=clean_fast(message),
        started_at=started_at,
        total=total,
        status=status,
        dns=probe.dns,
        connect=probe.connect,
        tls=probe.tls,
        processing=probe.processing,
        transfer=probe.transfer,
        tls_expiry=probe.tls_expiry,
        tls_expiry_subject=probe.tls_expiry_subject,
    )


def _failure(
    reason: str,
    message: str,
    started_at: float,
    t0: float,
    probe: _Probe,
    *,
    status: int = 0,
) -> ProbeResult:
    return ProbeResult(
        ok=False,
        reason=reason,
        message=clean_fast(message),
        started_at=started_at,
        total=time.perf_counter() - t0,
        status=status,
        dns=probe.dns,
        connect=probe.connect,
        tls=probe.tls,
        processing=probe.processing,
    )
