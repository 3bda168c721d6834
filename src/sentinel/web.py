"""The HTTP server: /metrics for Prometheus, /healthz for supervisors, /api/status and / for people.

A thin shell: it renders what the daemon hands it and owns no state of its own. It is a small
HTTP/1.1 server on asyncio streams rather than aiohttp.web: four GET endpoints need no framework,
and importing aiohttp costs ~11 MiB of resident memory, a sixth of the whole daemon
(bench/README.md). Each connection serves one request and is closed (`Connection: close`);
requests are bounded in size (16 KiB head) and time (10 s to send it, 60 s to take the answer),
and at most 64 connections are served at once, so a slow or hostile client cannot pin the daemon.
The heartbeat pings (/ping/..., sentinel.heartbeats.endpoint) are a prefix route that reads its
own bounded body.

`[sentinel] web_config` (sentinel.webauth) adds TLS on the listening socket (a reload hands the
socket to a server with the new context) and basic auth on every path but /healthz and the
pings (`webauth.is_open_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from sentinel.config import split_host_port
from sentinel.early.page import EarlyView
from sentinel.jsonpieces import Batches, object_pieces
from sentinel.metrics import CONTENT_TYPE
from sentinel.webauth import WebAccess, basic_credentials, is_open_path

log = logging.getLogger("sentinel.web")

StatusProvider = Callable[[], Sequence[Mapping[str, Any]]]
# The sites' views for /api/status, produced lazily (a generator): the API writes them
# API_SITES_PER_PIECE at a time, with the event loop free in between.
SiteViews = Callable[[], Iterable[Mapping[str, Any]]]
API_SITES_PER_PIECE: Final = 100

HEAD_LIMIT: Final = 16 * 1024  # bytes of a request line + header fields
REQUEST_TIMEOUT: Final = 10.0  # seconds for a client to send its request head
RESPONSE_TIMEOUT: Final = 60.0  # seconds for a client to take the whole answer
MAX_CONNECTIONS: Final = 64  # served at once; more are closed straight away
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT: Final = "text/plain; charset=utf-8"


def iso_utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: a whole body, or `chunks` streamed with the event loop free between them.
    `deflated`: the same body as a zlib stream, sent (chunked, `Content-Encoding: deflate`)
    instead when the request's Accept-Encoding takes it; `gzipped`: as a gzip stream, for a
    client that takes gzip and not deflate (or prefers it by its weights). With either, the
    answer always carries `Vary: Accept-Encoding`."""

    status: int
    content_type: str
    body: bytes = b""
    chunks: Callable[[], Iterable[bytes]] | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra header fields
    deflated: Callable[[], Iterable[bytes]] | None = None
    gzipped: Callable[[], Iterable[bytes]] | None = None


Route = Callable[[], Reply]
# A route for every path under a prefix that may read a body (the heartbeat pings):
# (method, target, request head, reader) -> (status, one line of text).
PrefixRoute = Callable[[str, str, bytes, asyncio.StreamReader], Awaitable[tuple[int, str]]]
# GET/HEAD of every path under a prefix (the status pages): gets the target (path and query).
PageRoute = Callable[[str], Reply]


def make_routes(
    *,
    render_metrics: Callable[[], Iterable[bytes]],
    site_status: SiteViews,
    healthy: Callable[[], bool],
    early_status: Callable[[], EarlyView] | None = None,
    dead_letters: Callable[[], int] | None = None,
    heartbeat_status: StatusProvider | None = None,
    extra_status: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Route]:
    def dead() -> int:
        return dead_letters() if dead_letters is not None else 0

    def metrics() -> Reply:
        # Streamed in pieces of a few hundred sites (~25 us a site), handing the loop back
        # between them: probes keep their schedule during a scrape of tens of thousands of
        # sites, and the whole text is never held in memory at once.
        return Reply(200, CONTENT_TYPE, chunks=render_metrics)

    def healthz() -> Reply:
        if healthy():
            return Reply(200, _TEXT, b"ok\n")
        return Reply(503, _TEXT, b"scheduler not running\n")

    def api_status() -> Reply:
        def members() -> Iterator[tuple[str, Any]]:
            yield "generated_at", iso_utc(time.time())
            yield "dead_letters", dead()
            yield "sites", Batches(_batches(site_status(), API_SITES_PER_PIECE))
            if early_status is not None:
                yield from early_status().items()  # "watches" and "disks", each with its "state"
            if heartbeat_status is not None:
                yield "heartbeats", [dict(h) for h in heartbeat_status()]
            if extra_status is not None:
                yield from extra_status().items()  # "network" (sentinel.canary), "shard"

        def chunks() -> Iterator[bytes]:
            # json.dumps escapes control characters, so hostile remote text cannot break the
            # JSON; written API_SITES_PER_PIECE sites at a time (~0.6 MB at 1,000 sites: in one
            # go it held the loop for 50-200 ms), the text the same as one json.dumps call.
            for piece in object_pieces(members()):
                yield piece.encode()

        return Reply(200, "application/json; charset=utf-8", chunks=chunks)

    return {"/metrics": metrics, "/healthz": healthz, "/api/status": api_status}


def weight(accept_encoding: str | None, coding: str) -> float:
    """The weight an Accept-Encoding field value (RFC 9110 12.5.3; several fields joined with
    commas) gives `coding`: its own, else that of `*`, else 0; above 0 is taken. No field at
    all: 0 (the body as it is suits every client)."""
    if accept_encoding is None:
        return 0.0
    wildcard = 0.0
    for element in accept_encoding.split(","):
        name, *params = (p.strip() for p in element.split(";"))
        value_of = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    value_of = float(value.strip())
                except ValueError:
                    value_of = 0.0  # (a weight we cannot read: not taken)
        if not value_of > 0:  # (0, and NaN)
            value_of = 0.0
        name = name.lower()
        if name == coding:
            return value_of
        if name == "*":
            wildcard = value_of
    return wildcard


def header_value(head: bytes, field: bytes) -> str | None:
    """The value of a request head's `field` (lower case), several lines joined with commas;
    None when absent."""
    values = [
        value.strip().decode("latin-1")
        for name, sep, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        if sep and name.strip().lower() == field
    ]
    return ", ".join(values) if values else None


def _negotiate(reply: Reply, head: bytes) -> Reply:
    """A reply with a compressed body: deflate if the client takes it (cheaper to put together
    than gzip: `deflate.crc32_combine`), gzip if it takes only that or gives it the higher
    weight, else the plain one; all say that the body depends on Accept-Encoding (caches keep
    them apart)."""
    headers = (*reply.headers, ("Vary", "Accept-Encoding"))
    accept = header_value(head, b"accept-encoding")
    deflate = weight(accept, "deflate") if reply.deflated is not None else 0.0
    gzip = weight(accept, "gzip") if reply.gzipped is not None else 0.0
    if gzip > deflate:
        return replace(
            reply, body=b"", chunks=reply.gzipped, headers=(*headers, ("Content-Encoding", "gzip"))
        )
    if deflate > 0:
        return replace(
            reply,
            body=b"",
            chunks=reply.deflated,
            headers=(*headers, ("Content-Encoding", "deflate")),
        )
    return replace(reply, headers=headers)


def _batches(items: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(dict(item))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def dead_letter_banner(count: int) -> str:
    """The status page's warning that `count` alerts were given up on (empty when none)."""
    if count <= 0:
        return ""
    alerts = "alert was" if count == 1 else "alerts were"
    return (
        "<p class='dead' style='background:#fdd;border:2px solid #c00;padding:.6em'>"
        f"<strong>{count} {alerts} not delivered</strong> (dead letters): see "
        "<code>sentinel outbox list</code>, resend with <code>sentinel outbox retry</code>.</p>"
    )


class WebServer:
    """Serves `routes` (path -> Reply) over HTTP/1.x, GET and HEAD only; `prefixed` routes
    (prefix -> handler) get every method, the request head and the stream to read a body."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        prefixed: Mapping[str, PrefixRoute] | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        response_timeout: float = RESPONSE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        prefixes: Mapping[str, PageRoute] | None = None,
        access: WebAccess | None = None,
    ) -> None:
        # TLS, basic auth and extra headers; replaced whole at reload, read once per connection.
        self.access = access or WebAccess()
        self._routes = dict(routes)
        self._prefixed = dict(prefixed or {})
        self._prefixes = dict(prefixes or {})
        self._request_timeout = request_timeout
        self._response_timeout = response_timeout
        self._max_connections = max_connections
        self._servers: list[asyncio.Server] = []
        self._swap_lock = asyncio.Lock()
        # The connections being handled, one task each; their number is what the limit counts.
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, listen: str) -> int:
        """Listen on "host:port"; returns the bound port (for port 0)."""
        host, port = split_host_port(listen, what="listen")
        server = await asyncio.start_server(
            self._on_connection,
            host or None,
            port,
            limit=HEAD_LIMIT,
            reuse_address=True,
            ssl=self.access.ssl_context,
            ssl_handshake_timeout=self._request_timeout if self.access.ssl_context else None,
        )
        self._servers = [server]
        return int(server.sockets[0].getsockname()[1])

    async def set_access(self, access: WebAccess) -> None:
        """Apply a new web config (a reload) to the next connections. TLS belongs to the
        listening server, so with TLS before or after, the listening sockets are handed to a new
        server with the new context (a duplicate of each socket: the kernel's accept queue is
        never closed, so no connection is refused meanwhile) and the old server is closed;
        the connections it is serving finish as they were."""
        async with self._swap_lock:
            old_tls, self.access = self.access.ssl_context, access
            if (old_tls is None and access.ssl_context is None) or not self._servers:
                return
            fresh = []
            for old in self._servers:
                for sock in old.sockets:
                    dup = socket.socket(fileno=os.dup(sock.fileno()))
                    fresh.append(
                        await asyncio.start_server(
                            self._on_connection,
                            sock=dup,
                            limit=HEAD_LIMIT,
                            ssl=access.ssl_context,
                            ssl_handshake_timeout=(
                                self._request_timeout if access.ssl_context else None
                            ),
                        )
                    )
            old_servers, self._servers = self._servers, fresh
            for old in old_servers:
                old.close()  # the listening sockets only; their connections carry on

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio.start_server runs each connection in a task of its own
        self._handlers.add(task)
        clean = False
        try:
            if len(self._handlers) <= self._max_connections:
                access = self.access
                if not access.peer_allowed(writer.get_extra_info("peercert")):
                    return  # client_allowed_sans: a verified certificate of someone else
                await self._serve_one(reader, writer, access)
                clean = True
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or was too slow: nothing to answer
        except Exception:  # never let one request take the server down
            log.exception("HTTP request failed")
        finally:
            self._handlers.discard(task)
            if clean:
                writer.close()  # after the buffered answer is sent
            else:
                writer.transport.abort()  # a client that does not read gets no more time

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, access: WebAccess
    ) -> None:
        try:
            async with asyncio.timeout(self._request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _write(writer, _plain(431, "request head too large"), head_only=False)
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _write(writer, _plain(400, "bad request"), head_only=False)
            return
        method, target, version = parts
        if (
            access.auth is not None
            and not is_open_path(target)
            and not await access.auth.allows(basic_credentials(head))
        ):
            reply = Reply(
                401,
                _TEXT,
                b"401 unauthorized\n",
                headers=(("WWW-Authenticate", 'Basic realm="sentinel", charset="UTF-8"'),),
            )
            async with asyncio.timeout(self._response_timeout):
                await _write(writer, reply, head_only=method == "HEAD", extra=access.headers)
            return
        prefixed = next((r for p, r in self._prefixed.items() if target.startswith(p)), None)
        if prefixed is not None:
            status, text = await prefixed(method, target, head, reader)
            reply = _plain(status, text)
        elif method not in ("GET", "HEAD"):
            reply = _plain(405, "only GET and HEAD")
        else:
            path = target.split("?", 1)[0]
            route = self._routes.get(path)
            if route is not None:
                reply = route()
            else:
                under = next((r for p, r in self._prefixes.items() if path.startswith(p)), None)
                reply = under(target) if under is not None else _plain(404, "not found")
            if reply.deflated is not None or reply.gzipped is not None:
                reply = _negotiate(reply, head)
        async with asyncio.timeout(self._response_timeout):
            await _write(
                writer,
                reply,
                head_only=method == "HEAD",
                http10=version == "HTTP/1.0",
                extra=access.headers,
            )


def _plain(status: int, text: str) -> Reply:
    return Reply(status, _TEXT, f"{status} {text}\n".encode())


async def _write(
    writer: asyncio.StreamWriter,
    reply: Reply,
    *,
    head_only: bool,
    http10: bool = False,
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    fields = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        f"Content-Type: {reply.content_type}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    # http_server_config.headers; X-Content-Type-Options: nosniff is always sent already.
    fields += [f"{k}: {v}" for k, v in (*reply.headers, *extra) if k != "X-Content-Type-Options"]
    chunks = reply.chunks
    if chunks is not None and http10:  # no chunked encoding in HTTP/1.0: the whole body
        reply, chunks = Reply(reply.status, reply.content_type, b"".join(chunks())), None
    if chunks is None:
        fields.append(f"Content-Length: {len(reply.body)}")
    else:
        fields.append("Transfer-Encoding: chunked")
    writer.write(("\r\n".join(fields) + "\r\n\r\n").encode("latin-1"))
    if head_only:
        await writer.drain()
        return
    if chunks is None:
        writer.write(reply.body)
    else:
        for chunk in chunks():
            if chunk:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
            await asyncio.sleep(0)  # the loop runs probes between pieces
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def start_server(
    routes: Mapping[str, Route],
    listen: str,
    prefixed: Mapping[str, PrefixRoute] | None = None,
    prefixes: Mapping[str, PageRoute] | None = None,
    access: WebAccess | None = None,
) -> tuple[WebServer, int]:
    """Serve `routes` on listen ("host:port"); returns the server and the bound port.
    `prefixed`: handlers that read a body (pings); `prefixes`: pages under a path prefix;
    `access`: TLS and basic auth (`[sentinel] web_config`)."""
    server = WebServer(routes, prefixed=prefixed, prefixes=prefixes, access=access)
    port = await server.start(listen)
    return server, port
