"""A lean HTTP/1.1 probe: one `asyncio.Protocol` per probe, no client framework.

`LeanHttpProber` gives the same verdicts (reason codes, message styles, limits) as `HttpProber`
at a fraction of its CPU cost, and times the TLS handshake as a phase of its own. Every probe
opens a fresh connection and sends one request with `Connection: close`:

    dns        getaddrinfo (None for an IP literal)
    connect    TCP connect
    tls        TLS handshake (https only)
    processing request written -> first byte of the response (its arrival as the kernel
               stamped it, with `precise_latency`, for plain HTTP on Linux: see rxstamp.py)
    transfer   first byte -> last byte read

With redirects the phases are summed over the hops. The response is parsed incrementally from
a bytearray with `find`/`split` (no per-byte Python loops): the head is capped at 64 KiB (and at
aiohttp's 8190 bytes per line and 128 header fields), chunked framing is parsed chunk by chunk,
gzip/deflate bodies are inflated with `max_length` in steps of at most 64 KiB, so neither a
flood nor a compression bomb can make a probe hold more than `max_body_bytes` (+ one step).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

from sentinel.config import SiteConfig
from sentinel.probes.common import (
    MAX_INTERIM_RESPONSES,
    MAX_REDIRECTS,
    MESSAGE_LIMIT,
    AsyncLifecycle,
    clean_message,
    der_not_after,
    describe_statuses,
    host_port,
)
from sentinel.probes.result import ProbeResult
from sentinel.probes.rxstamp import RxStamp, handshake_seconds

HEAD_LIMIT: Final = 64 * 1024  # bytes of one response head (status line + header fields)
LINE_LIMIT: Final = 8190  # bytes of one head line, as aiohttp's parser
MAX_HEADER_FIELDS: Final = 128  # header fields of one head, as aiohttp's parser
MAX_INTERIM: Final = MAX_INTERIM_RESPONSES  # 1xx responses before the final one, as HttpProber
CHUNK_LINE_LIMIT: Final = 4096  # bytes of one chunk-size line (with extensions)
TRAILER_LIMIT: Final = 64 * 1024  # bytes of the chunked trailer section
INFLATE_STEP: Final = 64 * 1024  # decoded bytes produced per zlib call
# A chunked body may have at most max_body_bytes / MIN_AVERAGE_CHUNK + 1024 chunks (65,560 for
# 1 MiB); more count as a body over the read limit (see _over_chunked).
MIN_AVERAGE_CHUNK: Final = 16
# Chunks decoded per event-loop callback. One read can hold 256 KiB of 1-byte chunks (~43,000 of
# them, 40-80 ms of Python); past this many, reading pauses and the rest is decoded in later
# callbacks, so other probes' timers and the scheduler run in between (~2 ms per slice).
CHUNKS_PER_SLICE: Final = 1024

_REDIRECT_CODES: Final = frozenset((301, 302, 303, 307, 308))
_NO_BODY_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"))
_STATUS_RE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CHUNK_SIZE_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\r\n]{0,4000})?\r\n")
_DIGITS_RE: Final = re.compile(rb"[0-9]{1,18}")
_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEADER_BLOCK_RE: Final = re.compile(rb"(?:" + _TOKEN + rb":[^\r\n\x00]*\r\n)*")
_TRACKED_FIELD_RE: Final = re.compile(
    rb"^(content-length|transfer-encoding|content-encoding|content-type|location|uri):"
    rb"[ \t]*([^\r\n]*?)[ \t]*\r$",
    re.IGNORECASE | re.MULTILINE,
)
_TRACKED: Final = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"content-encoding",
        b"location",
        b"uri",
        b"content-type",
    )
)
_CHARSET_RE: Final = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_PATH_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"  # keep reserved characters and existing escapes

# Body framing of the current response.
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)
# Chunked sub-states.
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class _VerdictError(Exception):
    """A probe verdict raised from deep inside: reason code and human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------ the response protocol


class _Inflater:
    """gzip / deflate (zlib-wrapped or raw, decided by the first two bytes) decoding."""

    __slots__ = ("_decomp", "_pending", "_wbits")

    def __init__(self, encoding: bytes) -> None:
        self._wbits = 16 + zlib.MAX_WBITS if encoding in (b"gzip", b"x-gzip") else 0
        self._decomp: zlib._Decompress | None = None
        self._pending = b""
        if self._wbits:
            self._decomp = zlib.decompressobj(self._wbits)

    def start(self, data: bytes) -> bytes | None:
        """For deflate: the input, once the wrapper (zlib or raw) is known; None if not yet."""
        if self._decomp is not None:
            return data
        data = self._pending + data
        if len(data) < 2:
            self._pending = data
            return None
        self._pending = b""
        zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        self._decomp = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        assert self._decomp is not None
        return self._decomp.decompress(data, max_length)

    def tail(self) -> bytes:
        assert self._decomp is not None
        return self._decomp.unconsumed_tail


class _ResponseProtocol(asyncio.Protocol):
    """Reads one HTTP/1.x response (after any 1xx interim ones) and sets `done`.

    The outcome is left in attributes: `error` ((reason, message) or None), `status`, `phrase`,
    `location`, `charset`, `body` (kept only if `keep_body`), `too_large`, and the
    perf_counter times `first_at` (first byte) and `end_at` (last byte / verdict).
    """

    def __init__(
        self,
        done: asyncio.Future[None],
        *,
        limit: int,
        keep_body: Callable[[int], bool] | None,
        head_request: bool,
        follow_redirects: bool,
    ) -> None:
        self.done = done
        self.limit = limit
        self._keep_if = keep_body  # keep the body when this accepts the final status
        self.keep_body = False
        self.head_request = head_request
        self.follow_redirects = follow_redirects
        self.transport: asyncio.BaseTransport | None = None
        self.error: tuple[str, str] | None = None
        self.finished = False
        self.first_at: float | None = None
        self.end_at = 0.0
        self.head_done = False  # the final (non-1xx) head is parsed
        self.interim = 0
        self.status = 0
        self.phrase = ""
        self.location: str | None = None
        self.content_type: bytes | None = None
        self.redirect = False  # a redirect to follow: the body was not read
        self.too_large = False
        self.count = 0  # decoded body bytes seen
        self.body = bytearray()
        self._buf = bytearray()  # the head being read, or a partial chunked-framing line
        self._scan_from = 0
        self._framing = _NONE
        self._left = 0  # bytes left of the Content-Length body or of the current chunk
        self._chunk_state = _SIZE
        self._trailer_bytes = 0
        self._chunks_left = limit // MIN_AVERAGE_CHUNK + 1024
        self.chunk_limit_hit = False
        self._inflater: _Inflater | None = None
        self._backlog: bytearray | None = None  # chunked data read, not yet decoded (paused)

    # -------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        if self._backlog is not None:  # reading is paused; a transport may still hand us more
            self._backlog += data
            return
        try:
            if self.head_done:
                self._body_data(data)
            else:
                self._head_data(data)
        except zlib.error as exc:
            self._fail("protocol", f"incomplete or malformed response body: {exc}")

    def eof_received(self) -> bool | None:
        self._drain_backlog()
        self._at_eof(None)
        return None  # let the transport close itself

    def socket_error(self, exc: OSError) -> None:
        """An error read from the socket outside the transport (see rxstamp.py)."""
        self._backlog = None
        self._at_eof(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        # With reading paused, the connection ends only by our abort (the probe is over) or a
        # socket error: what is still queued cannot change the verdict, so it is dropped.
        self._backlog = None
        self._at_eof(exc)

    # -------------------------------------------------------------- outcome

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.end_at = time.perf_counter()
            if not self.done.done():
                self.done.set_result(None)

    def _fail(self, reason: str, message: str) -> None:
        if not self.finished:
            self.error = (reason, message)
            self._finish()

    def _at_eof(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if not self.head_done:  # as aiohttp: no complete response is a hang-up
            if isinstance(exc, ConnectionResetError):
                self._fail("connect_reset", "connection reset by the server")
            else:
                self._fail(
                    "connect_reset", "server closed the connection without a complete response"
                )
        elif self._framing == _UNTIL_CLOSE and exc is None:
            self._finish()
        elif self._framing == _LENGTH:
            self._fail(
                "protocol",
                f"incomplete or malformed response body: {self._left} bytes of the "
                "Content-Length missing",
            )
        else:
            detail = "connection reset" if exc is not None else "connection closed"
            self._fail("protocol", f"incomplete or malformed response body: {detail}")

    # -------------------------------------------------------------- the head

    def _head_data(self, data: bytes) -> None:
        buf = self._buf
        view: bytes | bytearray = data  # all unparsed bytes; copied into buf only when needed
        if buf:
            buf += data
            view = buf
        while True:
            if len(view) >= 5 and not view.startswith(b"HTTP/"):
                first = bytes(view[:40]).split(b"\n", 1)[0]
                self._fail("protocol", "malformed response: not HTTP: " + first.decode("latin-1"))
                return
            # The blank line ending the head: CRLF as the RFC says, or bare LF as aiohttp takes.
            crlf = view.find(b"\n\r\n", self._scan_from)
            lf = view.find(b"\n\n", self._scan_from)
            if crlf < 0 and lf < 0:
                if len(view) > HEAD_LIMIT:
                    self._fail("protocol", "malformed response: response headers too large")
                    return
                if view is not buf:
                    buf += view
                self._scan_from = max(0, len(buf) - 2)
                return
            end, skip = (crlf, 3) if lf < 0 or 0 <= crlf < lf else (lf, 2)
            if end > HEAD_LIMIT:
                self._fail("protocol", "malformed response: response headers too large")
                return
            head = bytes(view[:end])
            rest = bytes(view[end + skip :])
            buf.clear()
            self._scan_from = 0
            if not self._parse_head(head) or self.finished:
                return  # failed, or finished without a body
            if self.head_done:
                if rest:
                    self._body_data(rest)
                return
            if not rest:  # after an interim response: another head may follow
                return
            view = rest

    def _parse_head(self, head: bytes) -> bool:
        """Parse one head (without its final line break); True when the caller should go on
        (to the body, or to the next head after an interim response)."""
        # `head` ends where the blank line starts: with the CR of the last CRLF, normally.
        status_line, crlf, block = (head + b"\n").partition(b"\r\n")
        match = _STATUS_RE.fullmatch(status_line)
        if (
            crlf
            and match
            and len(status_line) <= LINE_LIMIT
            and len(block) < LINE_LIMIT
            and _HEADER_BLOCK_RE.fullmatch(block)
        ):
            # The common case, checked by one regex: CRLF lines of `token:value`, no NUL, no
            # bare CR or LF, no folding, nothing near the length limits.
            count = block.count(b"\r\n")
            fields = [(found[1].lower(), found[2]) for found in _TRACKED_FIELD_RE.finditer(block)]
        else:
            parsed = self._parse_head_slowly(head)
            if parsed is None:
                return False
            match, count, fields = parsed
        if count > MAX_HEADER_FIELDS:
            self._fail("protocol", f"malformed response: more than {MAX_HEADER_FIELDS} headers")
            return False

        status = int(match[2])
        if 100 <= status <= 199 and status != 101:
            self.interim += 1
            if self.interim > MAX_INTERIM:
                self._fail(
                    "protocol", f"malformed response: more than {MAX_INTERIM} interim responses"
                )
                return False
            return True

        length: int | None = None
        chunked = False
        transfer_coded = False
        encoding = b""
        location: bytes | None = None
        uri: bytes | None = None
        for name, value in fields:
            if name == b"content-length":
                if length is not None or not _DIGITS_RE.fullmatch(value):
                    self._fail("protocol", "malformed response: bad or repeated Content-Length")
                    return False
                length = int(value)
            elif name == b"transfer-encoding":
                transfer_coded = True
                chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
            elif name == b"content-encoding":
                encoding = value.lower()
            elif name == b"content-type":
                self.content_type = value
            elif name == b"location":
                location = value
            else:  # uri: what aiohttp takes when there is no Location
                uri = value
        if transfer_coded and length is not None:
            self._fail("protocol", "malformed response: both Content-Length and Transfer-Encoding")
            return False

        self.head_done = True
        self.status = status
        self.keep_body = self._keep_if is not None and self._keep_if(status)
        if match[3]:
            self.phrase = match[3].decode("utf-8", "replace")
        where = location or uri
        if where:
            self.location = where.decode("utf-8", "replace")
            if self.follow_redirects and status in _REDIRECT_CODES:
                self.redirect = True  # the body of a redirect is never read
                self._finish()
                return False
        if self.head_request or status in (101, 204, 304) or (length == 0 and not transfer_coded):
            self._finish()
            return False
        if encoding in (b"gzip", b"x-gzip", b"deflate"):
            self._inflater = _Inflater(encoding)
        if chunked:
            self._framing = _CHUNKED
        elif transfer_coded or length is None:
            self._framing = _UNTIL_CLOSE
        else:
            self._framing = _LENGTH
            self._left = length
        return True

    def _bad_status_line(self, line: bytes) -> bool:
        shown = line[:80].decode("latin-1")
        self._fail("protocol", f"malformed response: bad status line {shown!r}")
        return False

    def _parse_head_slowly(
        self, head: bytes
    ) -> tuple[re.Match[bytes], int, list[tuple[bytes, bytes]]] | None:
        """Everything the fast path leaves: bare LF line ends, folded lines, long lines, and
        the errors (with a message naming the problem). None when the head is malformed."""
        if head.endswith(b"\r"):
            head = head[:-1]
        crlf = head.count(b"\r\n")
        if head.count(b"\r") != crlf:
            self._fail("protocol", "malformed response: bare CR in the response head")
            return None
        if head.count(b"\n") == crlf:
            lines = head.split(b"\r\n")
        else:  # some or all lines end in a bare LF
            lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
        match = _STATUS_RE.fullmatch(lines[0])
        if match is None:
            self._bad_status_line(lines[0])
            return None
        if match[3] is not None and len(match[3]) > LINE_LIMIT:
            self._fail("protocol", "malformed response: status line too long")
            return None
        fields: list[tuple[bytes, bytes]] = []
        last: tuple[bytes, bytes] | None = None  # the previous field, if it matters here
        count = 0
        for line in lines[1:]:
            if line[0] in (0x20, 0x09):  # obsolete line folding: continues the previous field
                if not count:
                    self._fail("protocol", "malformed response: folded line without a field")
                    return None
                if last is not None:
                    last = (last[0], last[1] + b" " + line.strip(b" \t"))
                    fields[-1] = last
                continue
            name, colon, value = line.partition(b":")
            value = value.strip(b" \t")
            if not colon or not _TOKEN_RE.fullmatch(name) or b"\x00" in value:
                shown = line[:60].decode("latin-1")
                self._fail("protocol", f"malformed response: bad header line {shown!r}")
                return None
            if len(name) + len(value) >= LINE_LIMIT:  # where aiohttp (llhttp) draws the line
                self._fail("protocol", f"malformed response: header longer than {LINE_LIMIT}")
                return None
            count += 1
            name = name.lower()
            if name in _TRACKED:
                last = (name, value)
                fields.append(last)
            else:
                last = None
        return match, count, fields

    # -------------------------------------------------------------- the body

    def _body_data(self, data: bytes) -> None:
        framing = self._framing
        if framing == _LENGTH:
            left = self._left
            if len(data) >= left:
                self._left = 0
                self._decoded(data[:left] if len(data) > left else data)
                self._finish()  # anything after the declared length is ignored
            else:
                self._left = left - len(data)
                self._decoded(data)
        elif framing == _CHUNKED:
            self._chunked(data)
        else:
            self._decoded(data)

    def _chunked(self, data: bytes, slice_budget: int | None = CHUNKS_PER_SLICE) -> None:
        pos, size = 0, len(data)
        steps = 0
        while pos < size and not self.finished:
            steps += 1
            if slice_budget is not None and steps > slice_budget:
                self._defer(data[pos:])
                return
            if self._chunk_state == _SIZE and not self._buf:
                # Fast path, one regex call per chunk: a whole size line, and the whole chunk
                # with its CRLF when it is all here (so a body of tiny chunks stays cheap).
                found = _CHUNK_SIZE_RE.match(data, pos)
                if found is not None:
                    length = int(found[1], 16)
                    start = found.end()
                    if length == 0:
                        pos = start
                        self._chunk_state = _TRAILER
                        continue
                    self._chunks_left -= 1
                    if self._chunks_left < 0:
                        self._over_chunked()
                        return
                    end = start + length
                    if data[end : end + 2] == b"\r\n":
                        self._decoded(data[start:end])
                        pos = end + 2
                    else:
                        self._left = length
                        self._chunk_state = _DATA
                        pos = start
                    continue
            if self._chunk_state == _DATA:
                take = min(self._left, size - pos)
                self._decoded(data[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._chunk_state = _DATA_END
                continue
            # A line: chunk size, the CRLF after chunk data, or a trailer field.
            newline = data.find(b"\n", pos)
            buf = self._buf
            if newline < 0:
                buf += data[pos:]
                cap = TRAILER_LIMIT if self._chunk_state == _TRAILER else CHUNK_LINE_LIMIT
                if len(buf) > cap:
                    self._fail("protocol", "incomplete or malformed response body: bad chunk")
                return
            if buf:
                buf += data[pos:newline]
                line = bytes(buf)
                buf.clear()
            else:
                line = data[pos:newline]
            pos = newline + 1
            if not line.endswith(b"\r"):  # as aiohttp (llhttp): chunk framing needs CRLF
                self._fail("protocol", "incomplete or malformed response body: bare LF in chunk")
                return
            line = line[:-1]
            if self._chunk_state == _SIZE:
                size_text = line.split(b";", 1)[0].strip()
                if len(line) > CHUNK_LINE_LIMIT or not _HEX_RE.fullmatch(size_text):
                    shown = line[:40].decode("latin-1")
                    detail = f"bad chunk size {shown!r}"
                    self._fail("protocol", f"incomplete or malformed response body: {detail}")
                    return
                self._left = int(size_text, 16)
                self._chunk_state = _DATA if self._left else _TRAILER
                if self._left:
                    self._chunks_left -= 1
                    if self._chunks_left < 0:
                        self._over_chunked()
                        return
            elif self._chunk_state == _DATA_END:
                if line:
                    self._fail(
                        "protocol", "incomplete or malformed response body: chunk not terminated"
                    )
                    return
                self._chunk_state = _SIZE
            else:  # _TRAILER: fields until an empty line
                if not line:
                    self._finish()
                    return
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > TRAILER_LIMIT:
                    detail = "trailers too large"
                    self._fail("protocol", f"incomplete or malformed response body: {detail}")
                    return

    def _defer(self, rest: bytes) -> None:
        """Pause reading and decode `rest` in a later loop callback (see CHUNKS_PER_SLICE)."""
        self._backlog = bytearray(rest)
        # Duck-typed: uvloop's transports do not derive from asyncio.ReadTransport.
        pause = getattr(self.transport, "pause_reading", None)
        if pause is not None:
            pause()
        asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        rest, self._backlog = self._backlog, None
        if rest is None:  # drained already (the connection ended meanwhile)
            return
        if not self.finished:
            try:
                self._chunked(bytes(rest))
            except zlib.error as exc:
                self._fail("protocol", f"incomplete or malformed response body: {exc}")
        transport = self.transport
        if (
            self._backlog is None  # all decoded, no verdict yet: read on
            and not self.finished
            and transport is not None
            and not transport.is_closing()
        ):
            resume = getattr(transport, "resume_reading", None)
            if resume is not None:
                resume()

    def _drain_backlog(self) -> None:
        """Before an end of stream is judged: decode what is still queued, all at once (rare:
        with reading paused, only a TLS transport might still report an EOF)."""
        rest, self._backlog = self._backlog, None
        if rest is not None and not self.finished:
            try:
                self._chunked(bytes(rest), slice_budget=None)
            except zlib.error as exc:
                self._fail("protocol", f"incomplete or malformed response body: {exc}")

    def _over_chunked(self) -> None:
        """More chunks than the body limit allows for: treated as a body over the limit, so
        that a body of tiny chunks costs bounded CPU (~1 us per chunk)."""
        self.too_large = True
        self.chunk_limit_hit = True
        self._finish()

    def _decoded(self, data: bytes) -> None:
        """Count (and keep, if asked) body bytes after content decoding, up to the limit."""
        inflater = self._inflater
        if inflater is None:
            self._accept(data)
            return
        started = inflater.start(data)
        if started is None:
            return
        data = started
        while not self.finished:
            step = min(self.limit + 1 - self.count, INFLATE_STEP)
            out = inflater.decompress(data, step)
            self._accept(out)
            data = inflater.tail()
            if not data and len(out) < step:
                return

    def _accept(self, data: bytes) -> None:
        count = self.count + len(data)
        self.count = count
        if count > self.limit:
            self.too_large = True
            if self.keep_body:
                self.body += data[: len(data) - (count - self.limit)]
            self._finish()  # never read past the limit
        elif self.keep_body:
            self.body += data


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
        self.conn: _ResponseProtocol | None = None  # the current hop's protocol


def _add(total: float | None, value: float) -> float:
    return value if total is None else total + value


class LeanHttpProber(AsyncLifecycle):
    """Probes HTTP(S) sites with one bare asyncio protocol per probe (see the module docstring).

    Same surface as `HttpProber`: `start()`, `close()`, `probe(site)` (never raises except on
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

    async def _fetch(self, site: SiteConfig, probe: _Probe) -> _ResponseProtocol:
        url = site.target
        method = site.method.upper()
        extra = site.headers
        auth: str | None = None  # from the URL's user info; kept within its origin
        for redirects in range(MAX_REDIRECTS + 1):
            try:
                parts = urlsplit(url)
                host = parts.hostname
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                host = None
            if host is None or parts.scheme not in ("http", "https"):
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
            if redirects == MAX_REDIRECTS:  # MAX_REDIRECTS followed, this one is too many
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
        raise _VerdictError("redirects", f"too many redirects (limit {MAX_REDIRECTS})")

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
    ) -> _ResponseProtocol:
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

        conn = _ResponseProtocol(
            loop.create_future(),
            limit=site.max_body_bytes,
            keep_body=site.accepts_status if site.needs_body else None,
            head_request=method == "HEAD",
            follow_redirects=site.follow_redirects,
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


def _charset(content_type: bytes | None) -> str | None:
    if content_type is None:
        return None
    found = _CHARSET_RE.search(content_type.decode("latin-1"))
    return found[1] if found else None


def _decode(body: bytes | bytearray, charset: str | None) -> str:
    """The body as text in the server's charset, else UTF-8. Never raises: the charset comes
    from the server, and some codec names raise even with errors="replace" (`idna`, `punycode`
    on non-ASCII bytes), name no text codec at all (`rot13`, `base64`) or none at all."""
    if charset:
        try:
            if codecs.lookup(charset)._is_text_encoding:
                return body.decode(charset, errors="replace")
        except Exception:
            pass
    return body.decode("utf-8", errors="replace")


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        if len(_PATTERNS) >= 256:  # bounded: the config's patterns, not per probe
            _PATTERNS.clear()
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _judge(
    site: SiteConfig, conn: _ResponseProtocol, probe: _Probe, started_at: float, t0: float
) -> ProbeResult:
    status = conn.status
    total = conn.end_at - t0
    phrase = _clean(conn.phrase, limit=60)  # the server's words: keep them short
    reason, message = "ok", f"HTTP {status} {phrase}"
    if not site.accepts_status(status):
        reason = "status"
        message = f"HTTP {status} {phrase} (expected {describe_statuses(site.expect_status)})"
    elif site.needs_body and conn.too_large:
        reason = "body_too_large"
        message = f"body larger than {site.max_body_bytes} bytes, the read limit"
        if conn.chunk_limit_hit:
            message = (
                f"body in more chunks than the read limit allows ({site.max_body_bytes} bytes)"
            )
    elif site.needs_body:
        text = _decode(conn.body, _charset(conn.content_type))
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
