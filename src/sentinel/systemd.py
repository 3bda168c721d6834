"""Talking to systemd: sd_notify(3) messages and a progress-gated watchdog; stdlib only.

`Notifier` sends READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1 datagrams to
$NOTIFY_SOCKET (a path, or "@name" for the abstract namespace); without $NOTIFY_SOCKET every call
is a no-op, so the daemon calls it unconditionally. `WatchdogFeeder` pings WATCHDOG=1 every
WATCHDOG_USEC/2, but only while the scheduler reports progress, so a wedged scheduler lets systemd
kill and restart the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from sentinel.sanitize import one_line

__all__ = ["Notifier", "WatchdogFeeder", "sanitize_status"]

log = logging.getLogger(__name__)

# STATUS= is shown by `systemctl status`; keep it to one short line.
STATUS_MAX_CHARS = 200
# systemd reads notifications quickly; never block the event loop longer than this on a full queue.
SEND_TIMEOUT_SECONDS = 1.0


def sanitize_status(text: str) -> str:
    """One line (sentinel.sanitize.one_line): control characters (CR, LF, NUL, ...) become
    spaces, runs of whitespace collapse, and the result is cut to STATUS_MAX_CHARS."""
    return one_line(text, STATUS_MAX_CHARS)


def _socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as an address for sendto(), or None if it is not a unix socket we can use."""
    if value.startswith("@"):
        # Abstract namespace: a leading NUL instead of the '@' (sd_notify(3)).
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends sd_notify(3) state changes to the service manager; a no-op when not run by systemd.

    No method ever raises: a failed send is logged once as a warning (systemd may be restarting) and
    later sends are still attempted.
    """

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """`address` is a $NOTIFY_SOCKET value ("/run/systemd/notify" or "@name"), None for no-op.
        `watchdog_usec` is the watchdog timeout in microseconds, None if the watchdog is off."""
        self._address = address
        self._sockaddr = _socket_address(address) if address else None
        if address and self._sockaddr is None:
            log.warning(
                "NOTIFY_SOCKET=%r is not a unix socket path or @name; not notifying", address
            )
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """Build from $NOTIFY_SOCKET and $WATCHDOG_USEC / $WATCHDOG_PID (sd_watchdog_enabled(3)):
        the watchdog applies only if WATCHDOG_PID is unset or is this process."""
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        raw_usec = environ.get("WATCHDOG_USEC", "")
        raw_pid = environ.get("WATCHDOG_PID", "")
        if raw_usec:
            try:
                usec = int(raw_usec)
                pid_matches = not raw_pid or int(raw_pid) == os.getpid()
            except ValueError:
                log.warning(
                    "ignoring malformed WATCHDOG_USEC=%r WATCHDOG_PID=%r", raw_usec, raw_pid
                )
            else:
                if usec > 0 and pid_matches:
                    watchdog_usec = usec
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when notifications go somewhere (NOTIFY_SOCKET is set and usable)."""
        return self._sockaddr is not None

    def notify(self, *lines: str) -> None:
        """Send `lines` ("KEY=value" each) as one datagram. Newlines inside a line are replaced by
        spaces so that no text can smuggle in an extra assignment (e.g. a READY=1)."""
        if self._sockaddr is None or not lines:
            return
        payload = "\n".join(line.replace("\r", " ").replace("\n", " ") for line in lines)
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec by default
                sock.settimeout(SEND_TIMEOUT_SECONDS)
                self._sock = sock
            self._sock.sendto(payload.encode("utf-8", "replace"), self._sockaddr)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self._address, exc)

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) is complete: READY=1, with an optional STATUS= line."""
        self.notify("READY=1", *self._status_lines(status))

    def status(self, text: str) -> None:
        """A one-line summary for `systemctl status`, e.g. "12 sites, 1 down"."""
        self.notify(f"STATUS={sanitize_status(text)}")

    def reloading(self, status: str | None = None) -> None:
        """A reload starts: RELOADING=1 plus MONOTONIC_USEC= (required by Type=notify-reload,
        harmless before systemd 253). Send ready() when the reload is over, even if it failed."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status_lines(status))

    def stopping(self, status: str | None = None) -> None:
        """Shutdown begins: STOPPING=1."""
        self.notify("STOPPING=1", *self._status_lines(status))

    def watchdog(self) -> None:
        """Keep-alive: WATCHDOG=1. Sent regardless of whether a watchdog is configured."""
        self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alive pings (half of WATCHDOG_USEC), None without a watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; a later notify() opens a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status_lines(status: str | None) -> tuple[str, ...]:
        return () if status is None else (f"STATUS={sanitize_status(status)}",)


class WatchdogFeeder:
    """Pings WATCHDOG=1 every `interval` seconds, but only if `progress()` changed since the last
    check. `progress` returns a counter the scheduler advances on every loop iteration (a tick count
    or the monotonic time of its last wake-up); it must change at least once per interval even when
    no site is due. A scheduler that stops advancing it stops the pings, and systemd restarts the
    service after WatchdogSec. A blocked event loop stops the pings too: this runs on the same loop.
    """

    def __init__(
        self,
        notifier: Notifier,
        progress: Callable[[], float],
        *,
        interval: float | None = None,
    ) -> None:
        """`interval` defaults to notifier.watchdog_interval(); None there means no watchdog."""
        self._notifier = notifier
        self._progress = progress
        self._interval = interval if interval is not None else notifier.watchdog_interval()
        self._last: float | None = None
        self._stalled_logged = False
        self.pings = 0
        """How many WATCHDOG=1 were sent (for tests and debugging)."""

    @property
    def interval(self) -> float | None:
        return self._interval

    def check(self) -> bool:
        """One step: ping if progress changed since the previous check; returns whether it did."""
        try:
            current = self._progress()
        except Exception:
            log.exception("watchdog progress callback failed; not pinging")
            return False
        if self._last is not None and current == self._last:
            if not self._stalled_logged:
                self._stalled_logged = True
                log.error(
                    "scheduler made no progress for %.1fs; withholding the watchdog ping",
                    self._interval or 0.0,
                )
            return False
        if self._stalled_logged:
            self._stalled_logged = False
            log.warning("scheduler is making progress again; watchdog pings resumed")
        self._last = current
        self._notifier.watchdog()
        self.pings += 1
        return True

    async def run(self) -> None:
        """Ping on a drift-free schedule until cancelled. Returns at once when there is no
        watchdog. Cancellation is safe at any point: it only ever awaits a sleep."""
        interval = self._interval
        if interval is None or interval <= 0:
            return
        loop = asyncio.get_running_loop()
        self._last = self._progress()
        # First ping right away: startup is progress, and systemd's timer is already running.
        self._notifier.watchdog()
        self.pings += 1
        deadline = loop.time()
        while True:
            deadline += interval
            now = loop.time()
            # If the loop was blocked for more than an interval, don't burst to catch up.
            deadline = max(deadline, now)
            await asyncio.sleep(deadline - now)
            self.check()
