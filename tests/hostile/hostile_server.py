"""A raw asyncio HTTP(S) server on loopback that misbehaves on purpose, in its own thread.

    with HostileServer() as server:                 # or HostileServer(ssl_context=ctx), host="127.0.0.2"
        url = server.url("/gzip-bomb")              # the first path segment picks the misbehaviour
        ...
        server.requests                             # [(path, {header: value})] of parsed requests

Modes (the first path segment; N is a trailing number):
  /ok                    200 "healthy"                /silent            reads the request, never answers
  /drip                  status line, then headers one byte every 50 ms, forever
  /chunked-endless[/N]   an endless chunked body in N-byte chunks (default 16384)
  /gzip-bomb, /deflate-bomb   64 MiB of zeros compressed to ~64 KiB
  /redirect-loop         302 to itself              /redirect-chain/N  N redirects, then /ok
  /redirect-to?url=U     302 to U (another scheme, another host)
  /garbage               4 KiB of random bytes      /reset             RST (SO_LINGER 0)
  /huge-header           one 1 MiB header line      /many-headers      1 MiB of small headers
  /endless-headers       8 KB headers forever, never the blank line
  /short-body            Content-Length 100000, 13 bytes, close
  /continue-flood        "100 Continue" forever     /continue-then-ok/N  N interim responses, 200
  /hostile-reason, /hostile-body, /hostile-garbage   control characters, CR/LF, fake headers, HTML

`HostileServer(fixed="tcp-silent")` ignores the protocol altogether: it accepts and never writes a
byte (a TLS handshake that stalls when used behind an https:// URL).

It runs in a thread with its own event loop, so it serves a prober in the test's own loop, a
`sentinel probe` subprocess and a running daemon alike. Every endless mode writes with `drain()`,
so the server's own buffers stay small whatever the client does; every handler ends when the
client hangs up, and `stop()` cancels whatever is left.
"""

from __future__ import annotations

import asyncio
import functools
import random
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

BOMB_DECOMPRESSED = 64 * 1024 * 1024  # bytes of zeros inside the gzip/deflate bombs
DRIP_DELAY = 0.05  # seconds between bytes of the slow-drip headers
HUGE_HEADER = 1024 * 1024  # one header line of this many bytes
MANY_HEADERS_TOTAL = 1024 * 1024  # this many bytes of small headers
HOSTILE_REASON = "<script>alert(1)</script>\x1b[31m\x00\u202e\u2028\tX-Injected: yes" + "!" * 300
HOSTILE_BODY = b"\x00\x1b[2J\r\nSubject: injected\r\n\r\n\xff\xfe" * 100

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


@functools.cache
def bomb(kind: str) -> bytes:
    """BOMB_DECOMPRESSED zeros, compressed as gzip (RFC 1952) or deflate (zlib, RFC 1950)."""
    wbits = 31 if kind == "gzip" else 15
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(BOMB_DECOMPRESSED // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


async def _wait_for_hangup(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _number(target: str, default: int) -> int:
    """The trailing number of a path like /redirect-chain/10, else `default`."""
    last = urlsplit(target).path.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else default


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write and wait for the buffer to drain; ConnectionResetError once the client is gone
    (asyncio would otherwise log every further write to a dead socket)."""
    if writer.transport.is_closing():
        raise ConnectionResetError("client gone")
    writer.write(data)
    await writer.drain()


async def _head(
    writer: asyncio.StreamWriter, status: str, *headers: str, body: bytes = b""
) -> None:
    lines = [f"HTTP/1.1 {status}", *headers, "Connection: close", "", ""]
    await _send(writer, "\r\n".join(lines).encode("latin-1") + body)


class HostileServer:
    """See the module docstring. Thread-safe; start()/stop() or a `with` block."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        fixed: str | None = None,
        seed: int = 6,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.fixed = fixed
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._modes: dict[str, Handler] = {
            "ok": self._ok,
            "silent": self._silent,
            "drip": self._drip,
            "chunked-endless": self._chunked_endless,
            "gzip-bomb": functools.partial(self._bomb, encoding="gzip"),
            "deflate-bomb": functools.partial(self._bomb, encoding="deflate"),
            "redirect-loop": self._redirect_loop,
            "redirect-chain": self._redirect_chain,
            "redirect-to": self._redirect_to,
            "garbage": self._garbage,
            "reset": self._reset,
            "huge-header": self._huge_header,
            "many-headers": self._many_headers,
            "endless-headers": self._endless_headers,
            "short-body": self._short_body,
            "continue-flood": self._continue_flood,
            "continue-then-ok": self._continue_then_ok,
            "hostile-reason": self._hostile_reason,
            "hostile-body": self._hostile_body,
            "hostile-garbage": self._hostile_garbage,
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> HostileServer:
        self._thread.start()
        self._call(self._start()).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, 0, ssl=self.ssl_context, limit=256 * 1024
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop()).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Awaitable[None]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None or self.fixed == "tcp-silent" else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests]

    # ------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self.connections += 1
        try:
            if self.fixed == "tcp-silent":
                await _wait_for_hangup(reader)
                return
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else "/"
            headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
            with self._lock:
                self.requests.append((target, headers))
            mode = unquote(urlsplit(target).path).strip("/").split("/")[0]
            handler = self._modes.get(mode, self._not_found)
            await handler(reader, writer, target)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ssl.SSLError:
            pass  # a client that refused our certificate
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    # ------------------------------------------------------------ well-behaved

    async def _ok(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str) -> None:
        body = b"healthy\n"
        await _head(writer, "200 OK", f"Content-Length: {len(body)}", body=body)
        await _wait_for_hangup(reader)

    async def _not_found(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _head(writer, "404 Not Found", "Content-Length: 0")
        await _wait_for_hangup(reader)

    # ------------------------------------------------------------ slow and endless

    async def _silent(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _wait_for_hangup(reader)  # the request was read; no answer, ever

    async def _drip(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\n")
        header = b"X-Drip: " + b"d" * 4000 + b"\r\n"
        while True:  # headers one byte at a time, never finished
            for byte in header:
                await _send(writer, bytes([byte]))
                await asyncio.sleep(DRIP_DELAY)

    async def _chunked_endless(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        """/chunked-endless[/CHUNK_SIZE]: chunks of CHUNK_SIZE bytes (default 16384), forever."""
        await _head(writer, "200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked")
        size = _number(target, 16384)
        frame = b"%x\r\n%s\r\n" % (size, b"x" * size)
        frames = frame * max(1, 65536 // len(frame))
        while True:
            await _send(writer, frames)

    async def _bomb(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str, *, encoding: str
    ) -> None:
        payload = bomb(encoding)
        await _head(
            writer,
            "200 OK",
            "Content-Type: text/plain",
            f"Content-Encoding: {encoding}",
            f"Content-Length: {len(payload)}",
            body=payload,
        )
        await _wait_for_hangup(reader)

    # ------------------------------------------------------------ redirects

    async def _redirect_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _head(writer, "302 Found", "Location: /redirect-loop", "Content-Length: 0")
        await _wait_for_hangup(reader)

    async def _redirect_chain(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        """/redirect-chain/N: N redirects in all, then /ok."""
        left = _number(target, 1)
        location = "/ok" if left <= 1 else f"/redirect-chain/{left - 1}"
        await _head(writer, "302 Found", f"Location: {location}", "Content-Length: 0")
        await _wait_for_hangup(reader)

    async def _redirect_to(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        """/redirect-to?url=LOCATION"""
        location = parse_qs(urlsplit(target).query)["url"][0]
        await _head(writer, "302 Found", f"Location: {location}", "Content-Length: 0")
        await _wait_for_hangup(reader)

    # ------------------------------------------------------------ broken protocol

    async def _garbage(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        with self._lock:
            noise = bytes(self._rng.randrange(256) for _ in range(4096))
        await _send(writer, noise)
        await _wait_for_hangup(reader)

    async def _reset(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # close with SO_LINGER 0: the peer gets a RST

    async def _huge_header(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * HUGE_HEADER + b"\r\n")
        await _send(writer, b"Content-Length: 0\r\n\r\n")
        await _wait_for_hangup(reader)

    async def _many_headers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        lines = b"".join(
            b"X-Many-%d: %s\r\n" % (n, b"m" * 40) for n in range(MANY_HEADERS_TOTAL // 56)
        )
        await _send(writer, b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 0\r\n\r\n")
        await _wait_for_hangup(reader)

    async def _endless_headers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\n")
        value = b"e" * 8000  # just under aiohttp's per-field limit
        line_no = 0
        while True:  # as fast as the client reads, never a blank line
            await _send(writer, b"X-Endless-%d: %s\r\n" % (line_no, value))
            line_no += 1

    async def _short_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _head(writer, "200 OK", "Content-Length: 100000", body=b"only a little")
        # then close: fewer bytes than promised

    async def _continue_flood(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        interim = b"HTTP/1.1 100 Continue\r\n\r\n" * 2048
        while True:
            await _send(writer, interim)

    async def _continue_then_ok(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        """/continue-then-ok/N: N interim responses (100 Continue, 103 Early Hints), then 200."""
        count = _number(target, 1)
        interim = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        await _send(writer, b"HTTP/1.1 100 Continue\r\n\r\n" + interim * (count - 1))
        await _head(writer, "200 OK", "Content-Length: 3", body=b"ok\n")
        await _wait_for_hangup(reader)

    # ------------------------------------------------------------ hostile text

    async def _hostile_reason(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _send(
            writer,
            b"HTTP/1.1 503 " + HOSTILE_REASON.encode("utf-8") + b"\r\n"
            b"X-Long: " + b"L" * 7000 + b"\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        await _wait_for_hangup(reader)

    async def _hostile_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        await _head(
            writer,
            "200 OK",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(HOSTILE_BODY)}",
            body=HOSTILE_BODY,
        )
        await _wait_for_hangup(reader)

    async def _hostile_garbage(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: str
    ) -> None:
        """Not HTTP, and the parser quotes it in its error: CR/LF, ESC, header-like text."""
        await _send(writer, b"\x1b[2J\r\nSubject: pwned\r\n\r\nFrom: evil@example.org\r\n" * 50)
        await _wait_for_hangup(reader)


@dataclass(frozen=True)
class Hostile:
    """Every misbehaving server a test may point a site at."""

    plain: HostileServer  # http://127.0.0.1: the path picks the misbehaviour
    other_host: HostileServer  # http://127.0.0.2: "another host" for redirects
    tls_ok: HostileServer  # https, a certificate for 127.0.0.1 from `ca`
    tls_self_signed: HostileServer  # https, a self-signed certificate nobody trusts
    tls_wrong_host: HostileServer  # https, a certificate from `ca` for other.example
    tls_expired: HostileServer  # https, a certificate from `ca` for 127.0.0.1, expired
    tls_stall: HostileServer  # accepts TCP, never answers the ClientHello
    ca: trustme.CA
    ca_bundle: Path  # PEM of `ca`, for SSL_CERT_FILE in a subprocess

    def trusting_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx
