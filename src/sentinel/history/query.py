"""Reads the history figures the status page, the API and the CLI show.

Stored rows plus the recorder's not yet written deltas, so a figure is never a minute behind.
For the all-sites page (and /api/status) each site's figures are read from the store once, then
kept in memory and updated with what the recorder writes (its listener), so polling the page
reads nothing from SQLite and holds the loop only for the sites it renders.

Windows: "24h" is the current hour and the 23 before it (hourly rows); "7d", "30d" and "90d" are
the current UTC day and the 6, 29 or 89 before it (daily rows).
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from sentinel.durations import duration_step
from sentinel.history import db
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, PackedRollup, Rollup, uptime_of
from sentinel.store import Store, StoreError

WINDOWS: tuple[tuple[str, int], ...] = (("7d", 7), ("30d", 30), ("90d", 90))
PAGE_DAYS = 90
PAGE_HOURS = 24
SITE_PAGE_HOURS = 7 * 24
PAGE_INCIDENTS = 10
MAX_INCIDENTS = 1000  # the most a per-site page or an API answer lists
# The all-sites page works out the latest hour's latency (p50, p95) of a site this often, the
# sites' turns spread over it: what moves the chart is then a few sites a request, not all.
LATENCY_EVERY_MS = 300_000
# `preload` reads this many sites a query (~1-2 ms a site) and hands the loop back once a slice
# took this long.
TEXTS = 10_000  # distinct incident texts shared at most (then the sharing starts afresh)
PRELOAD_SITES = 1
PRELOAD_SECONDS = 0.004


@dataclass(frozen=True, slots=True)
class Period:
    """One hour or one day of a site: its rollup, or None (no data)."""

    start_ms: int
    rollup: Rollup | None
    # (p50, p95) in microseconds when the rollup carries no histogram (the page's kept hours)
    latency: tuple[int | None, int | None] | None = None

    @property
    def uptime(self) -> float | None:
        return None if self.rollup is None else self.rollup.uptime()

    def p50_p95(self) -> tuple[int | None, int | None]:
        if self.latency is not None:
            return self.latency
        if self.rollup is None:
            return None, None
        return self.rollup.percentile_us(0.5), self.rollup.percentile_us(0.95)


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


class HistoryKey(NamedTuple):
    """What each history block of a site shows: two equal parts give the same block (for the
    same page settings), so the page renders a block again only when its part changed. (A
    named tuple: made for every site on every request, and cheaper to make than a frozen
    dataclass.) Each part is its fields packed into one integer (`uptime_key` ...): the page keeps
    the key of every site's blocks, and as tuples of integers they were ~0.8 KiB a site."""

    uptime: object  # basis points, rounded down (what the page shows)
    days: object  # the day, the past days' version, today's bar
    hours: object  # the hour, the past hours' version, this hour's p50 and p95
    incidents: object  # the incidents' version, and the time while one is ongoing


# Each part of a `HistoryKey` as one integer, exact: the first field on top (any size >= 0),
# each next one in a fixed number of bits. Equal integers iff equal fields when every field
# fits (the shift of a negative field is -1, of one too wide not 0); otherwise the fields as
# they are (a tuple, never equal to an integer: the block is drawn again, never shown stale).
# Four plain functions, no loop: they run for every site on every request (~0.3 us each).


def uptime_key(b24: int, b7: int, b30: int, b90: int) -> object:
    """Basis points + 1 (0: no data) of 24 h, 7, 30 and 90 days; up to 10,001 (14 bits)."""
    if b24 < 0 or (b7 | b30 | b90) >> 14:
        return (b24, b7, b30, b90)
    return ((b24 << 14 | b7) << 14 | b30) << 14 | b90


def days_key(day: int, version: int, bar: int, down_s: int, excused_s: int) -> object:
    """The day, the past days' version (32 bits), today's basis points + 1 (14), its seconds
    down and excused (24 each)."""
    if day < 0 or (version >> 32) | (bar >> 14) | (down_s >> 24) | (excused_s >> 24):
        return (day, version, bar, down_s, excused_s)
    return (((day << 32 | version) << 14 | bar) << 24 | down_s) << 24 | excused_s


def hours_key(hour: int, version: int, p50: int, p95: int) -> object:
    """The hour, the past hours' version (32 bits), this hour's p50 and p95 in microseconds
    + 1 (0: none; 40 bits each)."""
    if hour < 0 or (version >> 32) | (p50 >> 40) | (p95 >> 40):
        return (hour, version, p50, p95)
    return ((hour << 32 | version) << 40 | p50) << 40 | p95


def incidents_key(version: int, ongoing_s: int) -> object:
    """The incidents' version, and the time + 1 while one is ongoing (0: none; 40 bits)."""
    if version < 0 or ongoing_s >> 40:
        return (version, ongoing_s)
    return version << 40 | ongoing_s


class LazyHistory(NamedTuple):
    """The all-sites page's history of one site: `key` says what its blocks show, `uptime` is
    its figures; `build(part)` makes the `SiteHistory` a block needs ("days", "hours"; None for
    all), only for a block not cached under its key."""

    key: HistoryKey
    uptime: dict[str, float | None]
    build: Callable[[str | None], SiteHistory]
    # The past days' figures as of (the current day, their version): equal, the 89 past days
    # of `build("days")` are the same; and today's (covered, down, excused) in ms.
    past_days: tuple[int, int] = (0, -1)
    today: tuple[int, int, int] = (0, 0, 0)


_NONE = -1  # a slot with no stored row
_ZERO3 = (0, 0, 0)
_MAX = 2**31 - 1  # the kept figures are 32-bit
_DAY_FIELDS = 3  # covered, down, excused
_HOUR_FIELDS = 5  # covered, down, excused, p50 (us), p95 (us)


class _Site:
    """What the all-sites page needs of one site, kept in memory between requests: the stored
    figures of the past 89 days and 23 hours in flat integer arrays, packed (`pack`), and the
    stored rows of the current day and hour. Loaded from the store once, then kept current by
    the recorder's writes (`HistoryReader._written`), never re-read."""

    __slots__ = (
        "day",
        "days",
        "days_version",
        "hour",
        "hours",
        "hours_version",
        "incidents",
        "incidents_stale",
        "incidents_version",
        "lat",
        "now_day",
        "now_hour",
        "offset",
        "ongoing",
        "sums",
    )

    def __init__(self, day: int, hour: int) -> None:
        self.day = day  # the current day and hour when it was loaded or last moved on
        self.hour = hour
        # 32-bit: a day has 86.4M ms, a latency bucket's bound is ~2 minutes in microseconds
        # (values are clamped to _MAX, a store's impossible figure must not break the page)
        # Kept packed (`pack`: zlib, ~1.7 KiB -> a few hundred bytes a site): read only when
        # a block is drawn again or a window's sums are worked out, written once an hour.
        self.days: array[int] | bytes = array("i", [_NONE, 0, 0] * (PAGE_DAYS - 1))
        self.hours: array[int] | bytes = array("i", [_NONE, 0, 0, _NONE, _NONE] * (PAGE_HOURS - 1))
        self.days_version = 0
        self.hours_version = 0
        self.now_day: tuple[int, int, int] | None = None
        # (packed: a dict of latency buckets a site was ~0.5 KiB, for a figure read every 5 min)
        self.now_hour: PackedRollup | None = None
        # The latest incidents, kept only while needed: until their block was built once, and
        # while one is ongoing (its block changes every second). None: read them when needed.
        self.incidents: tuple[db.Incident, ...] | None = None
        self.incidents_stale = True  # changed since read: read again (a new version)
        self.incidents_version = 0
        self.sums: array[int] | None = None  # past window sums; None: to be computed
        # (turn, p50, p95) of the current hour, worked out once every LATENCY_EVERY_MS
        self.lat: tuple[int, int | None, int | None] | None = None
        self.ongoing = False  # one of the incidents is still open
        self.offset = 0  # this site's turn to work out its latency (spread over the sites)

    def set_day(self, period: int, r: Rollup) -> None:
        if period == self.day:
            self.now_day = (r.covered_ms, r.down_ms, r.excused_ms)
            return
        self.set_past_day(period, r.covered_ms, r.down_ms, r.excused_ms)

    def set_past_day(self, period: int, covered: int, down: int, excused: int) -> None:
        i = period - (self.day - PAGE_DAYS + 1)
        if 0 <= i < PAGE_DAYS - 1:
            d = self.days = _opened(self.days)
            d[i * 3], d[i * 3 + 1], d[i * 3 + 2] = (
                min(covered, _MAX),
                min(down, _MAX),
                min(excused, _MAX),
            )
            self.days_version += 1
            self.sums = None

    def set_hour(self, period: int, r: Rollup) -> None:
        if period == self.hour:
            self.now_hour = PackedRollup.of(r)
            return
        i = period - (self.hour - PAGE_HOURS + 1)
        if 0 <= i < PAGE_HOURS - 1:
            p50, p95 = r.percentile_us(0.5), r.percentile_us(0.95)
            h = self.hours = _opened(self.hours)
            h[i * 5 : i * 5 + 5] = array(
                "i",
                (
                    min(r.covered_ms, _MAX),
                    min(r.down_ms, _MAX),
                    min(r.excused_ms, _MAX),
                    _NONE if p50 is None else min(p50, _MAX),
                    _NONE if p95 is None else min(p95, _MAX),
                ),
            )
            self.hours_version += 1
            self.sums = None

    def move_to(self, day: int, hour: int) -> bool:
        """Move the windows on to a later day and hour; False if too far (read again)."""
        if (day, hour) == (self.day, self.hour):
            return True
        if hour < self.hour or hour - self.hour >= PAGE_HOURS or day - self.day > 1:
            return False
        if hour != self.hour:
            now_hour, old = self.now_hour, self.hour
            shift = (hour - self.hour) * _HOUR_FIELDS
            self.hours = _opened(self.hours)[shift:] + array("i", [_NONE, 0, 0, _NONE, _NONE]) * (
                hour - self.hour
            )
            self.hour, self.now_hour, self.lat = hour, None, None
            self.hours_version += 1
            if now_hour is not None:
                self.set_hour(old, now_hour.rollup())
        if day != self.day:
            now_day, old_day = self.now_day, self.day
            self.days = _opened(self.days)[_DAY_FIELDS:] + array("i", [_NONE, 0, 0])
            self.day, self.now_day = day, None
            self.days_version += 1
            if now_day is not None:
                self.set_day(
                    old_day,
                    Rollup(covered_ms=now_day[0], down_ms=now_day[1], excused_ms=now_day[2]),
                )
        self.sums = None
        return True

    def past_sums(self) -> array[int]:
        """(covered, down, excused) of the past 23 hours, then of the past 6, 29 and 89 days."""
        if self.sums is None:
            out: list[int] = []
            out += _sum_slots(_opened(self.hours), _HOUR_FIELDS, 0, PAGE_HOURS - 1)
            days = _opened(self.days)
            for _, n in WINDOWS:
                out += _sum_slots(days, _DAY_FIELDS, PAGE_DAYS - n, PAGE_DAYS - 1)
            # (an array: 15 integers of up to 35 bits are 15 objects in a tuple, ~340 bytes)
            self.sums = array("q", out)
        return self.sums

    def pack(self) -> None:
        """Compress the past days' and hours' figures (after a change; no-op when packed)."""
        if not isinstance(self.days, bytes):
            self.days = zlib.compress(self.days.tobytes(), 6)
        if not isinstance(self.hours, bytes):
            self.hours = zlib.compress(self.hours.tobytes(), 6)


def _opened(figures: array[int] | bytes) -> array[int]:
    """Kept figures as an array (a new one when packed: the caller keeps it, or packs it)."""
    if isinstance(figures, bytes):
        out = array("i")
        out.frombytes(zlib.decompress(figures))
        return out
    return figures


def _sum_slots(a: array[int], width: int, first: int, stop: int) -> list[int]:
    cov = down = exc = 0
    for i in range(first, stop):
        if a[i * width] != _NONE:
            cov += a[i * width]
            down += a[i * width + 1]
            exc += a[i * width + 2]
    return [cov, down, exc]


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
        # The all-sites page's figures of each site (bounded by the configured sites: `forget`).
        self._sites: dict[str, _Site] = {}
        self._texts: dict[str, str] = {}  # incidents' texts, shared (`_compact`)
        if recorder is not None:
            recorder.listeners.append(self._written)

    # ------------------------------------------------------------------ the in-memory figures

    def _written(self, totals: db.Written, incidents: frozenset[str]) -> None:
        """The recorder committed these rows' totals: the kept figures follow them."""
        if not self._sites:
            return
        now_ms = int(self._clock() * 1000)
        day, hour = now_ms // DAY_MS, now_ms // HOUR_MS
        touched: list[_Site] = []
        for (table, name, period), total in totals.items():
            site = self._sites.get(name)
            if site is None:
                continue
            if not site.move_to(day, hour):
                del self._sites[name]
                continue
            if table == db.HOUR:
                site.set_hour(period, total)
            else:
                site.set_day(period, total)
            touched.append(site)
        for site in touched:
            site.pack()
        for name in incidents:
            site = self._sites.get(name)
            if site is not None:
                site.incidents_stale = True

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the kept figures of sites no longer configured."""
        wanted = set(keep)
        for name in [n for n in self._sites if n not in wanted]:
            del self._sites[name]

    def missing(self, names: Iterable[str]) -> list[str]:
        """The sites among `names` whose figures are not kept yet (read at their first show)."""
        kept = self._sites
        return [n for n in names if n not in kept]

    def preload(self, names: Iterable[str], budget_s: float | None = None) -> Iterator[None]:
        """Read the kept figures of the sites among `names` not kept yet, a few sites at a time,
        yielding once `budget_s` (PRELOAD_SECONDS) of work went into a slice: a caller on the
        event loop hands the loop back at each yield, so reading 1,000 sites' history (~1-2 ms
        a site) never holds it long. A store that cannot be read ends it (the page reads
        later, as before)."""
        budget = PRELOAD_SECONDS if budget_s is None else budget_s
        missing = self.missing(names)
        began = time.perf_counter()
        for start in range(0, len(missing), PRELOAD_SITES):
            now_ms = int(self._clock() * 1000)
            try:
                self._load(
                    missing[start : start + PRELOAD_SITES], now_ms // DAY_MS, now_ms // HOUR_MS
                )
            except StoreError:
                return
            if time.perf_counter() - began >= budget:
                yield
                began = time.perf_counter()

    def _load(self, names: Sequence[str], day: int, hour: int) -> dict[str, _Site]:
        """The kept figures of `names`, read from the store for those not kept yet (one query a
        table for all of them: a page reads a few sites at a time)."""
        out: dict[str, _Site] = {}
        missing: list[str] = []
        kept = self._sites
        for name in names:
            site = kept.get(name)
            if site is not None and site.hour == hour and site.day == day:
                out[name] = site
            elif site is not None and site.move_to(day, hour):
                site.pack()
                out[name] = site
            else:
                missing.append(name)
        if missing:
            fresh: dict[str, _Site] = {}
            for name in missing:
                site = fresh[name] = out[name] = _Site(day, hour)
                site.offset = zlib.crc32(name.encode()) % LATENCY_EVERY_MS
            # The past days as bare integers (the bulk of what is read), the hours as rollups.
            for name, period, cov, down, exc in db.read_day_figures(
                self.store, day - PAGE_DAYS + 1, missing
            ):
                if period == day:
                    out[name].now_day = (cov, down, exc)
                else:
                    out[name].set_past_day(period, cov, down, exc)
            hours = db.read_rollups(self.store, db.HOUR, hour - PAGE_HOURS + 1, sites=missing)
            for name, rows in hours.items():
                for period, r in rows.items():
                    out[name].set_hour(period, r)
            for site in fresh.values():
                site.pack()
            # Kept only once read whole: a store error leaves them to be read again.
            self._sites.update(fresh)
        stale = [n for n, s in out.items() if s.incidents_stale]
        if stale:
            found: dict[str, list[db.Incident]] = {}
            for incident in db.read_latest_incidents(self.store, PAGE_INCIDENTS, stale):
                found.setdefault(incident.site, []).append(incident)
            for name in stale:
                self._set_incidents(out[name], found.get(name, ()))
        return out

    def _compact(self, i: db.Incident) -> db.Incident:
        """The incident with its texts shared with the other incidents' equal ones (the site's
        name; a site times out the same way many times). Not `sys.intern`: a message can be
        unique, and some Pythons never free an interned string. Bounded: TEXTS entries."""
        texts = self._texts
        if len(texts) > TEXTS:
            texts.clear()
        return replace(
            i,
            site=texts.setdefault(i.site, i.site),
            first_reason=texts.setdefault(i.first_reason, i.first_reason),
            first_message=texts.setdefault(i.first_message, i.first_message),
            last_reason=texts.setdefault(i.last_reason, i.last_reason),
            last_message=texts.setdefault(i.last_message, i.last_message),
        )

    def _set_incidents(self, site: _Site, incidents: Iterable[db.Incident]) -> None:
        site.incidents = tuple(self._compact(i) for i in incidents)
        site.ongoing = any(i.ended_ms is None for i in site.incidents)
        site.incidents_stale = False
        site.incidents_version += 1

    def _incidents(self, name: str, site: _Site) -> tuple[db.Incident, ...]:
        """The site's latest incidents for its block; read again if they were let go (a block
        is rarely built twice for the same incidents: the page keeps it)."""
        incidents = site.incidents
        if incidents is None:
            try:
                found = db.read_latest_incidents(self.store, PAGE_INCIDENTS, [name])
            except StoreError:
                site.incidents_stale = True  # (the next request reads them again)
                return ()
            incidents = tuple(self._compact(i) for i in found)
            if any(i.ended_ms is None for i in incidents) != site.ongoing:
                site.incidents_stale = True  # (changed meanwhile: a new version next time)
        if not site.ongoing:
            site.incidents = None  # (~3 KiB a site: the block is what is shown)
        else:
            site.incidents = incidents
        return incidents

    def _now_hour(self, name: str, site: _Site) -> Rollup | None:
        """The current hour's rollup: stored plus the recorder's pending delta."""
        stored = None if site.now_hour is None else site.now_hour.rollup()
        delta = None if self.recorder is None else self.recorder.pending_for(name).get(site.hour)
        if delta is None:
            return stored
        if stored is None:
            return delta.copy()
        stored.merge(delta)
        return stored

    def overview(self, names: Iterable[str], now: float | None = None) -> dict[str, LazyHistory]:
        """The all-sites page: 90 days, 24 hours and the last 10 incidents of each site, from the
        kept figures (read from the store once a site). The figures add the recorder's pending
        deltas of the current hour and day; those of an hour already past show once written
        (within `[history] write_every`), and the latest hour's latency is worked out every
        LATENCY_EVERY_MS (5 min; at once when the hour changes). An unreadable store gives no
        history (the page still shows the live states). A few microseconds a site: this runs
        for every site on every request. `now`: the page's time (it shows its durations as of
        it; default: the clock's)."""
        now_ms = int((self._clock() if now is None else now) * 1000)
        day, hour = now_ms // DAY_MS, now_ms // HOUR_MS
        try:
            sites = self._load(list(names), day, hour)
        except StoreError:
            return {}
        # (the recorder's `pending` read directly, and the figures' arithmetic inline: this
        # runs for every site on every request)
        pending = self.recorder.pending if self.recorder is not None else None
        floor = math.floor
        build = self._build
        out = {}
        for name, site in sites.items():
            h_cov, h_down, h_exc, td_cov, td_down, td_exc = _current(
                site, None if pending is None else pending.get(name), day, hour
            )
            sums = site.sums or site.past_sums()
            u24 = uptime_of(sums[0] + h_cov, sums[1] + h_down, sums[2] + h_exc)
            u7 = uptime_of(sums[3] + td_cov, sums[4] + td_down, sums[5] + td_exc)
            u30 = uptime_of(sums[6] + td_cov, sums[7] + td_down, sums[8] + td_exc)
            u90 = uptime_of(sums[9] + td_cov, sums[10] + td_down, sums[11] + td_exc)
            uptime = {"24h": u24, "7d": u7, "30d": u30, "90d": u90}
            lat = site.lat
            turn = (now_ms + site.offset) // LATENCY_EVERY_MS
            if lat is None or lat[0] != turn:
                merged = self._now_hour(name, site)
                lat = site.lat = (
                    turn,
                    None if merged is None else merged.percentile_us(0.5),
                    None if merged is None else merged.percentile_us(0.95),
                )
            today = (td_cov, td_down, td_exc)
            # What the page shows: uptime in basis points rounded down; of today's bar, its
            # uptime so, and whole seconds down and excused.
            ut = uptime_of(td_cov, td_down, td_exc)
            key = HistoryKey(
                uptime_key(
                    0 if u24 is None else floor(u24 * 10000) + 1,
                    0 if u7 is None else floor(u7 * 10000) + 1,
                    0 if u30 is None else floor(u30 * 10000) + 1,
                    0 if u90 is None else floor(u90 * 10000) + 1,
                ),
                days_key(
                    day,
                    site.days_version,
                    0 if ut is None else floor(ut * 10000) + 1,
                    td_down // 1000,
                    td_exc // 1000,
                ),
                hours_key(
                    hour,
                    site.hours_version,
                    0 if lat[1] is None else lat[1] + 1,
                    0 if lat[2] is None else lat[2] + 1,
                ),
                # an ongoing incident's duration grows: the block is drawn again when its text
                # would change (`duration_step`: every second, then every minute), not always
                incidents_key(
                    site.incidents_version, _ongoing_step(site, now_ms) if site.ongoing else 0
                ),
            )
            out[name] = LazyHistory(
                key,
                uptime,
                functools.partial(build, self, name, site, today, uptime),
                (day, site.days_version),
                today,
            )
        return out

    @staticmethod
    def _build(  # noqa: PLR0917 (bound with functools.partial)
        reader: HistoryReader,
        name: str,
        site: _Site,
        today: tuple[int, int, int],
        uptime: dict[str, float | None],
        part: str | None = None,
    ) -> SiteHistory:
        days: list[Period] = []
        hours: list[Period] = []
        if part in (None, "days"):
            HistoryReader._build_days(site, today, days)
        if part in (None, "hours"):
            HistoryReader._build_hours(site, reader._now_hour(name, site), hours)
        incidents = reader._incidents(name, site) if part in (None, "incidents") else ()
        return SiteHistory(uptime=uptime, days=tuple(days), hours=tuple(hours), incidents=incidents)

    @staticmethod
    def _build_days(site: _Site, today: tuple[int, int, int], days: list[Period]) -> None:
        first = site.day - PAGE_DAYS + 1
        d = _opened(site.days)
        for i in range(PAGE_DAYS - 1):
            cov = d[i * 3]
            r = (
                None
                if cov == _NONE
                else Rollup(covered_ms=cov, down_ms=d[i * 3 + 1], excused_ms=d[i * 3 + 2])
            )
            days.append(Period((first + i) * DAY_MS, r))
        days.append(
            Period(
                site.day * DAY_MS,
                None
                if today == (0, 0, 0)
                else Rollup(covered_ms=today[0], down_ms=today[1], excused_ms=today[2]),
            )
        )

    @staticmethod
    def _build_hours(site: _Site, now_hour: Rollup | None, hours: list[Period]) -> None:
        first_h = site.hour - PAGE_HOURS + 1
        h = _opened(site.hours)
        for i in range(PAGE_HOURS - 1):
            if h[i * 5] == _NONE:
                hours.append(Period((first_h + i) * HOUR_MS, None))
            else:
                r, lat = _from_percentiles(h[i * 5 : i * 5 + 5])
                hours.append(Period((first_h + i) * HOUR_MS, r, lat))
        hours.append(Period(site.hour * HOUR_MS, now_hour))

    def uptimes(self, names: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """Only the uptime figures (for /api/status and the badges), from the kept figures:
        the same as `overview`'s, without what the page's blocks need."""
        now_ms = int(self._clock() * 1000)
        day, hour = now_ms // DAY_MS, now_ms // HOUR_MS
        try:
            sites = self._load(list(names), day, hour)
        except StoreError:
            return {}
        pending = self.recorder.pending if self.recorder is not None else None
        out = {}
        for name, site in sites.items():
            h_cov, h_down, h_exc, td_cov, td_down, td_exc = _current(
                site, None if pending is None else pending.get(name), day, hour
            )
            sums = site.sums or site.past_sums()
            out[name] = {
                "24h": uptime_of(sums[0] + h_cov, sums[1] + h_down, sums[2] + h_exc),
                "7d": uptime_of(sums[3] + td_cov, sums[4] + td_down, sums[5] + td_exc),
                "30d": uptime_of(sums[6] + td_cov, sums[7] + td_down, sums[8] + td_exc),
                "90d": uptime_of(sums[9] + td_cov, sums[10] + td_down, sums[11] + td_exc),
            }
        return out

    def _with_pending(
        self, name: str, hours: Mapping[int, Rollup], days: Mapping[int, Rollup]
    ) -> tuple[dict[int, Rollup], dict[int, Rollup]]:
        h, d = dict(hours), dict(days)
        pending = {} if self.recorder is None else self.recorder.pending_for(name)
        for hour, delta in pending.items():  # (copies where a delta adds)
            day = hour * HOUR_MS // DAY_MS
            for rows, key in ((h, hour), (d, day)):
                stored = rows.get(key)
                total = Rollup() if stored is None else stored.copy()
                total.merge(delta)
                rows[key] = total
        return h, d

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
    covered = down = excused = 0
    for period, r in rows.items():
        if first <= period <= last:
            covered += r.covered_ms
            down += r.down_ms
            excused += r.excused_ms
    return uptime_of(covered, down, excused)


def _current(
    site: _Site, deltas: Mapping[int, Rollup] | None, day: int, hour: int
) -> tuple[int, int, int, int, int, int]:
    """(covered, down, excused) of the current hour, then of the current day: stored plus the
    recorder's pending deltas (`deltas`: hour -> delta)."""
    td_cov, td_down, td_exc = site.now_day or _ZERO3
    nh = site.now_hour
    if nh is None:
        h_cov = h_down = h_exc = 0
    else:
        h_cov, h_down, h_exc = nh.covered_ms, nh.down_ms, nh.excused_ms
    if deltas:
        for p_hour, delta in deltas.items():
            if p_hour == hour:  # (the current hour is in the current day)
                h_cov += delta.covered_ms
                h_down += delta.down_ms
                h_exc += delta.excused_ms
            elif p_hour > hour or p_hour * HOUR_MS // DAY_MS != day:
                continue
            td_cov += delta.covered_ms
            td_down += delta.down_ms
            td_exc += delta.excused_ms
    return h_cov, h_down, h_exc, td_cov, td_down, td_exc


# (2**35 and above: no duration step is that high, the two never meet)
_NO_STEP = 2**35


def _ongoing_step(site: _Site, now_ms: int) -> int:
    """The displayed duration's step + 1 of the site's ongoing incident, as of `now_ms` (the
    incidents block shows `Incident.duration_ms(now_ms)`); if the kept incidents have none
    (they are read again next time), the time itself: a key that changes every second."""
    for incident in site.incidents or ():
        if incident.ended_ms is None:
            return duration_step(incident.duration_ms(now_ms) / 1000) + 1
    return _NO_STEP + now_ms // 1000


def _from_percentiles(slot: Sequence[int]) -> tuple[Rollup, tuple[int | None, int | None]]:
    cov, down, exc, p50, p95 = slot
    return Rollup(covered_ms=cov, down_ms=down, excused_ms=exc), (
        None if p50 == _NONE else p50,
        None if p95 == _NONE else p95,
    )
