"""A raw SMTP server (asyncio, in its own thread) that hangs up in the middle of DATA.

    with DataCloser(drop_first=1) as server:     # server.port
        ...                                       # server.dropped, server.accepted (parsed)

It speaks just enough ESMTP for aiosmtplib: the first `drop_first` messages are read in full and
then the connection is closed without a reply (the client cannot know whether the message was
accepted, so it must try again); later messages get `250` and are kept.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import threading
from email.message import EmailMessage
from types import TracebackType
from typing import Self


class DataCloser:
    def __init__(self, *, drop_first: int = 1) -> None:
        self.drop_first = drop_first
        self.port = 0
        self.dropped = 0
        self.accepted: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.accepted)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 hangs-up.example ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO",):
                    writer.write(b"250-hangs-up.example\r\n250 8BITMIME\r\n")
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    writer.write(b"250 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    with self._lock:
                        drop = self.dropped < self.drop_first
                        if drop:
                            self.dropped += 1
                        else:
                            raw = data[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
                            parsed = email.message_from_bytes(raw, policy=email.policy.default)
                            assert isinstance(parsed, EmailMessage)
                            self.accepted.append(parsed)
                    if drop:
                        writer.transport.abort()  # all of the message read, no reply
                        return
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"502 5.5.2 not implemented\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class AuthEchoer(DataCloser):
    """Offers AUTH PLAIN and LOGIN and refuses every login with a 535 that quotes what the client
    sent, decoded as well: a server that would put the password into sentinel's logs."""

    def __init__(self, *, mechanisms: bytes = b"PLAIN") -> None:
        super().__init__(drop_first=0)
        self.mechanisms = mechanisms
        self.auth_attempts = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 echo.example ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-echo.example\r\n250 AUTH " + self.mechanisms + b"\r\n")
                elif verb == b"AUTH":
                    with self._lock:
                        self.auth_attempts += 1
                    parts = line.split()
                    if parts[1].upper() == b"LOGIN":
                        if len(parts) < 3:
                            writer.write(b"334 VXNlcm5hbWU6\r\n")  # "Username:"
                            await writer.drain()
                            parts.append((await reader.readline()).strip())
                        writer.write(b"334 UGFzc3dvcmQ6\r\n")  # "Password:"
                        await writer.drain()
                        parts.append((await reader.readline()).strip())
                    elif len(parts) < 3:  # PLAIN without an initial response
                        writer.write(b"334 \r\n")
                        await writer.drain()
                        parts.append((await reader.readline()).strip())
                    sent = b" ".join(parts[2:])
                    decoded = b" ".join(_unbase64(part) for part in parts[2:])
                    decoded = decoded.replace(b"\0", b" ").replace(b"\r", b"").replace(b"\n", b"")
                    writer.write(b"535 5.7.8 no: you sent " + sent + b" = " + decoded + b"\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


def _unbase64(part: bytes) -> bytes:
    try:
        return base64.b64decode(part + b"=" * (-len(part) % 4))
    except ValueError:
        return part
