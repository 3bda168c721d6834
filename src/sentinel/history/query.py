"""Reads the history figures the status page, the API and the CLI show.

Stored rows plus the recorder's not yet written deltas, so a figure is never a minute behind.
What comes from the store is cached until the recorder's next flush (at most a minute), so
polling the page every few seconds reads SQLite once a minute, not once a request.

Windows: "24h" is the current hour and the 23 before it (hourly rows); "7d", "30d" and "90d" are
the current UTC day and the 6, 29 or 89 before it (daily rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sentinel.history import db
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup
from sentinel.store import Store, StoreError

WINDOWS: tuple[tuple[str, int], ...] = (("7d", 7), ("30d", 30), ("90d", 90))
PAGE_DAYS = 90
PAGE_HOURS = 24
SITE_PAGE_HOURS = 7 * 24
PAGE_INCIDENTS = 10
MAX_INCIDENTS = 1000  # the most a per-site page or an API answer lists
CACHE_SECONDS = 60.0  # the cached store rows expire even if no flush comes


@dataclass(frozen=True, slots=True)
class Period:
    """One hour or one day of a site: its rollup, or None (no data)."""

    start_ms: int
    rollup: Rollup | None

    @property
    def uptime(self) -> float | None:
        return None if self.rollup is None else self.rollup.uptime()


@dataclass(frozen=True, slots=True)
class SiteHistory:
    uptime: dict[str, float | None]  # "24h", "7d", "30d", "90d" -> share, None = no data
    days: tuple[Period, ...]  # oldest first
    hours: tuple[Period, ...]  # oldest first
    incidents: tuple[db.Incident, ...]  # newest first


def merged(rollups: Iterable[Rollup | None]) -> Rollup | None:
    total: Rollup | None = None
    for r in rollups:
        if r is None:
            continue
        if total is None:
            total = r.copy()
        else:
            total.merge(r)
    return total


def periods(rows: Mapping[int, Rollup], first: int, count: int, size_ms: int) -> tuple[Period, ...]:
    return tuple(Period((first + i) * size_ms, rows.get(first + i)) for i in range(count))


class HistoryReader:
    def __init__(
        self,
        store: Store,
        recorder: HistoryRecorder | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`recorder` None: the store alone (`sentinel status` reading a store read-only)."""
        self.store = store
        self.recorder = recorder
        self._clock = clock
        # For the all-sites page, two caches: the rows of past hours and days (read again when
        # the hour changes, or after CACHE_SECONDS * 60), and the rows of the current hour and
        # day with the latest incidents (read again after each write of the recorder).
        self._past_key: tuple[int, int] | None = None
        self._past_at = 0.0
        self._past_days: dict[str, dict[int, Rollup]] = {}
        self._past_hours: dict[str, dict[int, Rollup]] = {}
        self._now_key: tuple[int, int, int] | None = None
        self._now_at = 0.0
        self._now_days: dict[str, dict[int, Rollup]] = {}
        self._now_hours: dict[str, dict[int, Rollup]] = {}
        self._incidents: dict[str, list[db.Incident]] = {}

    def _stored(self, now_ms: int) -> None:
        hour, day = now_ms // HOUR_MS, now_ms // DAY_MS
        mono = time.monotonic()
        if (day, hour) != self._past_key or mono - self._past_at >= CACHE_SECONDS * 60:
            # The bars need only uptime: no histograms for the days.
            self._past_days = db.read_rollups(
                self.store, db.DAY, day - PAGE_DAYS + 1, until_period=day, latency=False
            )
            self._past_hours = db.read_rollups(
                self.store, db.HOUR, hour - PAGE_HOURS + 1, until_period=hour
            )
            self._past_key, self._past_at = (day, hour), mono
            self._now_key = None
        generation = 0 if self.recorder is None else self.recorder.generation
        key = (generation, day, hour)
        if key != self._now_key or mono - self._now_at >= CACHE_SECONDS:
            self._now_days = db.read_rollups(self.store, db.DAY, day, latency=False)
            self._now_hours = db.read_rollups(self.store, db.HOUR, hour)
            self._incidents = {}
            for incident in db.read_latest_incidents(self.store, PAGE_INCIDENTS):
                self._incidents.setdefault(incident.site, []).append(incident)
            self._now_key, self._now_at = key, mono

    def _stored_of(self, name: str) -> tuple[dict[int, Rollup], dict[int, Rollup]]:
        hours = {**self._past_hours.get(name, {}), **self._now_hours.get(name, {})}
        days = {**self._past_days.get(name, {}), **self._now_days.get(name, {})}
        return hours, days

    def _with_pending(
        self, name: str, hours: Mapping[int, Rollup], days: Mapping[int, Rollup]
    ) -> tuple[dict[int, Rollup], dict[int, Rollup]]:
        h, d = dict(hours), dict(days)
        pending = {} if self.recorder is None else self.recorder.pending_for(name)
        for hour, delta in pending.items():  # (a copy where a delta adds: the cache stays)
            day = hour * HOUR_MS // DAY_MS
            for rows, key in ((h, hour), (d, day)):
                stored = rows.get(key)
                total = Rollup() if stored is None else stored.copy()
                total.merge(delta)
                rows[key] = total
        return h, d

    def overview(self, names: Iterable[str]) -> dict[str, SiteHistory]:
        """The all-sites page: 90 days, 24 hours and the last 10 incidents of each site.
        An unreadable store gives no history (the page still shows the live states)."""
        now_ms = int(self._clock() * 1000)
        try:
            self._stored(now_ms)
        except StoreError:
            return {}
        out = {}
        for name in names:
            hours, days = self._with_pending(name, *self._stored_of(name))
            out[name] = self._summarise(
                now_ms, hours, days, PAGE_HOURS, tuple(self._incidents.get(name, ()))
            )
        return out

    def uptimes(self, names: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """Only the uptime figures (for /api/status): no periods built, no histograms used."""
        now_ms = int(self._clock() * 1000)
        hour, day = now_ms // HOUR_MS, now_ms // DAY_MS
        try:
            self._stored(now_ms)
        except StoreError:
            return {}
        out = {}
        for name in names:
            hours, days = self._with_pending(name, *self._stored_of(name))
            figures: dict[str, float | None] = {"24h": _uptime(hours, hour - 23, hour)}
            for label, n in WINDOWS:
                figures[label] = _uptime(days, day - n + 1, day)
            out[name] = figures
        return out

    def site(self, name: str, *, hours: int = SITE_PAGE_HOURS) -> SiteHistory | None:
        """One site's page: 90 days, `hours` hours and every incident kept (bounded)."""
        now_ms = int(self._clock() * 1000)
        hour, day = now_ms // HOUR_MS, now_ms // DAY_MS
        try:
            stored_days = db.read_rollups(self.store, db.DAY, day - PAGE_DAYS + 1, name)
            stored_hours = db.read_rollups(self.store, db.HOUR, hour - hours + 1, name)
            incidents = db.read_incidents(self.store, site=name, limit=MAX_INCIDENTS)
        except StoreError:
            return None
        h, d = self._with_pending(name, stored_hours.get(name, {}), stored_days.get(name, {}))
        return self._summarise(now_ms, h, d, hours, tuple(incidents))

    def rollups(self, name: str, resolution: str, days: int) -> tuple[Period, ...]:
        """The API's history: hourly or daily periods of the last `days` days, oldest first."""
        now_ms = int(self._clock() * 1000)
        size = HOUR_MS if resolution == "hour" else DAY_MS
        count = days * (24 if resolution == "hour" else 1)
        first = now_ms // size - count + 1
        table = db.HOUR if resolution == "hour" else db.DAY
        stored = db.read_rollups(self.store, table, first, name).get(name, {})
        h, d = self._with_pending(
            name, stored if size == HOUR_MS else {}, stored if size == DAY_MS else {}
        )
        return periods(h if size == HOUR_MS else d, first, count, size)

    @staticmethod
    def _summarise(
        now_ms: int,
        hours: Mapping[int, Rollup],
        days: Mapping[int, Rollup],
        n_hours: int,
        incidents: tuple[db.Incident, ...],
    ) -> SiteHistory:
        hour, day = now_ms // HOUR_MS, now_ms // DAY_MS
        uptime: dict[str, float | None] = {"24h": _uptime(hours, hour - 23, hour)}
        for label, n in WINDOWS:
            uptime[label] = _uptime(days, day - n + 1, day)
        return SiteHistory(
            uptime=uptime,
            days=periods(days, day - PAGE_DAYS + 1, PAGE_DAYS, DAY_MS),
            hours=periods(hours, hour - n_hours + 1, n_hours, HOUR_MS),
            incidents=incidents,
        )


def _uptime(rows: Mapping[int, Rollup], first: int, last: int) -> float | None:
    """Uptime over periods first..last (sums of integers: no rollups copied)."""
    covered = down = 0
    for period, r in rows.items():
        if first <= period <= last:
            covered += r.covered_ms
            down += r.down_ms
    return None if covered <= 0 else max(0.0, 1.0 - down / covered)
