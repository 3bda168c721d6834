"""The HTTP server on real loopback sockets: routes, HEAD, streaming, limits, slow clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from http_raw import exchange, split, unchunk
from sentinel.early.page import render_early_section
from sentinel.web import HEAD_LIMIT, Reply, WebServer, make_routes


def chunks() -> Iterator[bytes]:
    yield b"# a\n"
    yield b""
    for n in range(50):
        yield f"line_{n} {n}\n".encode()


ROUTES = {
    "/healthz": lambda: Reply(200, "text/plain; charset=utf-8", b"ok\n"),
    "/metrics": lambda: Reply(200, "text/plain; version=0.0.4", chunks=chunks),
    "/boom": lambda: 1 / 0,  # type: ignore[dict-item]
}
STREAMED = b"".join(chunks())


@pytest.fixture
async def server() -> AsyncIterator[tuple[WebServer, int]]:
    srv = WebServer(ROUTES, request_timeout=0.5, response_timeout=0.5, max_connections=4)  # type: ignore[arg-type]
    port = await srv.start("127.0.0.1:0")
    yield srv, port
    await srv.close()


async def test_get_answers_and_closes(server: tuple[WebServer, int]) -> None:
    status, fields, body = split(
        await exchange(server[1], b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    )
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-length"] == "3" and body == b"ok\n"
    assert fields["connection"] == "close"
    assert fields["x-content-type-options"] == "nosniff"


async def test_query_strings_are_ignored_for_routing(server: tuple[WebServer, int]) -> None:
    status, _, body = split(await exchange(server[1], b"GET /healthz?x=1 HTTP/1.1\r\n\r\n"))
    assert status.endswith("200 OK") and body == b"ok\n"


async def test_head_gives_the_fields_without_the_body(server: tuple[WebServer, int]) -> None:
    status, fields, body = split(await exchange(server[1], b"HEAD /healthz HTTP/1.1\r\n\r\n"))
    assert status.endswith("200 OK") and fields["content-length"] == "3" and body == b""


async def test_streamed_body_is_chunked_and_complete(server: tuple[WebServer, int]) -> None:
    _, fields, body = split(await exchange(server[1], b"GET /metrics HTTP/1.1\r\n\r\n"))
    assert fields["transfer-encoding"] == "chunked"
    assert unchunk(body) == STREAMED


async def test_http_1_0_gets_a_content_length_not_chunks(server: tuple[WebServer, int]) -> None:
    _, fields, body = split(await exchange(server[1], b"GET /metrics HTTP/1.0\r\n\r\n"))
    assert "transfer-encoding" not in fields
    assert fields["content-length"] == str(len(STREAMED)) and body == STREAMED


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
        (b"BREW /pot\r\n\r\n", "400 Bad Request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "400 Bad Request"),
        (b"GET /boom HTTP/1.1\r\n\r\n", ""),  # a failing route: no answer, the server lives on
    ],
)
async def test_bad_requests_get_clear_statuses(
    server: tuple[WebServer, int], request_bytes: bytes, status: str
) -> None:
    raw = await exchange(server[1], request_bytes)
    if status:
        assert split(raw)[0] == f"HTTP/1.1 {status}"
    else:
        assert raw == b""
    assert (await exchange(server[1], b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")


async def test_a_huge_request_head_is_refused(server: tuple[WebServer, int]) -> None:
    request = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (HEAD_LIMIT * 2) + b"\r\n\r\n"
    try:
        raw = await exchange(server[1], request)
    except ConnectionResetError:  # closed with our unread bytes in its buffer: also a refusal
        raw = b""
    assert raw == b"" or split(raw)[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert (await exchange(server[1], b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")


async def test_a_client_that_never_finishes_its_request_is_dropped(
    server: tuple[WebServer, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server[1])
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: drip")  # and nothing more
    await writer.drain()
    async with asyncio.timeout(3):
        assert await reader.read() == b""  # closed after the 0.5 s request timeout
    writer.close()


async def test_connections_beyond_the_limit_are_closed_and_the_server_recovers(
    server: tuple[WebServer, int],
) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", server[1]) for _ in range(4)]
    extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", server[1])
    async with asyncio.timeout(3):
        assert await extra_reader.read() == b""  # refused while 4 are open
    extra_writer.close()
    for _, writer in idle:
        writer.close()
    await asyncio.sleep(0.1)
    assert (await exchange(server[1], b"GET /healthz HTTP/1.1\r\n\r\n")).endswith(b"ok\n")


async def test_an_unreadable_watch_shows_as_such_on_the_page_and_in_the_api() -> None:
    view = {
        "watches": [
            {
                "watch": "ghost",
                "source": "pid file /run/ghost.pid",
                "state": "unreadable",
                "error": "cannot read /run/ghost.pid: no such file",
                "memory_bytes": None,
                "growth_bytes_per_second": None,
                "seconds_to_limit": None,
                "limit_bytes": None,
            }
        ],
        "disks": [],
    }
    routes = make_routes(
        render_metrics=lambda: iter(()),
        site_status=lambda: [],
        healthy=lambda: True,
        early_status=lambda: view,
    )
    srv = WebServer(routes)
    port = await srv.start("127.0.0.1:0")
    try:
        _, _, api = split(await exchange(port, b"GET /api/status HTTP/1.0\r\n\r\n"))
    finally:
        await srv.close()
    (watch,) = json.loads(api)["watches"]
    assert watch["state"] == "unreadable" and watch["growth_bytes_per_second"] is None
    # The status page's early-warning section (the page itself is served by StatusPages).
    page = render_early_section(view).encode()
    assert b"<td>ghost</td><td>UNREADABLE</td><td>cannot read /run/ghost.pid" in page
