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
import socket
import ssl
import time
from typing import Any, Final, Self
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

from sentinel.config import SiteConfig
from sentinel.probes.base import Probe, ProbeSettings, register
from sentinel.probes.common import (
    MESSAGE_LIMIT,
    clean_message,
    der_not_after,
    describe_statuses,
    host_port,
)
from sentinel.probes.response import ResponseProtocol, charset, decode_text
from sentinel.probes.result import ProbeResult
from sentinel.probes.rxstamp import RxStamp, handshake_seconds

_NO_BODY_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"))
_PATH_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"  # keep reserved characters and existing escapes


class _VerdictError(Exception):
    """A probe verdict raised from deep inside: reason code and human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------ the prober


class _Probe:
    """Per-probe state: phase times (summed over hops) and where the probe is."""

    __slots__ = ("conn", "connect", "dns", "processing", "stage", "tls", "tls_expiry", "transfer")

    def __init__(self) -> None:
        self.dns: float | None = None
        self.connect: float | None = None
        self.tls: float | None = None
        self.processing: float | None = None
        self.transfer: float | None = None
        self.tls_expiry: float | None = None
        self.stage = "connect"
        self.conn: ResponseProtocol | None = None  # the current hop's protocol


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


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
    ) -> None:
        self.user_agent = user_agent
        self.precise_latency = precise_latency
        self._given_ssl = ssl_context
        self._verify: ssl.SSLContext | None = None
        self._no_verify: ssl.SSLContext | None = None
        self._started = False

    kind = "http"
    schemes = ("http", "https")

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> Self:
        return cls(
            user_agent=settings.user_agent,
            ssl_context=settings.ssl_context,
            precise_latency=settings.precise_latency,
        )

    def set_precise_latency(self, on: bool) -> None:
        self.precise_latency = on

    async def start(self) -> None:
        if self._started:
            return
        self._verify = self._given_ssl or ssl.create_default_context()
        no_verify = ssl.create_default_context()
        no_verify.check_hostname = False
        no_verify.verify_mode = ssl.CERT_NONE
        self._no_verify = no_verify
        self._started = True

    async def close(self) -> None:
        self._started = False

    # -------------------------------------------------------------- probe

    async def probe(self, site: SiteConfig) -> ProbeResult:
        """Probe `site` once. Never raises (except on cancellation): every failure is a result."""
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
            try:
                parts = urlsplit(url)
                host = parts.hostname
                port = parts.port
                if port is None:
                    port = 443 if parts.scheme == "https" else 80
            except ValueError:
                host = None
            if host is None or parts.scheme not in ("http", "https") or not port:
                if redirects:
                    raise _VerdictError(
                        "redirects", f"redirect to an invalid or non-HTTP location: {url}"
                    )
                raise _VerdictError("error", f"invalid URL {url!r}")
            if parts.username is not None:
                auth = _basic_auth(parts)
            conn = await self._exchange(
                site,
                probe=probe,
                method=method,
                parts=parts,
                host=host,
                port=port,
                extra=extra,
                auth=auth,
            )
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
        parts: SplitResult,
        host: str,
        port: int,
        extra: tuple[tuple[str, str], ...],
        auth: str | None,
    ) -> ResponseProtocol:
        """One request/response on a fresh connection."""
        loop = asyncio.get_running_loop()
        where = host_port(host, port)
        probe.stage = "connect"
        probe.conn = None
        addresses = _literal(host)
        if addresses is None:
            started = time.perf_counter()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                probe.dns = _add(probe.dns, time.perf_counter() - started)
                detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise _VerdictError("dns", f"cannot resolve {host}: {detail}") from None
            probe.dns = _add(probe.dns, time.perf_counter() - started)
            addresses = [(info[0], _numeric_host(info[4])) for info in infos]
            if not addresses:
                raise _VerdictError("dns", f"cannot resolve {host}: no addresses")

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
            started = time.perf_counter()
            errors: list[OSError] = []
            attempt = started
            for family, address in addresses:
                attempt = time.perf_counter()
                try:  # host and port, not sock=: uvloop connects in C this way (~0.3 ms less)
                    transport, _ = await loop.create_connection(
                        lambda: conn, address, port, family=family
                    )
                except OSError as exc:
                    errors.append(exc)
                    continue
                break
            if transport is None:
                raise _connect_failure(errors, where)
            connected = time.perf_counter()
            # The kernel's handshake time, where it has one: how late this process learned of
            # the connection (a busy loop, CPU steal) is sentinel's time, not the site's.
            handshake = handshake_seconds(transport)
            late = 0.0
            if handshake is not None and handshake <= connected - attempt:
                late = connected - attempt - handshake
            probe.connect = _add(probe.connect, connected - started - late)

            if parts.scheme == "https":
                probe.stage = "tls"
                started = time.perf_counter()
                context = self._verify if site.tls_verify else self._no_verify
                assert context is not None
                try:
                    tls = await loop.start_tls(transport, conn, context, server_hostname=host)
                except ssl.SSLCertVerificationError as exc:
                    detail = exc.verify_message or exc.reason or str(exc)
                    raise _VerdictError("tls", f"certificate not accepted: {detail}") from None
                except ssl.SSLError as exc:
                    detail = _os_text(exc)
                    raise _VerdictError(
                        "tls", f"TLS handshake with {where} failed: {detail}"
                    ) from None
                except ConnectionResetError:
                    raise _VerdictError("connect_reset", f"connection reset by {where}") from None
                except OSError as exc:
                    raise _VerdictError(
                        "connect", f"cannot connect to {where}: {_os_text(exc)}"
                    ) from None
                if tls is None:
                    raise _VerdictError("tls", f"TLS handshake with {where} failed")
                transport = tls
                conn.transport = tls
                probe.tls = _add(probe.tls, time.perf_counter() - started)
                probe.tls_expiry = _peer_cert_expiry(tls)
            else:
                probe.tls_expiry = None

            probe.stage = "response"
            probe.conn = conn
            request = self._request(
                method=method, parts=parts, host=host, port=port, extra=extra, auth=auth
            )
            stamp = RxStamp() if self.precise_latency and parts.scheme == "http" else None
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
        finally:
            if transport is not None:
                transport.abort()

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
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE)
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


def _literal(host: str) -> list[tuple[int, str]] | None:
    """[(family, host)] for an IP literal (no DNS), else None. inet_pton: ipaddress is slower."""
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    else:
        return [(socket.AF_INET, host)]
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    return [(socket.AF_INET6, host)]


def _numeric_host(sockaddr: tuple[Any, ...]) -> str:
    """The IP of a getaddrinfo socket address, with the IPv6 scope (link-local) if any."""
    if len(sockaddr) == 4 and sockaddr[3]:
        return f"{sockaddr[0]}%{sockaddr[3]}"
    return str(sockaddr[0])


def _clean(text: str, limit: int = MESSAGE_LIMIT) -> str:
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


def _basic_auth(parts: SplitResult) -> str:
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname, parts.port
    except ValueError:
        return "", None, None


def _connect_failure(errors: list[OSError], where: str) -> _VerdictError:
    if errors and all(isinstance(e, ConnectionRefusedError) for e in errors):
        return _VerdictError("connect_refused", f"connection refused by {where}")
    last = errors[-1] if errors else OSError("no address")
    if isinstance(last, ConnectionResetError):
        return _VerdictError("connect_reset", f"connection reset by {where}")
    return _VerdictError("connect", f"cannot connect to {where}: {_os_text(last)}")


def _os_text(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _peer_cert_expiry(transport: asyncio.BaseTransport) -> float | None:
    """The served leaf certificate's notAfter (epoch seconds)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    try:
        cert = ssl_object.getpeercert()
        if cert and isinstance(not_after := cert.get("notAfter"), str):
            return float(ssl.cert_time_to_seconds(not_after))
        der = ssl_object.getpeercert(binary_form=True)  # unverified: no parsed fields
    except (ValueError, ssl.SSLError):
        return None
    return der_not_after(der) if der else None


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


def _judge(
    site: SiteConfig, conn: ResponseProtocol, probe: _Probe, started_at: float, t0: float
) -> ProbeResult:
    status = conn.status
    total = conn.end_at - t0
    phrase = _clean(conn.phrase, limit=60)  # the server's words: keep them short
    reason, message = "ok", f"HTTP {status} {phrase}"
    if not site.accepts_status(status):
        reason = "status"
        message = f"HTTP {status} {phrase} (expected {describe_statuses(site.expect_status)})"
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
        message=_clean(message),
        started_at=started_at,
        total=total,
        status=status,
        dns=probe.dns,
        connect=probe.connect,
        tls=probe.tls,
        processing=probe.processing,
        transfer=probe.transfer,
        tls_expiry=probe.tls_expiry,
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
        message=_clean(message),
        started_at=started_at,
        total=time.perf_counter() - t0,
        status=status,
        dns=probe.dns,
        connect=probe.connect,
        tls=probe.tls,
        processing=probe.processing,
    )
