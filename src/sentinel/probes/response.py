"""Reading one HTTP/1.x response off a probe's connection: `ResponseProtocol`.

The wire format is parsed by llhttp (via `httptools`, the parser of Node.js and of aiohttp's C
path) in its strict mode: no leniency flag is ever set, so bare LF line ends, obsolete line
folding, whitespace in chunk-size lines, a Content-Length beside a Transfer-Encoding and the
like are errors (reason "protocol"). This module owns what llhttp leaves to its caller:

- limits on work, not only on output: a response head (all interim heads included, each one
  allowed HEAD_LIMIT bytes) is counted here, as llhttp has no limit of its own, and so are the
  header fields (MAX_HEADER_FIELDS) and interim 1xx responses (MAX_INTERIM_RESPONSES); the
  bytes read after the final head are bounded by `read_limit(max_body_bytes)`, so a body that
  inflates to nothing (an endless gzip comment, empty deflate blocks, huge chunk extensions)
  stops at that bound, not at the timeout;
- fairness: one read is fed to the parser FEED_SLICE (16 KiB) at a time, with reading paused and
  the rest left to a later loop callback, so a flood of tiny chunks cannot hold the event loop;
- content decoding (gzip, multi-member gzip, deflate in either wrapping), bounded output per
  zlib call, and truncated or corrupt compressed bodies as failures, never judged on part of
  the text;
- the body check's early end: with `body_contains`, reading stops as soon as the text is seen;
- the rules llhttp does not enforce: a status below 100 (`000`) and a Transfer-Encoding other
  than plain `chunked` are protocol errors (as h11 and aiohttp have them).

Every callback that asyncio or the parser calls catches what it did not expect and fails the
probe at once with reason "error" and a one-line message, instead of leaving it to the timeout.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
import zlib
from collections.abc import Callable
from typing import Final

import httptools

from sentinel.probes.common import MAX_INTERIM_RESPONSES, clean_message

HEAD_LIMIT: Final = 64 * 1024  # bytes of one response head; no per-line limit below it
MAX_HEADER_FIELDS: Final = 1000  # header fields of one head (real sites send a few dozen)
MAX_INTERIM: Final = MAX_INTERIM_RESPONSES  # 1xx responses before the final one
# Bytes read after the final head: this many times max_body_bytes, plus FRAMING_ALLOWANCE.
# A compressed body is smaller than its text, so only framing (chunk lines) or a hostile body
# gets near it; a body of 1-byte chunks is 6 bytes on the wire a byte of text.
READ_FACTOR: Final = 4
FRAMING_ALLOWANCE: Final = 64 * 1024
# A body may come in at most max_body_bytes / MIN_AVERAGE_PIECE + 1024 pieces (chunks, mostly;
# 66,560 for 1 MiB): each costs a parser callback (~1-2 us), so a body of 1-byte chunks would
# cost ~1 s of CPU before reaching the byte bound. More pieces count as a body over the limit.
MIN_AVERAGE_PIECE: Final = 16
# Bytes fed to the parser per loop callback: 16 KiB of 1-byte chunks (2,730 of them) cost
# ~3-5 ms of callbacks, so other probes' timers and the scheduler run in between.
FEED_SLICE: Final = 16 * 1024
INFLATE_STEP: Final = 64 * 1024  # decoded bytes produced per zlib call
# body_contains is looked for when the kept body has doubled since the last look (from this
# size on): the cost stays linear in the body, and a match early in a large page ends reading.
FIRST_LOOK: Final = 16 * 1024

_TRACKED: Final = {
    b"content-length": "length",
    b"transfer-encoding": "te",
    b"content-encoding": "encoding",
    b"content-type": "type",
    b"location": "location",
    b"uri": "uri",  # what aiohttp takes when there is no Location
}
_GZIP: Final = (b"gzip", b"x-gzip")
_DECODED: Final = frozenset((*_GZIP, b"deflate"))
_CHARSET_RE: Final = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)


def read_limit(max_body_bytes: int) -> int:
    """Bytes a probe reads after the final response head, at most."""
    return READ_FACTOR * max_body_bytes + FRAMING_ALLOWANCE


class _StopParsingError(Exception):
    """Raised from a parser callback to end parsing: the probe has its verdict."""


class BodyError(Exception):
    """A compressed body that cannot be decoded (corrupt, truncated)."""


class Inflater:
    """gzip (every member) / deflate (zlib-wrapped or raw, told by the first two bytes)."""

    __slots__ = ("_decomp", "_gzip", "_pending", "_trailing", "done")

    def __init__(self, encoding: bytes) -> None:
        self._gzip = encoding in _GZIP
        self._decomp: zlib._Decompress | None = None
        self._pending = b""
        self._trailing = False  # after the last gzip member: only zero padding may follow
        self.done = False  # the compressed stream ended properly
        if self._gzip:
            self._decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes, room: int, sink: Callable[[bytes], bool]) -> None:
        """Decode `data`, handing the output to `sink` in pieces of at most INFLATE_STEP bytes
        and at most `room` + 1 bytes in all; `sink` returns False to stop. Raises BodyError."""
        if self._decomp is None:  # deflate: the wrapper is known from the first two bytes
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return
            self._pending = b""
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._decomp = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        decomp = self._decomp
        try:
            while True:
                if self._trailing:  # after the end: zero padding at most (as Python's gzip)
                    if data.strip(b"\x00"):
                        raise BodyError("data after the end of the compressed body")
                    return
                if decomp.eof:
                    if not data:
                        return
                    if not (self._gzip and data[:1] == b"\x1f"):
                        self._trailing = True
                        continue
                    decomp = self._decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self.done = False  # another gzip member
                step = max(1, min(room + 1, INFLATE_STEP))
                out = decomp.decompress(data, step)
                room -= len(out)
                if decomp.eof:
                    self.done = True
                    data = decomp.unused_data
                else:
                    data = decomp.unconsumed_tail
                if out and not sink(out):
                    return
                if room < 0 or (not data and len(out) < step and not decomp.eof):
                    return
        except zlib.error as exc:
            raise BodyError(str(exc)) from None


class ResponseProtocol(asyncio.Protocol):
    """Reads one HTTP/1.x response (after any 1xx interim ones) and sets `done`.

    The outcome is left in attributes: `error` ((reason, message) or None), `status`, `phrase`,
    `location`, `content_type`, `body` (kept only if `keep_body`), `too_large` (with
    `too_large_text` saying which limit), `matched` (body_contains was seen: reading ended
    there), and the perf_counter times `first_at` (first byte) and `end_at` (last byte).
    """

    def __init__(
        self,
        done: asyncio.Future[None],
        *,
        limit: int,
        keep_body: Callable[[int], bool] | None,
        head_request: bool,
        follow_redirects: bool,
        needle: str | None = None,
    ) -> None:
        self.done = done
        self.limit = limit
        self._keep_if = keep_body  # keep the body when this accepts the final status
        self.keep_body = False
        self.head_request = head_request
        self.follow_redirects = follow_redirects
        self._needle = needle
        self._next_look = FIRST_LOOK
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
        self.too_large_text = ""
        self.matched = False
        self.count = 0  # decoded body bytes seen
        self.body = bytearray()
        self._parser = httptools.HttpResponseParser(self)
        self._head_bytes = 0  # bytes fed before the final head was complete
        self._body_bytes = 0  # bytes fed after it
        self._read_limit = read_limit(limit)
        self._pieces_left = limit // MIN_AVERAGE_PIECE + 1024
        self._fields = 0
        self._seen: dict[str, bytes] = {}
        self._phrase = b""
        self._until_close = False  # the body ends when the connection does
        self._length: int | None = None  # the Content-Length, if any
        self._raw = 0  # body bytes as framed (before content decoding)
        self._inflater: Inflater | None = None
        self._backlog: bytes | None = None  # read, not yet fed (reading is paused)

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
            self._feed(data)
        except Exception as exc:  # a bug here must end the probe now, not at its timeout
            self._internal(exc)

    def eof_received(self) -> bool | None:
        try:
            self._drain_backlog()
            self._at_eof(None)
        except Exception as exc:
            self._internal(exc)
        return None  # let the transport close itself

    def socket_error(self, exc: OSError) -> None:
        """An error read from the socket outside the transport (see rxstamp.py)."""
        self._backlog = None
        try:
            self._at_eof(exc)
        except Exception as error:
            self._internal(error)

    def connection_lost(self, exc: Exception | None) -> None:
        # With reading paused, the connection ends only by our abort (the probe is over) or a
        # socket error: what is still queued cannot change the verdict, so it is dropped.
        self._backlog = None
        try:
            self._at_eof(exc)
        except Exception as error:
            self._internal(error)

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

    def _internal(self, exc: BaseException) -> None:
        """An unexpected exception in a callback: the probe fails now, reason "error"."""
        cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
        shown = cause if cause is not None else exc
        try:
            text = f"internal error: {type(shown).__name__}: {shown}"
        except Exception:  # an exception whose str() raises
            text = f"internal error: {type(shown).__name__}"
        self._fail("error", clean_message(text))

    def _body_failure(self, detail: str) -> None:
        self._fail("protocol", f"incomplete or malformed response body: {detail}")

    def _at_eof(self, exc: Exception | None) -> None:
        if self.finished:
            return
        if not self.head_done:  # no complete response is a hang-up (as aiohttp, curl)
            if isinstance(exc, ConnectionResetError):
                self._fail("connect_reset", "connection reset by the server")
            else:
                self._fail(
                    "connect_reset", "server closed the connection without a complete response"
                )
        elif self._until_close and exc is None:
            self._complete()
        elif self._length is not None and exc is None:
            missing = self._length - self._raw
            self._body_failure(f"{missing} bytes of the Content-Length missing")
        else:
            detail = "connection reset" if exc is not None else "connection closed"
            self._body_failure(detail)

    def _complete(self) -> None:
        """The whole body arrived: a compressed one must have ended properly."""
        inflater = self._inflater
        # (An empty body is no truncated stream: some servers label even that one gzip.)
        if inflater is not None and not inflater.done and self._raw and self.count <= self.limit:
            self._body_failure("compressed body truncated")
            return
        self._finish()

    # -------------------------------------------------------------- feeding the parser

    def _feed(self, data: bytes) -> None:
        while data and not self.finished:
            if not self.head_done:
                # llhttp has no head limit: feed no more than the heads may still use.
                allowed = (self.interim + 1) * HEAD_LIMIT - self._head_bytes
                if allowed <= 0:
                    self._fail("protocol", "malformed response: response headers too large")
                    return
                piece, data = data[: min(allowed, FEED_SLICE)], data[min(allowed, FEED_SLICE) :]
            elif len(data) > FEED_SLICE:
                self._defer(data[FEED_SLICE:])
                piece, data = data[:FEED_SLICE], b""
            else:
                piece, data = data, b""
            self._parse(piece)
            if data and self.head_done and not self.finished and len(data) > FEED_SLICE:
                self._defer(data)
                return

    def _parse(self, piece: bytes) -> None:
        head_before = self.head_done
        try:
            self._parser.feed_data(piece)
        except _StopParsingError:  # pragma: no cover - httptools wraps it, see below
            pass
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _StopParsingError) and not self.finished:
                raise
        except httptools.HttpParserUpgrade:
            pass  # 101 and the like: judged at the head, which ends the probe
        except httptools.HttpParserError as exc:
            if not self.finished:
                self._malformed(str(exc))
        if not self.head_done:
            self._head_bytes += len(piece)
        elif head_before:
            self._body_bytes += len(piece)
            if self._body_bytes > self._read_limit and not self.finished:
                self._over(f"more than {self._read_limit} bytes read, the read limit")

    def _malformed(self, detail: str) -> None:
        if self.head_done:
            self._body_failure(detail)
        else:
            self._fail("protocol", f"malformed response: {detail}")

    def _defer(self, rest: bytes) -> None:
        """Pause reading and feed `rest` in a later loop callback (see FEED_SLICE)."""
        self._backlog = rest
        # Duck-typed: uvloop's transports do not derive from asyncio.ReadTransport.
        pause = getattr(self.transport, "pause_reading", None)
        if pause is not None:
            pause()
        asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        rest, self._backlog = self._backlog, None
        if rest is None:  # drained already (the connection ended meanwhile)
            return
        try:
            if not self.finished:
                self._feed(rest)
            transport = self.transport
            if (
                self._backlog is None  # all fed, no verdict yet: read on
                and not self.finished
                and transport is not None
                and not transport.is_closing()
            ):
                resume = getattr(transport, "resume_reading", None)
                if resume is not None:
                    resume()
        except Exception as exc:
            self._internal(exc)

    def _drain_backlog(self) -> None:
        """Before an end of stream is judged: feed what is still queued, all at once (rare:
        with reading paused, only a TLS transport might still report an EOF)."""
        rest, self._backlog = self._backlog, None
        while rest and not self.finished:
            self._feed(rest)
            rest, self._backlog = self._backlog, None

    # -------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._fields = 0
        self._seen.clear()
        self._phrase = b""

    def on_status(self, phrase: bytes) -> None:
        self._phrase += phrase

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADER_FIELDS:
            self._fail("protocol", f"malformed response: more than {MAX_HEADER_FIELDS} headers")
            raise _StopParsingError
        key = _TRACKED.get(name.lower())
        if key is not None:
            value = value.strip(b" \t")
            if key == "te" and "te" in self._seen:
                value = self._seen["te"] + b"," + value
            self._seen[key] = value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 100:  # llhttp takes `000`; h11 and aiohttp do not
            self._fail("protocol", f"malformed response: bad status code {status:03d}")
            raise _StopParsingError
        if status < 200 and status != 101:
            self.interim += 1
            if self.interim > MAX_INTERIM:
                self._fail(
                    "protocol", f"malformed response: more than {MAX_INTERIM} interim responses"
                )
                raise _StopParsingError
            return
        seen = self._seen
        te = seen.get("te")
        if te is not None and [c.strip(b" \t").lower() for c in te.split(b",")] != [b"chunked"]:
            shown = te[:40].decode("latin-1")
            self._fail("protocol", f"malformed response: unsupported Transfer-Encoding {shown!r}")
            raise _StopParsingError
        self.head_done = True
        self.status = status
        self.keep_body = self._keep_if is not None and self._keep_if(status)
        if self._phrase:
            self.phrase = self._phrase.decode("utf-8", "replace")
        self.content_type = seen.get("type")
        where = seen.get("location") or seen.get("uri")
        if where:
            self.location = where.decode("utf-8", "replace")
            if self.follow_redirects and status in _REDIRECT_CODES:
                self.redirect = True  # the body of a redirect is never read
                self._finish()
                raise _StopParsingError
        length = seen.get("length")
        empty = length is not None and not int(length)
        if self.head_request or status in (101, 204, 304) or empty:
            self._finish()
            raise _StopParsingError
        self._until_close = te is None and length is None
        if length is not None and te is None:
            self._length = int(length)
        encoding = seen.get("encoding", b"").lower()
        if encoding in _DECODED:
            self._inflater = Inflater(encoding)

    def on_body(self, data: bytes) -> None:
        if self.finished:
            raise _StopParsingError
        self._pieces_left -= 1
        if self._pieces_left < 0:
            self._over(f"body in more chunks than the read limit allows ({self.limit} bytes)")
            raise _StopParsingError
        self._raw += len(data)
        inflater = self._inflater
        if inflater is None:
            self._accept(data)
        else:
            try:
                inflater.decode(data, self.limit - self.count, self._accept)
            except BodyError as exc:
                self._body_failure(str(exc))
        if self.finished:
            raise _StopParsingError

    def on_message_complete(self) -> None:
        if self.head_done and not self.finished:
            self._complete()
            raise _StopParsingError

    # -------------------------------------------------------------- the decoded body

    def _accept(self, data: bytes) -> bool:
        """Count (and keep, if asked) decoded body bytes up to the limit; False to stop."""
        count = self.count + len(data)
        self.count = count
        if count > self.limit:
            if self.keep_body:
                self.body += data[: len(data) - (count - self.limit)]
            self._over(f"body larger than {self.limit} bytes, the read limit")
            return False
        if self.keep_body:
            self.body += data
            if self._needle is not None and len(self.body) >= self._next_look:
                self._next_look = 2 * len(self.body)
                if self._needle in decode_text(self.body, charset(self.content_type)):
                    self.matched = True
                    self._finish()
                    return False
        return True

    def _over(self, text: str) -> None:
        """A limit on the body reached: reading ends, the body check judges what was kept."""
        self.too_large = True
        self.too_large_text = text
        self._finish()


_REDIRECT_CODES: Final = frozenset((301, 302, 303, 307, 308))


def charset(content_type: bytes | None) -> str | None:
    """The charset parameter of a Content-Type value, if any."""
    if content_type is None:
        return None
    found = _CHARSET_RE.search(content_type.decode("latin-1"))
    return found[1] if found else None


def decode_text(body: bytes | bytearray, charset: str | None) -> str:
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
