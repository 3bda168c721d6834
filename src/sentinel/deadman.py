"""Watching the watcher: `[deadman]` pings an outside dead man's switch (healthchecks.io-style)
every `every`, only while the scheduler makes progress, and pings `url + "/fail"` when no channel
can deliver alerts. The outside service alerts when the pings stop (sentinel, its machine or its
network died) or when a /fail arrives.

The section model and `plan_ping` are pure; `DeadmanSwitch` is the thin shell: one task, one
POST per tick with a timeout (never blocking the event loop), the outcome counted in
`sentinel_deadman_pings_total{result}` and logged rate-limited, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from sentinel.sanitize import one_line

if TYPE_CHECKING:
    from sentinel.notify.channels.http import HttpPoster
    from sentinel.promtext import Counter

__all__ = [
    "DEFAULT_EVERY",
    "DeadmanConfig",
    "DeadmanSwitch",
    "Ping",
    "fail_url",
    "plan_ping",
]

log = logging.getLogger("sentinel")

DEFAULT_EVERY = 60.0
MIN_EVERY = 2.0  # twice the scheduler's longest sleep (scheduler.HEARTBEAT)
PING_TIMEOUT = 10.0  # healthchecks.io's own examples use curl -m 10
ERROR_LOG_EVERY = 600.0  # seconds between log lines about a failing ping
_BODY_CHARS = 1000  # healthchecks.io keeps the first 100 kB; a line is what a human reads
Result = Literal["ok", "fail", "error", "withheld"]
RESULTS: tuple[Result, ...] = ("ok", "fail", "error", "withheld")


@dataclass(frozen=True, slots=True)
class DeadmanConfig:
    url: str
    every: float = DEFAULT_EVERY

    @property
    def timeout(self) -> float:
        """Each ping is over (answered or abandoned) before the next one is due."""
        return min(PING_TIMEOUT, self.every / 2)


def fail_url(url: str) -> str:
    """`url` with "/fail" appended to its path (its query string kept): healthchecks.io's
    failure signal. Pure."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


@dataclass(frozen=True, slots=True)
class Ping:
    url: str
    body: bytes
    result: Literal["ok", "fail"]  # what a delivered ping counts as


def plan_ping(
    config: DeadmanConfig, *, progressed: bool, undeliverable: str | None, summary: str
) -> Ping | None:
    """This tick's ping: none while the scheduler makes no progress (like the systemd watchdog:
    a stuck sentinel must look dead), `/fail` with the reason while alerts cannot be delivered,
    else the plain URL with a one-line summary. Pure."""
    if not progressed:
        return None
    if undeliverable is not None:
        body = one_line(undeliverable, _BODY_CHARS)
        return Ping(fail_url(config.url), body.encode(), "fail")
    return Ping(config.url, one_line(summary, _BODY_CHARS).encode(), "ok")


class DeadmanSwitch:
    """Pings on a drift-free schedule while configured; `configure` (start, reload) swaps the
    settings and restarts the schedule. `progress()` is the scheduler's loop counter (it advances
    at least once a second while the scheduler runs); `undeliverable()` is None while some channel
    can deliver, else why not; `summary()` is the success ping's body."""

    def __init__(
        self,
        counter: Counter,
        *,
        progress: Callable[[], float],
        healthy: Callable[[], bool],
        undeliverable: Callable[[], str | None],
        summary: Callable[[], str],
    ) -> None:
        self._counter = counter
        self._progress = progress
        self._healthy = healthy
        self._undeliverable = undeliverable
        self._summary = summary
        self.config: DeadmanConfig | None = None
        self._poster: HttpPoster | None = None
        self._poster_timeout = 0.0
        self._changed = asyncio.Event()
        self._last_progress: float | None = None
        self._stalled = False
        self._failing_reason: str | None = None
        self._error_logged_at: float | None = None
        self._errors_unlogged = 0

    def configure(self, config: DeadmanConfig | None) -> None:
        if config == self.config:
            return
        self.config = config
        if config is not None:
            for result in RESULTS:
                self._counter.labels(result)  # every series from the start, at 0
            log.info("dead man's switch %s", f"every={config.every:g}s")
        self._changed.set()

    async def _post(self, ping: Ping, config: DeadmanConfig) -> None:
        from sentinel.notify.channels.http import HttpPoster

        if self._poster is None or self._poster_timeout != config.timeout:
            if self._poster is not None:
                await self._poster.close()
            self._poster = HttpPoster(timeout=config.timeout)
            self._poster_timeout = config.timeout
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        await self._poster.post(ping.url, ping.body, headers, "dead man's switch")

    def _made_progress(self) -> bool:
        try:
            current = self._progress()
            healthy = self._healthy()
        except Exception:
            log.exception("dead man's switch: progress check failed; not pinging")
            return False
        progressed = healthy and current != self._last_progress
        self._last_progress = current
        if not progressed and not self._stalled:
            log.error("scheduler made no progress; withholding the dead man's switch ping")
        elif progressed and self._stalled:
            log.warning("scheduler is making progress again; dead man's switch pings resumed")
        self._stalled = not progressed
        return progressed

    async def tick(self, config: DeadmanConfig) -> Result:
        """One ping (or none); returns what was counted. Never raises but CancelledError."""
        from sentinel.notify.errors import SendError

        progressed = self._made_progress()
        reason = self._undeliverable() if progressed else None
        ping = plan_ping(
            config, progressed=progressed, undeliverable=reason, summary=self._summary()
        )
        if ping is None:
            self._counter.labels("withheld").inc()
            return "withheld"
        if reason != self._failing_reason:
            if reason is not None:
                log.error("dead man's switch: pinging /fail: %s", reason)
            else:
                log.warning("dead man's switch: alerts can be delivered again")
            self._failing_reason = reason
        try:
            # The poster's own timeout ends the request; this bounds everything around it too.
            async with asyncio.timeout(config.timeout + 1.0):
                await self._post(ping, config)
        except (SendError, TimeoutError) as exc:
            self._ping_failed(str(exc) or "timed out")
            self._counter.labels("error").inc()
            return "error"
        except Exception as exc:  # whatever the client raised, the ping failed: count it
            self._ping_failed(f"{type(exc).__name__}: {exc}")
            self._counter.labels("error").inc()
            return "error"
        if self._error_logged_at is not None:
            log.warning("dead man's switch reachable again")
            self._error_logged_at, self._errors_unlogged = None, 0
        self._counter.labels(ping.result).inc()
        return ping.result

    def _ping_failed(self, detail: str) -> None:
        now = time.monotonic()
        if self._error_logged_at is not None and now - self._error_logged_at < ERROR_LOG_EVERY:
            self._errors_unlogged += 1
            return
        more = (
            f" ({self._errors_unlogged} more since the last line)" if self._errors_unlogged else ""
        )
        log.warning("dead man's switch ping failed: %s%s", one_line(detail, 300), more)
        self._error_logged_at, self._errors_unlogged = now, 0

    async def run(self) -> None:
        """Until cancelled: ping every `every` while configured, first right away (startup is
        progress). A ping never outlasts its interval (its timeout is at most half of it)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._changed.clear()
                config = self.config
                if config is None:
                    await self._changed.wait()
                    continue
                self._last_progress = None  # the first tick counts as progress
                deadline = loop.time()
                while not self._changed.is_set():
                    try:
                        await self.tick(config)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # a bug here must never take sentinel down
                        log.exception("dead man's switch: ping failed unexpectedly")
                    deadline = max(deadline + config.every, loop.time())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            await self._changed.wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (run() does it when cancelled)."""
        if self._poster is not None:
            with contextlib.suppress(Exception):
                await self._poster.close()
            self._poster = None
