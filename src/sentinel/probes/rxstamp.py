"""When did the first byte of the response reach this machine? The kernel's receive timestamp
(and how long the TCP handshake took, by the kernel's own measure).

A probe's time was taken in a Python callback, after the event loop woke up for the response. On
a small shared VPS that wake-up can be late by milliseconds (CPU steal, other processes, another
probe's callback running): the latency sentinel reported then included its own scheduling. With
`SO_TIMESTAMPNS` the kernel stamps each packet as it arrives, and a `recvmsg(MSG_PEEK)` of one
byte reads that stamp without consuming the data, so the probe's time is the network's.

How: after the request is written, the transport stops reading; a duplicate of the socket's fd is
watched for the answer; its one-byte peek gives the stamp; then the duplicate is closed and the
transport reads as before (the data is still there). Plain HTTP only: with TLS the first bytes
after the request may be a session ticket, not the response. Where the kernel gives no stamp
(not Linux, an error, the connection closed), the probe keeps its callback time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
import time
from collections.abc import Callable

# Not in Python's socket module (3.11); 35 on Linux for the common architectures (x86, arm, ...).
SO_TIMESTAMPNS = 35
_SUPPORTED = sys.platform == "linux"
_CMSG_SPACE = socket.CMSG_SPACE(16) if _SUPPORTED else 0
_TIMESPEC = struct.Struct("@qq")
# struct tcp_info (linux/tcp.h): tcpi_rtt (µs) at byte 68, tcpi_total_retrans at byte 100.
_TCP_INFO_LEN = 104
_TCPI_RTT = struct.Struct("@I")
_TCPI_RTT_AT, _TCPI_TOTAL_RETRANS_AT = 68, 100


def handshake_seconds(transport: asyncio.BaseTransport) -> float | None:
    """The TCP handshake's round trip as the kernel measured it (SYN -> SYN-ACK, µs), or None.
    The event loop may learn of the connection later than that (it was busy, or the process
    was not running): the difference is sentinel's, not the site's. None after a retransmitted
    SYN, whose round trip the kernel does not sample (Karn's rule)."""
    if not _SUPPORTED:
        return None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    try:
        info = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCP_INFO_LEN:
        return None
    (rtt,) = _TCPI_RTT.unpack_from(info, _TCPI_RTT_AT)
    (retransmits,) = _TCPI_RTT.unpack_from(info, _TCPI_TOTAL_RETRANS_AT)
    if rtt == 0 or retransmits:
        return None
    return float(rtt) / 1e6


class RxStamp:
    """Arm on a connected transport just before writing the request; `at` is then the kernel's
    time of the response's first byte in `time.perf_counter()` terms, or None."""

    __slots__ = ("_fd", "_loop", "_on_error", "_sock", "_transport", "at")

    def __init__(self) -> None:
        self.at: float | None = None
        self._sock: socket.socket | None = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._on_error: Callable[[OSError], None] | None = None

    def arm(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        on_error: Callable[[OSError], None],
    ) -> bool:
        """Start watching; False (and nothing changed) when the kernel cannot stamp here.
        `on_error` gets a socket error the peek consumed (a reset): the kernel reports it once,
        so the transport would then see a plain end of stream instead."""
        if not _SUPPORTED:
            return False
        raw = transport.get_extra_info("socket")
        if raw is None:
            return False
        try:
            fd = os.dup(raw.fileno())
        except OSError:
            return False
        # The duplicate: closing it leaves the transport's. Family and type given, so Python
        # does not ask the kernel; it shares the original's O_NONBLOCK (one open file).
        sock = socket.socket(raw.family, socket.SOCK_STREAM, 0, fileno=fd)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            transport.pause_reading()
            loop.add_reader(fd, self._readable)
        except (OSError, RuntimeError):
            sock.close()
            with contextlib.suppress(Exception):
                transport.resume_reading()
            return False
        self._sock, self._fd, self._loop, self._transport = sock, fd, loop, transport
        self._on_error = on_error
        return True

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            _, ancillary, _, _ = sock.recvmsg(1, _CMSG_SPACE, socket.MSG_PEEK)
        except BlockingIOError:
            return  # (a spurious wake-up: keep watching)
        except OSError as exc:
            on_error = self._on_error
            self.disarm()
            if on_error is not None:
                on_error(exc)
            return
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                now_perf, now_wall = time.perf_counter(), time.time()
                age = now_wall - (seconds + nanoseconds / 1e9)
                if 0.0 <= age < 60.0:  # (a clock step meanwhile: keep the callback time)
                    self.at = now_perf - age
        self.disarm()

    def disarm(self) -> None:
        """Stop watching and let the transport read again; safe to call more than once."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        loop, transport = self._loop, self._transport
        self._loop = self._transport = None
        self._on_error = None
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self._fd)  # before the close: epoll keys on (fd, file)
        sock.close()
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(Exception):
                transport.resume_reading()
