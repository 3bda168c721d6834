"""Rollup arithmetic: pure, integers only, so merging rollups is exact and order-free.

A `Rollup` summarises the probes of one site over one hour or one day: how many, how many failed,
how long the site was watched (`covered_ms`), how much of that it was DOWN (`down_ms`), how much
of that downtime fell in a maintenance window or a silence (`excused_ms`, part of `down_ms`), and
the latency of the good probes as a histogram over fixed log-spaced buckets plus the exact maximum.
Because the buckets are fixed and every figure is an integer, `merge` is associative and
commutative: 24 hours merged give exactly the day, however the probes were batched.

`Coverage` decides, probe by probe, which stretch of time a probe vouches for: the time since the
previous probe of the same site, unless that gap is longer than `cap_ms` (sentinel was stopped, or
stalled): a gap is "no data", neither up nor down. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Upper bounds of the latency buckets, microseconds: 0.5 ms * 2^(i/4), up to ~2 minutes. A
# quarter octave (19 %) is finer than the noise of a real site's latency; the last bucket holds
# everything slower. 74 buckets: a bucket index fits in one byte.
BUCKET_BOUNDS_US: tuple[int, ...] = tuple(round(500 * 2 ** (i / 4)) for i in range(73))
N_BUCKETS = len(BUCKET_BOUNDS_US) + 1
_OVERFLOW = N_BUCKETS - 1


def bucket_of(latency_us: int) -> int:
    """The index of the bucket a latency falls into (the last one for anything slower)."""
    return bisect.bisect_left(BUCKET_BOUNDS_US, max(0, latency_us))


def bucket_upper_us(index: int) -> int | None:
    """A bucket's upper bound; None for the overflow bucket."""
    return BUCKET_BOUNDS_US[index] if index < _OVERFLOW else None


@dataclass(slots=True)
class Rollup:
    """Counts over one period. Mutable for cheap accumulation; compare with ==."""

    probes: int = 0
    failures: int = 0
    covered_ms: int = 0
    down_ms: int = 0
    lat_max_us: int = 0  # of the good probes; 0 when there were none
    hist: dict[int, int] = field(default_factory=dict)  # bucket -> good probes, no zeros
    # The part of down_ms during a maintenance window or a silence ("excused"): kept apart so
    # that uptime can leave it out (see `uptime`).
    excused_ms: int = 0

    @property
    def good(self) -> int:
        return self.probes - self.failures

    def add_probe(self, ok: bool, latency_us: int) -> None:
        self.probes += 1
        if not ok:
            self.failures += 1
            return
        index = bucket_of(latency_us)
        self.hist[index] = self.hist.get(index, 0) + 1
        self.lat_max_us = max(self.lat_max_us, latency_us)

    def merge(self, other: Rollup) -> None:
        """Add `other` into this one (exact)."""
        self.probes += other.probes
        self.failures += other.failures
        self.covered_ms += other.covered_ms
        self.down_ms += other.down_ms
        self.excused_ms += other.excused_ms
        self.lat_max_us = max(self.lat_max_us, other.lat_max_us)
        for index, count in other.hist.items():
            self.hist[index] = self.hist.get(index, 0) + count

    def copy(self) -> Rollup:
        return Rollup(
            self.probes,
            self.failures,
            self.covered_ms,
            self.down_ms,
            self.lat_max_us,
            dict(self.hist),
            self.excused_ms,
        )

    def empty(self) -> bool:
        return self.probes == 0 and self.covered_ms == 0 and self.down_ms == 0

    def percentile_us(self, q: float) -> int | None:
        """The q-quantile (0 < q <= 1) of the good probes' latency: the upper bound of the bucket
        holding the ceil(q*n)-th fastest, never above the true maximum. None without good
        probes. Depends only on the counts, so it is the same however the rollup was merged."""
        n = sum(self.hist.values())
        if n == 0:
            return None
        rank = max(1, -(-int(q * 1_000_000) * n // 1_000_000))  # ceil(q*n) without floats
        seen = 0
        for index in sorted(self.hist):
            seen += self.hist[index]
            if seen >= rank:
                upper = bucket_upper_us(index)
                return self.lat_max_us if upper is None else min(upper, self.lat_max_us)
        return self.lat_max_us  # not reached

    def uptime(self) -> float | None:
        """Share of the judged time the site was not DOWN (`uptime_of`); None without any."""
        return uptime_of(self.covered_ms, self.down_ms, self.excused_ms)


class PackedRollup(NamedTuple):
    """A `Rollup` kept for long in a fraction of its memory: its histogram as `encode_hist`
    bytes (~10 bytes) instead of a dict (~0.5 KiB with the ints of its counts). The page's
    reader keeps one a site, for the current hour. `rollup()` gives back an equal Rollup."""

    probes: int
    failures: int
    covered_ms: int
    down_ms: int
    lat_max_us: int
    hist: bytes
    excused_ms: int

    @classmethod
    def of(cls, r: Rollup) -> PackedRollup:
        hist = encode_hist(r.hist)
        return cls(r.probes, r.failures, r.covered_ms, r.down_ms, r.lat_max_us, hist, r.excused_ms)

    def rollup(self) -> Rollup:
        # (the fields are in Rollup's order)
        return Rollup(*self[:5], decode_hist(self.hist), self.excused_ms)


def uptime_of(covered_ms: int, down_ms: int, excused_ms: int) -> float | None:
    """Uptime = 1 - (down - excused) / (watched - excused): downtime during a maintenance window
    or a silence counts as neither up nor down (it leaves both sides of the ratio), like a
    maintenance beat in Uptime Kuma. None when nothing is left to judge (no data, or a period
    that was all excused downtime)."""
    judged = covered_ms - excused_ms
    if judged <= 0:
        return None
    return max(0.0, 1.0 - (down_ms - excused_ms) / judged)


def encode_hist(hist: dict[int, int]) -> bytes:
    """Histogram -> bytes: the first non-empty bucket's index, then every count from there to
    the last non-empty bucket as LEB128 (an empty bucket in between is one zero byte). A site's
    latency fills a few neighbouring buckets, so this is about one byte a bucket an hour."""
    used = [index for index, count in hist.items() if count > 0]
    if not used:
        return b""
    lo, hi = min(used), max(used)
    out = bytearray([lo])
    for index in range(lo, hi + 1):
        count = max(0, hist.get(index, 0))
        while True:
            byte = count & 0x7F
            count >>= 7
            if count:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def decode_hist(data: bytes) -> dict[int, int]:
    """The inverse of `encode_hist`; raises ValueError on malformed bytes."""
    hist: dict[int, int] = {}
    if not data:
        return hist
    index, pos, end = data[0], 1, len(data)
    while pos < end:
        if index >= N_BUCKETS:
            raise ValueError(f"histogram bucket {index} out of range")
        count = shift = 0
        while True:
            if pos >= end or shift > 56:
                raise ValueError("truncated histogram")
            byte = data[pos]
            pos += 1
            count |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if count:
            hist[index] = count
        index += 1
    return hist


def split(start_ms: int, end_ms: int, period_ms: int) -> Iterator[tuple[int, int]]:
    """[start, end) cut at period boundaries: (period number, milliseconds in it)."""
    t = start_ms
    while t < end_ms:
        period = t // period_ms
        stop = min(end_ms, (period + 1) * period_ms)
        yield period, stop - t
        t = stop


@dataclass(slots=True)
class Coverage:
    """One site's watching, within one run of sentinel (a restart starts afresh: no data between).

    `observe` returns the stretches a probe accounts for: (start, end, down). The stretch since the
    previous probe is watched time; it is downtime if the site was DOWN before this probe. When
    this probe takes the site DOWN, the failing streak before it becomes downtime too (from its
    first failure, but never before this run's continuous watching began), so downtime adds up to
    the incidents' durations: first failure to first good probe."""

    cap_ms: int
    last_ms: int | None = None
    watched_since_ms: int | None = None

    def observe(
        self,
        t_ms: int,
        *,
        was_down: bool,
        went_down: bool,
        failing_since_ms: int | None,
    ) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """-> (watched stretch or None, down stretch or None)."""
        watched: tuple[int, int] | None = None
        if self.last_ms is not None and 0 <= t_ms - self.last_ms <= self.cap_ms:
            watched = (self.last_ms, t_ms)
        elif self.last_ms is None or t_ms - self.last_ms > self.cap_ms:
            self.watched_since_ms = t_ms  # a new stretch of watching begins here
        if self.last_ms is None or t_ms >= self.last_ms:
            self.last_ms = t_ms
        down: tuple[int, int] | None = None
        if was_down and watched is not None:
            down = watched
        elif went_down:
            start = t_ms if failing_since_ms is None else failing_since_ms
            floor = self.watched_since_ms if self.watched_since_ms is not None else t_ms
            start = max(start, floor)
            if start < t_ms:
                down = (start, t_ms)
        return watched, down
