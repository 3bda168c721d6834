"""The history recorder: what the daemon observes, batched in memory and written once a minute.

The thin I/O shell around `rollup`: `record` (called for every probe) only adds to in-memory
deltas, one per site and hour; `flush` (every `[history] write_every`, 60 s by default, and at a
clean stop) merges them into the store, SITES_PER_WRITE deltas to a transaction so the loop runs
in between.
Incidents are rare and written when they open, get a reminder and close. A kill -9 loses at most
the deltas of the last minute (shown as no data), never counts a probe twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from sentinel.config import SiteConfig
from sentinel.history import db
from sentinel.history.rollup import HOUR_MS, Coverage, Rollup, split
from sentinel.history.settings import HistoryConfig
from sentinel.logsetup import kv
from sentinel.monitor import Event, Recovered, SiteState, Status, StillDown, WentDown
from sentinel.probes.result import ProbeResult
from sentinel.store import Store, StoreError

log = logging.getLogger("sentinel.history")

PRUNE_EVERY = 3600.0  # seconds
SITES_PER_WRITE = 200  # deltas a transaction: a few ms of the loop each
# Pending deltas when the store keeps failing: the oldest hours go first beyond this.
MAX_PENDING = 100_000
# A gap between two probes of a site longer than this many intervals (plus the timeout) is no
# data: sentinel was stopped or stalled.
GAP_INTERVALS = 2.0


def ms(seconds: float) -> int:
    return int(seconds * 1000)


class HistoryRecorder:
    def __init__(
        self,
        store: Store,
        config: HistoryConfig,
        on_error: Callable[[StoreError], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self._on_error = on_error
        self._clock = clock
        # site -> hour number -> the delta not yet written
        self.pending: dict[str, dict[int, Rollup]] = {}
        self._coverage: dict[str, Coverage] = {}
        # site -> (incident start ms, reason, message) of its latest failure while DOWN,
        # written to the incident log at the next flush.
        self._last_failure: dict[str, tuple[int, str, str]] = {}
        self.cert_expiry: dict[str, float] = {}  # site -> NotAfter seen by its latest probe
        self.generation = 0  # counts flushes: readers cache what they read from the store
        self._last_prune = 0.0

    # ------------------------------------------------------------------ the probe path

    def record(  # noqa: PLR0917 (the daemon's probe path: one call, no keyword overhead)
        self,
        site: SiteConfig,
        result: ProbeResult,
        before: SiteState,
        after: SiteState,
        events: Sequence[Event],
        now: float,
    ) -> None:
        name = site.name
        t_ms = ms(now)
        cap_ms = ms(GAP_INTERVALS * site.interval + site.timeout + 5.0)
        coverage = self._coverage.get(name)
        if coverage is None:
            coverage = self._coverage[name] = Coverage(cap_ms)
        coverage.cap_ms = cap_ms
        # Incidents follow the state, not the alerts: a flapping site changes state without
        # DOWN/RECOVERED events, and its downtime and incident log must still add up.
        went_down = next((e for e in events if isinstance(e, WentDown)), None)
        entered_down = before.status is not Status.DOWN and after.status is Status.DOWN
        failing_since = went_down.since if went_down is not None else after.incident_started
        watched, down = coverage.observe(
            t_ms,
            was_down=before.status is Status.DOWN,
            went_down=entered_down and failing_since is not None,
            failing_since_ms=None if failing_since is None else ms(failing_since),
        )
        self._acc(name, t_ms // HOUR_MS).add_probe(result.ok, int(result.total * 1_000_000))
        if watched is not None:
            for hour, span in split(*watched, HOUR_MS):
                self._acc(name, hour).covered_ms += span
        if down is not None:
            for hour, span in split(*down, HOUR_MS):
                self._acc(name, hour).down_ms += span
        if result.tls_expiry is not None:
            self.cert_expiry[name] = result.tls_expiry
        if not result.ok and after.status is Status.DOWN and after.incident_started is not None:
            self._last_failure[name] = (ms(after.incident_started), result.reason, result.message)
        for event in events:
            self._incident_event(event)
        if went_down is None and entered_down and after.incident_started is not None:
            self._quiet_incident(name, ms(after.incident_started), result, ended_ms=None)
        left_down = before.status is Status.DOWN and after.status is not Status.DOWN
        recovered = any(isinstance(e, Recovered) for e in events)
        if left_down and not recovered and before.incident_started is not None:
            self._quiet_incident(name, ms(before.incident_started), result, ended_ms=t_ms)

    def _quiet_incident(
        self, name: str, started_ms: int, result: ProbeResult, *, ended_ms: int | None
    ) -> None:
        """Open or close an incident that sent no alert (the site is flapping)."""
        try:
            if ended_ms is None:
                db.incident_opened(
                    self.store, name, started_ms, result.reason, result.message, alerts=0
                )
            else:
                self._last_failure.pop(name, None)
                db.incident_updated(self.store, name, started_ms, ended_ms=ended_ms)
        except StoreError as exc:
            self._on_error(exc)

    def _acc(self, name: str, hour: int) -> Rollup:
        hours = self.pending.get(name)
        if hours is None:
            hours = self.pending[name] = {}
        acc = hours.get(hour)
        if acc is None:
            acc = hours[hour] = Rollup()
        return acc

    def _incident_event(self, event: Event) -> None:
        try:
            if isinstance(event, WentDown):
                db.incident_opened(
                    self.store, event.site, ms(event.since), event.reason, event.message
                )
            elif isinstance(event, StillDown):
                last = (event.reason, event.message)
                db.incident_updated(self.store, event.site, ms(event.since), last=last, alerts=1)
            elif isinstance(event, Recovered):
                failure = self._last_failure.pop(event.site, None)
                last = None
                if failure is not None and failure[0] == ms(event.since):
                    last = (failure[1], failure[2])
                db.incident_updated(
                    self.store,
                    event.site,
                    ms(event.since),
                    last=last,
                    alerts=1,
                    ended_ms=ms(event.until),
                )
        except StoreError as exc:
            self._on_error(exc)

    def forget(self, name: str) -> None:
        """A site left the config: its watching stops (its stored history stays until pruned)."""
        self._coverage.pop(name, None)
        self._last_failure.pop(name, None)
        self.cert_expiry.pop(name, None)

    def pending_for(self, name: str) -> dict[int, Rollup]:
        """hour -> the not yet written delta of one site (readers add it to the stored rows)."""
        return self.pending.get(name, {})

    # ------------------------------------------------------------------ writing

    async def flush(self) -> int:
        """Write every pending delta; returns how many were written."""
        written = 0
        keys = sorted(
            ((n, h) for n, hours in self.pending.items() for h in hours), key=lambda k: k[1]
        )
        for start in range(0, len(keys), SITES_PER_WRITE):
            chunk = {
                (n, h): self.pending[n][h]
                for n, h in keys[start : start + SITES_PER_WRITE]
                if h in self.pending.get(n, {})
            }
            try:
                db.write_hours(self.store, chunk)
            except StoreError as exc:
                self._on_error(exc)
                break
            for name, hour in chunk:  # (no await since the write: nothing was added meanwhile)
                del self.pending[name][hour]
                if not self.pending[name]:
                    del self.pending[name]
            written += len(chunk)
            await asyncio.sleep(0)
        self._write_last_failures()
        self._bound_pending()
        self.generation += 1
        return written

    def _write_last_failures(self) -> None:
        for name, (started_ms, reason, message) in list(self._last_failure.items()):
            try:
                db.incident_updated(self.store, name, started_ms, last=(reason, message))
            except StoreError as exc:
                self._on_error(exc)
                return

    def _bound_pending(self) -> None:
        keys = [(n, h) for n, hours in self.pending.items() for h in hours]
        excess = len(keys) - MAX_PENDING
        if excess > 0:
            for name, hour in sorted(keys, key=lambda k: k[1])[:excess]:
                del self.pending[name][hour]
                if not self.pending[name]:
                    del self.pending[name]
            log.warning("history: store unwritable, dropped %d oldest hourly deltas", excess)

    def prune(self) -> int:
        now_ms = ms(self._clock())
        try:
            gone = db.prune(
                self.store,
                now_ms,
                keep_hourly_ms=ms(self.config.keep_hourly),
                keep_daily_ms=ms(self.config.keep_daily),
                keep_incidents_ms=ms(self.config.keep_incidents),
            )
        except StoreError as exc:
            self._on_error(exc)
            return 0
        self.generation += 1
        if gone:
            log.info("history pruned %s", kv(rows=gone))
        return gone

    async def run(self) -> None:
        """Flush every `write_every` seconds and prune hourly, until cancelled."""
        self.prune()
        self._last_prune = time.monotonic()
        while True:
            await asyncio.sleep(self.config.write_every)
            written = await self.flush()
            log.debug("history written %s", kv(deltas=written))
            if time.monotonic() - self._last_prune >= PRUNE_EVERY:
                self.prune()
                self._last_prune = time.monotonic()
