"""The trend detector: is a level (memory, disk usage) rising steadily, how fast, and when does it
reach its limit? Pure: samples and `now` in, a `Verdict` out; no clock, no I/O.

The series is kept as bucket minimums (the floor after each garbage collection, so an
allocate-and-free sawtooth is not a leak), at most `MAX_BUCKETS` per window plus the open one, so
memory is bounded whatever `sample_every` is. The slope is a Theil–Sen fit over the minimums of the
complete buckets. A trend is only called rising when

- there are at least `MIN_BUCKETS` complete buckets spanning at least `MIN_COVERAGE` of the window,
- the fitted slope is positive and the rise is consistent (Mann–Kendall z >= `Z_MIN`),
- the rise over the covered span exceeds the scatter around the fit (`SNR_MIN` robust sigmas),
- and the second half still grows at `PLATEAU_RATIO` of the overall rate (a cache that fills and
  levels off is refused).

A restart of the watched process (a new identity: PID, InvocationID) or a drop below half of the
recent floor starts a new segment; only the current segment is fitted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import islice

from sentinel.median import median

MAX_BUCKETS = 48  # per window: 30-minute buckets for a 24h window
MIN_SAMPLES_PER_BUCKET = 4  # a bucket spans at least this many samples (to catch a GC floor)
MIN_BUCKETS = 9  # complete buckets needed before any verdict (9 in a row can reach Z_MIN)
MIN_COVERAGE = 1 / 3  # of the window
# Mann–Kendall z for a consistent rise: one-sided p ~ 0.0002. Strict on purpose: a false CREEPING
# email costs trust, a warning a few buckets later costs nothing when the limit is days away.
Z_MIN = 3.5
SNR_MIN = 4.0  # rise over the covered span / robust sigma of the residuals
PLATEAU_RATIO = 0.5  # the second half's slope must be at least this share of the overall slope
RESTART_DROP = 0.5  # a sample below (1 - this) x the recent floor starts a new segment
RESTART_LOOKBACK = 4  # buckets that define "the recent floor"


def bucket_width(window: float, sample_every: float) -> float:
    """Seconds per bucket: window / MAX_BUCKETS, but never fewer than MIN_SAMPLES_PER_BUCKET
    samples per bucket."""
    return max(window / MAX_BUCKETS, sample_every * MIN_SAMPLES_PER_BUCKET)


def buckets_per_window(window: float, width: float) -> int:
    return max(1, math.floor(window / width + 1e-9))


@dataclass(frozen=True, slots=True)
class Bucket:
    """The minimum of the samples that fell into one bucket, and when it was seen."""

    index: int  # floor(t / width): aligned to absolute time, stable across evaluations
    t: float
    value: float
    count: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """One evaluation of a series. `reason` says why not when `rising` is False."""

    rising: bool
    rate_per_s: float | None  # the fitted slope (units per second); None without enough data
    level: float | None  # the fitted floor at `at`
    limit: float | None
    seconds_to_limit: float | None  # only when rising and the limit is known
    samples: int
    buckets: int
    covered: float  # seconds spanned by the buckets used
    window: float
    at: float
    segment: int
    segment_start: float | None
    reason: str = ""
    last_value: float | None = None  # the latest raw sample


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The median of the pairwise slopes; None with fewer than two distinct x."""
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    return float(median(slopes)) if slopes else None


def mann_kendall_z(ys: Sequence[float]) -> float:
    """The Mann–Kendall trend statistic as a z-score (with the tie correction and continuity
    correction); positive for an upward trend, 0 when there is no evidence of one."""
    n = len(ys)
    if n < 3:
        return 0.0
    s = 0
    for i in range(n):
        yi = ys[i]
        for j in range(i + 1, n):
            d = ys[j] - yi
            s += (d > 0) - (d < 0)
    ties: dict[float, int] = {}
    for y in ys:
        ties[y] = ties.get(y, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if var <= 0:
        return 0.0
    if s > 0:
        return (s - 1) / math.sqrt(var)
    if s < 0:
        return (s + 1) / math.sqrt(var)
    return 0.0


@dataclass(frozen=True, slots=True)
class SeriesSnapshot:
    """A `TrendSeries` as plain values, for the store: a restart of sentinel continues the
    series (and so a trend already warned about) instead of starting it afresh."""

    window: float
    sample_every: float
    segment: int
    segment_start: float | None
    identity: str | None
    last_t: float | None
    last_value: float | None
    buckets: tuple[Bucket, ...]


class TrendSeries:
    """A bounded series of bucket minimums for one watched level, with restart segmentation.

    Holds at most buckets_per_window + 2 buckets, whatever the sample rate.
    """

    __slots__ = (
        "_buckets",
        "identity",
        "last",
        "sample_every",
        "segment",
        "segment_start",
        "width",
        "window",
    )

    def __init__(self, window: float, sample_every: float) -> None:
        if not (window > 0 and sample_every > 0):
            raise ValueError("window and sample_every must be positive")
        self.window = window
        self.sample_every = sample_every
        self.width = bucket_width(window, sample_every)
        self._buckets: deque[Bucket] = deque(maxlen=buckets_per_window(window, self.width) + 2)
        self.identity: str | None = None
        self.segment = 0
        self.segment_start: float | None = None
        self.last: tuple[float, float] | None = None  # (t, value) of the latest sample

    def add(self, t: float, value: float, identity: str | None = None) -> str | None:
        """Add one sample. Returns why a new segment started ("restarted", "dropped", "clock"),
        or None when the sample continued the current one."""
        if not (math.isfinite(t) and math.isfinite(value)) or value < 0:
            return None
        restart: str | None = None
        if identity is not None:
            if self.identity is not None and identity != self.identity:
                restart = "restarted"
            self.identity = identity
        if restart is None and self._buckets:
            floor = min(b.value for b in islice(reversed(self._buckets), RESTART_LOOKBACK))
            if floor > 0 and value < floor * (1 - RESTART_DROP):
                restart = "dropped"
        if restart is None and self.last is not None and t < self.last[0]:
            restart = "clock"
        if restart is not None:
            self._buckets.clear()
            self.segment += 1
            self.segment_start = t
        elif self.segment_start is None:
            self.segment_start = t
        self.last = (t, value)

        index = math.floor(t / self.width)
        if self._buckets and self._buckets[-1].index == index:
            b = self._buckets[-1]
            if value < b.value:
                self._buckets[-1] = Bucket(index, t, value, b.count + 1)
            else:
                self._buckets[-1] = replace(b, count=b.count + 1)
        else:
            self._buckets.append(Bucket(index, t, value, 1))
        keep_from = index - buckets_per_window(self.window, self.width) - 1
        while self._buckets and self._buckets[0].index < keep_from:
            self._buckets.popleft()
        return restart

    def buckets(self) -> tuple[Bucket, ...]:
        return tuple(self._buckets)

    def snapshot(self) -> SeriesSnapshot:
        return SeriesSnapshot(
            window=self.window,
            sample_every=self.sample_every,
            segment=self.segment,
            segment_start=self.segment_start,
            identity=self.identity,
            last_t=None if self.last is None else self.last[0],
            last_value=None if self.last is None else self.last[1],
            buckets=tuple(self._buckets),
        )

    @classmethod
    def restore(cls, snapshot: SeriesSnapshot, window: float, sample_every: float) -> TrendSeries:
        """The series a snapshot holds; ValueError when it was taken with another window or
        sample period (its buckets would have another width) or is inconsistent."""
        if (snapshot.window, snapshot.sample_every) != (window, sample_every):
            raise ValueError("saved with another window or sample_every")
        series = cls(window, sample_every)
        indexes = [b.index for b in snapshot.buckets]
        if indexes != sorted(set(indexes)) or len(indexes) > (series._buckets.maxlen or 0):
            raise ValueError("buckets out of order or too many")
        if any(b.index != math.floor(b.t / series.width) for b in snapshot.buckets):
            raise ValueError("a bucket does not match its time")
        series._buckets.extend(snapshot.buckets)
        series.segment = snapshot.segment
        series.segment_start = snapshot.segment_start
        series.identity = snapshot.identity
        if snapshot.last_t is not None and snapshot.last_value is not None:
            series.last = (snapshot.last_t, snapshot.last_value)
        return series

    def bucket_index(self, now: float) -> int:
        """The index of the bucket `now` falls in: evaluate once each time it advances."""
        return math.floor(now / self.width)

    def detect(self, now: float, limit: float | None = None) -> Verdict:
        return detect_buckets(
            self._buckets,
            window=self.window,
            width=self.width,
            now=now,
            limit=limit,
            segment=self.segment,
            segment_start=self.segment_start,
            last_value=self.last[1] if self.last else None,
        )


def detect_buckets(
    buckets: Iterable[Bucket],
    *,
    window: float,
    width: float,
    now: float,
    limit: float | None = None,
    segment: int = 0,
    segment_start: float | None = None,
    last_value: float | None = None,
) -> Verdict:
    """The verdict over the complete buckets of the window (the open bucket is left out: its
    minimum may not have seen a garbage collection yet)."""
    current = math.floor(now / width)
    first_index = current - buckets_per_window(window, width)
    used = [b for b in buckets if first_index <= b.index < current]
    n = len(used)
    samples = sum(b.count for b in used)
    covered = (used[-1].index - used[0].index + 1) * width if used else 0.0

    def verdict(
        reason: str,
        rate: float | None = None,
        level: float | None = None,
        seconds: float | None = None,
    ) -> Verdict:
        return Verdict(
            rising=reason == "",
            rate_per_s=rate,
            level=level,
            limit=limit,
            seconds_to_limit=seconds,
            samples=samples,
            buckets=n,
            covered=covered,
            window=window,
            at=now,
            segment=segment,
            segment_start=segment_start,
            reason=reason,
            last_value=last_value,
        )

    if n < MIN_BUCKETS:
        return verdict(f"collecting data ({n} of {MIN_BUCKETS} buckets)")
    xs = [b.t - now for b in used]
    ys = [b.value for b in used]
    slope = theil_sen(xs, ys)
    if slope is None:
        return verdict("collecting data (no time span)")
    level = max(0.0, float(median(y - slope * x for x, y in zip(xs, ys, strict=True))))
    if covered + 1e-9 < window * MIN_COVERAGE:
        return verdict(
            f"covers {covered / window:.0%} of the window (needs {MIN_COVERAGE:.0%})",
            slope,
            level,
        )
    if slope <= 0:
        return verdict("not rising (fitted slope <= 0)", slope, level)
    z = mann_kendall_z(ys)
    if z < Z_MIN:
        return verdict(f"no consistent rise (Mann-Kendall z {z:.2f} < {Z_MIN})", slope, level)
    intercept = level
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    mid = median(residuals)
    sigma = 1.4826 * median(abs(r - mid) for r in residuals)
    rise = slope * (xs[-1] - xs[0])
    if rise < SNR_MIN * sigma:
        return verdict(
            f"rise within the noise ({rise:.4g} < {SNR_MIN:g} x {sigma:.4g})", slope, level
        )
    second = theil_sen(xs[n // 2 :], ys[n // 2 :])
    # A cache that filled early and then levelled off leaves a tiny overall slope (Theil-Sen is
    # the median of pairwise slopes, mostly flat pairs) that noise in the second half can match:
    # the recent half must also rise above the noise by itself (half of SNR_MIN, the share a
    # steady leak that passes the overall test shows over half the span).
    recent_rise = 0.0 if second is None else second * (xs[-1] - xs[n // 2])
    if second is None or second < PLATEAU_RATIO * slope or recent_rise < SNR_MIN / 2 * sigma:
        share = 0.0 if second is None else max(0.0, second / slope)
        return verdict(f"levelling off (recent growth {share:.0%} of the overall)", slope, level)
    seconds = None
    if limit is not None:
        seconds = max(0.0, (limit - level) / slope)
    return verdict("", slope, level, seconds)


Sample = tuple[float, float] | tuple[float, float, str | None]


def detect_samples(
    samples: Iterable[Sample],
    *,
    window: float,
    sample_every: float,
    now: float,
    limit: float | None = None,
) -> Verdict:
    """Convenience for a whole series at once: (t, value) or (t, value, identity) samples, in
    time order, folded into a fresh `TrendSeries` and evaluated at `now`."""
    series = TrendSeries(window, sample_every)
    for sample in samples:
        if len(sample) == 3:
            series.add(sample[0], sample[1], sample[2])
        else:
            series.add(sample[0], sample[1])
    return series.detect(now, limit)
