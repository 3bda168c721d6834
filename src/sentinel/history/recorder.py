"""The history recorder: what the daemon observes, batched in memory and written once a minute.

The thin I/O shell around `rollup`: `record` (called for every probe) only adds to in-memory
deltas, one per site and hour; `flush` (every `[history] write_every`, 60 s by default, and at a
clean stop) merges them into the store, SITES_PER_WRITE deltas to a transaction so the loop runs
in between.
Incidents are rare and written when they open, get a reminder and close. A kill -9 loses at most
the deltas of the last minute (shown as no data), never counts a probe twice.

Muted downtime: `record(..., muted=True)` (a maintenance window or a silence covers the site at
this probe) books the downtime the probe accounts for (the stretch since the previous probe, or
the failing streak it confirms) as `excused_ms` as well as `down_ms`, in the rollups and on the
incident. An incident opens when the site's state becomes DOWN, whether or not its alert was
held, so muted and flapping downtime are in the log too (with alerts = 0 if none went out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(slots=True)
class _Excused:
    """Excused downtime of a site's open incident not yet added to the store."""

    started_ms: int
    pending_ms: int = 0


# Told after each committed write: the rows' new totals, and the sites whose incidents changed.
Listener = Callable[[db.Written, frozenset[str]], None]


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
        self._excused: dict[str, _Excused] = {}
        self._incidents_changed: set[str] = set()
        self.listeners: list[Listener] = []

    # ------------------------------------------------------------------ the probe path

    def record(  # noqa: PLR0917 (the daemon's probe path: one call)
        self,
        site: SiteConfig,
        result: ProbeResult,
        before: SiteState,
        after: SiteState,
        events: Sequence[Event],
        now: float,
        muted: bool = False,
    ) -> None:
        """One probe. `muted`: a maintenance window or a silence covered the site at it."""
        name = site.name
        t_ms = ms(now)
        cap_ms = ms(GAP_INTERVALS * site.interval + site.timeout + 5.0)
        coverage = self._coverage.get(name)
        if coverage is None:
            coverage = self._coverage[name] = Coverage(cap_ms)
        coverage.cap_ms = cap_ms
        # From the state, not the events: a DOWN whose alert is held (muted, flapping) is one.
        went_down = before.status is not Status.DOWN and after.status is Status.DOWN
        started = after.incident_started if went_down else None
        watched, down = coverage.observe(
            t_ms,
            was_down=before.status is Status.DOWN,
            went_down=went_down,
            failing_since_ms=None if started is None else ms(started),
        )
        hour = t_ms // HOUR_MS
        acc = self._acc(name, hour)
        acc.add_probe(result.ok, int(result.total * 1_000_000))
        if watched is not None:
            if watched[0] // HOUR_MS == hour:  # the common case: split() would yield one piece
                acc.covered_ms += watched[1] - watched[0]
            else:
                for piece, span in split(*watched, HOUR_MS):
                    self._acc(name, piece).covered_ms += span
        if down is not None:
            for hour, span in split(*down, HOUR_MS):
                acc = self._acc(name, hour)
                acc.down_ms += span
                if muted:
                    acc.excused_ms += span
        if result.tls_expiry is not None:
            self.cert_expiry[name] = result.tls_expiry
        if not result.ok and after.status is Status.DOWN and after.incident_started is not None:
            self._last_failure[name] = (ms(after.incident_started), result.reason, result.message)
        if events or before.status is not after.status:  # (else _incident has nothing to do)
            self._incident(
                name=name, result=result, before=before, after=after, events=events, now=now
            )
        if muted and down is not None:
            incident = after.incident_started
            if incident is None:  # the probe that ended it: the stretch was the incident's
                incident = before.incident_started
            if incident is not None:
                self._excuse(name, ms(incident), down[1] - down[0])

    def _excuse(self, name: str, started_ms: int, span_ms: int) -> None:
        entry = self._excused.get(name)
        if entry is None or entry.started_ms != started_ms:
            if entry is not None:
                self._write_excused(name, entry)
            entry = self._excused[name] = _Excused(started_ms)
        entry.pending_ms += span_ms

    def _incident(
        self,
        *,
        name: str,
        result: ProbeResult,
        before: SiteState,
        after: SiteState,
        events: Sequence[Event],
        now: float,
    ) -> None:
        sent_down = any(isinstance(e, WentDown) for e in events)
        try:
            if before.status is not Status.DOWN and after.status is Status.DOWN:
                if after.incident_started is not None:
                    db.incident_opened(
                        self.store,
                        name,
                        ms(after.incident_started),
                        result.reason,
                        result.message,
                        alerts=1 if sent_down else 0,
                    )
                    self._incident_changed(name)
                return
            for event in events:
                if isinstance(event, WentDown):  # a held DOWN alert, sent now
                    db.incident_updated(self.store, name, ms(event.since), alerts=1)
                elif isinstance(event, StillDown):
                    latest = (event.reason, event.message)
                    db.incident_updated(self.store, name, ms(event.since), last=latest, alerts=1)
                self._incident_changed(name)
            if before.status is Status.DOWN and after.status is not Status.DOWN:
                started = before.incident_started
                if started is None:
                    return
                recovered = next((e for e in events if isinstance(e, Recovered)), None)
                until = max(started, after.since if after.since is not None else now)
                failure = self._last_failure.pop(name, None)
                last: tuple[str, str] | None = None
                if failure is not None and failure[0] == ms(started):
                    last = (failure[1], failure[2])
                db.incident_updated(
                    self.store,
                    name,
                    ms(started),
                    last=last,
                    alerts=1 if recovered is not None else 0,
                    ended_ms=ms(recovered.until if recovered is not None else until),
                )
                self._incident_changed(name)
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

    def forget(self, name: str) -> None:
        """A site left the config: its watching stops (its stored history stays until pruned)."""
        self._coverage.pop(name, None)
        self._last_failure.pop(name, None)
        self._excused.pop(name, None)
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
                totals = db.write_hours(self.store, chunk)
            except StoreError as exc:
                self._on_error(exc)
                break
            for name, hour in chunk:  # (no await since the write: nothing was added meanwhile)
                del self.pending[name][hour]
                if not self.pending[name]:
                    del self.pending[name]
            written += len(chunk)
            self._tell(totals, frozenset())
            await asyncio.sleep(0)
        self._write_last_failures()
        for name, entry in list(self._excused.items()):
            self._write_excused(name, entry)
        self._bound_pending()
        self.generation += 1
        changed, self._incidents_changed = frozenset(self._incidents_changed), set()
        self._tell({}, changed)
        return written

    def _write_excused(self, name: str, entry: _Excused) -> None:
        if entry.pending_ms <= 0:
            return
        try:
            db.incident_updated(self.store, name, entry.started_ms, excused_ms=entry.pending_ms)
        except StoreError as exc:
            self._on_error(exc)
            return
        entry.pending_ms = 0
        self._incidents_changed.add(name)

    def _incident_changed(self, name: str) -> None:
        """A site's incident row was just committed (opened, updated, ended): the listeners
        hear it now, not at the next flush, so the page's kept incident list is never behind
        the store (it read the new row, or showed an ended incident as ongoing, until then)."""
        self._tell({}, frozenset((name,)))

    def _tell(self, totals: db.Written, incidents: frozenset[str]) -> None:
        for listener in self.listeners:
            listener(totals, incidents)

    def _write_last_failures(self) -> None:
        for name, (started_ms, reason, message) in list(self._last_failure.items()):
            try:
                db.incident_updated(self.store, name, started_ms, last=(reason, message))
                self._incidents_changed.add(name)
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
