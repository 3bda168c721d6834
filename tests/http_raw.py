"""Raw HTTP/1.1 on loopback for the web server's tests: one request on a fresh connection read
until the server closes, the answer split into status line, header fields and body, and a
chunked body put together. (Bytes as the server wrote them: no client library in between.)"""

from __future__ import annotations

import asyncio


async def exchange(port: int, request: bytes, *, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read()  # until the server closes
    finally:
        writer.close()


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], fields, body


def unchunk(body: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
