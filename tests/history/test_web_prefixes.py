"""The HTTP server's prefix routes (for /sites/<name> and the history API), on loopback."""

from __future__ import annotations

import asyncio

from sentinel.web import Reply, WebServer


async def get(port: int, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(20):
            return await reader.read()
    finally:
        writer.close()


async def test_a_prefix_route_gets_the_whole_target_and_exact_routes_win() -> None:
    seen: list[str] = []

    def under(target: str) -> Reply:
        seen.append(target)
        return Reply(200, "text/plain", b"prefix\n")

    server = WebServer(
        {"/sites/exact": lambda: Reply(200, "text/plain", b"exact\n")},
        prefixes={"/sites/": under},
    )
    port = await server.start("127.0.0.1:0")
    try:
        assert (await get(port, "/sites/a%20b?x=1")).endswith(b"prefix\n")
        assert (await get(port, "/sites/exact")).endswith(b"exact\n")
        assert b" 404 " in (await get(port, "/elsewhere")).split(b"\r\n")[0] + b" "
    finally:
        await server.close()
    assert seen == ["/sites/a%20b?x=1"]
