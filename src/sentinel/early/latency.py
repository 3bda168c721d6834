"""Latency drift of a site: its recent median against its own multi-day baseline. Pure: the caller
passes every probe's total time and `now`; nothing here reads a clock.

Bounded by construction: one open bucket of probe times (capped), the recent bucket medians
(`recent_span / recent_bucket`, 12 by default) and the baseline bucket medians
(`baseline_span / baseline_bucket`, 168 by default). `observe` is O(1) amortised: a median is only
computed when a bucket closes, once per `recent_bucket`.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from sentinel.median import median

MAX_BUCKET_VALUES = 1024  # probe times kept per open recent bucket (a ring beyond this)
# Values are kept in 32 bits (7 significant digits: ~0.1 us of a 1 s latency): half the memory
# of doubles, ~1 MiB at 1,000 sites. Dumps say which: format 1 (doubles) is still read.
FLOAT: Final = "f"
COUNT: Final = "i"
# The week of hourly medians behind the baseline (168 a site, the bulk of a tracker) is kept in
# 16 bits on a log scale: 1 + round(ln(seconds / 1 us) x 2,800), 0 for an empty hour. A step is
# 0.036 % of the value (0.1 ms of 300 ms), from 1 us to ~4 hours: half the memory of 32 bits,
# ~0.3 MiB at 1,000 sites, for a figure compared with a 1.5x ratio. Format 3 dumps it so;
# formats 1 and 2 (the baseline as floats) are still read.
LOG16: Final = "H"
_LOG16_FLOOR = 1e-6
_LOG16_SCALE = 2800.0
_LOG16_TOP = 65535
_DUMP_MAGIC = b"SLT3"  # sentinel latency tracker, format 3: 32-bit values, the baseline in 16
_DUMP_CODES = {_DUMP_MAGIC: (FLOAT, COUNT, LOG16), b"SLT2": (FLOAT, COUNT, FLOAT)}
_DUMP_CODES[b"SLT1"] = ("d", "q", "d")


def to_log16(seconds: float) -> int:
    """A median in seconds as its 16-bit code (never 0, the empty code; NaN is empty)."""
    if math.isnan(seconds):
        return 0
    step = math.log(max(seconds, _LOG16_FLOOR) / _LOG16_FLOOR) * _LOG16_SCALE
    return min(_LOG16_TOP, 1 + round(min(step, _LOG16_TOP)))


def from_log16(code: int) -> float:
    """The seconds a 16-bit code stands for (NaN for 0, the empty code)."""
    if code == 0:
        return math.nan
    return _LOG16_FLOOR * math.exp((code - 1) / _LOG16_SCALE)


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """When a site counts as slower. Times are seconds so tests can shrink hours to seconds."""

    ratio: float = 1.5  # recent median >= ratio x baseline median ...
    absolute: float = 0.1  # ... and at least this many seconds above it
    consecutive: int = 3  # on this many evaluations in a row (one evaluation per recent bucket)
    recent_bucket: float = 300.0  # the recent window is kept as medians per 5 minutes
    recent_span: float = 3600.0  # "recent" = the last hour
    baseline_bucket: float = 3600.0  # the baseline is kept as hourly medians
    baseline_span: float = 7 * 86400.0  # over 7 days (168 values)
    min_baseline_buckets: int = 24  # no verdict before a day of history

    @property
    def recent_buckets(self) -> int:
        return max(1, min(10_000, math.ceil(self.recent_span / self.recent_bucket)))

    @property
    def baseline_buckets(self) -> int:
        return max(1, min(10_000, math.ceil(self.baseline_span / self.baseline_bucket)))

    @property
    def min_recent_buckets(self) -> int:
        return max(1, self.recent_buckets // 2)


@dataclass(frozen=True, slots=True)
class DriftVerdict:
    """One evaluation: is the recent median far enough above the usual one?"""

    at: float
    drifting: bool
    recent: float | None  # median of the recent bucket medians, seconds
    baseline: float | None  # median of the baseline bucket medians, seconds
    recent_probes: int  # probe times behind `recent`
    recent_buckets: int
    baseline_buckets: int
    recent_span: float
    baseline_span: float  # seconds of history behind `baseline`
    reason: str = ""  # why not drifting ("" when drifting)


class Slots:
    """Numbers keyed by a bucket index, keeping the newest `maxlen` indices: slot `index % maxlen`
    of typed arrays allocated once, at full size. Memory is fixed from the first probe on, so a
    week of history costs no more RSS than an hour (a soak sees no growth while it fills), and
    nothing is reallocated as buckets turn over. A gap (no probes in a bucket) stays empty.
    `log16`: the medians kept as 16-bit codes (`to_log16`) rather than 32-bit floats."""

    __slots__ = ("_counts", "_medians", "log16", "maxlen", "newest")

    def __init__(self, maxlen: int, *, counts: bool = True, log16: bool = False) -> None:
        self.maxlen = maxlen
        self.log16 = log16
        self._medians: array[Any] = (
            array(LOG16, [0]) * maxlen if log16 else array(FLOAT, [math.nan]) * maxlen
        )
        self._counts = array(COUNT, [0]) * (maxlen if counts else 0)
        self.newest: int | None = None

    def put(self, index: int, median: float, count: int = 0) -> None:
        newest = self.newest
        empty: float = 0 if self.log16 else math.nan
        if newest is None or index > newest:
            # empty the slots of the indices skipped since `newest` (at most maxlen of them)
            start = (
                index - self.maxlen + 1
                if newest is None
                else max(newest + 1, index - self.maxlen + 1)
            )
            for skipped in range(start, index):
                self._medians[skipped % self.maxlen] = empty
            self.newest = newest = index
        elif index <= newest - self.maxlen:
            return  # older than everything kept
        slot = index % self.maxlen
        self._medians[slot] = to_log16(median) if self.log16 else median
        if self._counts:
            self._counts[slot] = count

    def rows(self) -> Iterator[tuple[int, float, int]]:
        """(index, median, count), oldest first, gaps left out."""
        if self.newest is None:
            return
        log16 = self.log16
        for index in range(self.newest - self.maxlen + 1, self.newest + 1):
            slot = index % self.maxlen
            median = from_log16(self._medians[slot]) if log16 else self._medians[slot]
            if not math.isnan(median):
                yield index, median, self._counts[slot] if self._counts else 0

    def __len__(self) -> int:
        return sum(1 for _ in self.rows())


class LatencyTracker:
    """One site's probe times, folded into bucket medians. Not thread-safe; one owner."""

    __slots__ = (
        "_baseline",
        "_hour_count",
        "_hour_index",
        "_hour_values",
        "_open",
        "_open_count",
        "_open_index",
        "_recent",
        "settings",
    )

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        # Everything is allocated here, at (nearly) full size, and reused: 4 bytes a value in
        # typed arrays rather than boxed floats in tuples (which cost ~18 KiB a site after a
        # week), and no allocation as buckets close, so RSS does not creep or saw-tooth.
        # The open bucket grows to the probes one bucket sees (150 at 2 s) and is then reused.
        self._open = array(FLOAT)
        self._open_count = 0
        self._open_index: int | None = None
        self._recent = Slots(self.settings.recent_buckets)  # (bucket index, median, probes)
        self._hour_index: int | None = None
        # recent-bucket medians of the open baseline bucket
        per_hour = math.ceil(self.settings.baseline_bucket / self.settings.recent_bucket) + 1
        self._hour_values = array(FLOAT, [0.0]) * max(1, min(MAX_BUCKET_VALUES, per_hour))
        self._hour_count = 0
        self._baseline = Slots(self.settings.baseline_buckets, counts=False, log16=True)

    def _geometry(self) -> list[float]:
        """What a dump's numbers mean: a dump with other buckets cannot be reused."""
        s = self.settings
        return [s.recent_bucket, s.recent_buckets, s.baseline_bucket, s.baseline_buckets]

    def dump(self) -> bytes:
        """The whole history as bytes (~1-1.3 KiB with the defaults), for the store to keep
        across a restart: without it every restart would blind drift detection for a day."""
        open_len = min(self._open_count, len(self._open))
        header = {
            "geometry": self._geometry(),
            "open_index": self._open_index,
            "open_count": self._open_count,
            "open_len": open_len,
            "hour_index": self._hour_index,
            "hour_count": self._hour_count,
            "recent_newest": self._recent.newest,
            "baseline_newest": self._baseline.newest,
        }
        parts: list[array[Any]] = [
            self._open[:open_len],
            self._recent._medians,
            self._recent._counts,
            self._hour_values[: self._hour_count],
            self._baseline._medians,
        ]
        head = json.dumps(header, separators=(",", ":")).encode()
        out = bytearray(_DUMP_MAGIC + struct.pack("<I", len(head)) + head)
        for part in parts:
            out += _little_endian(part).tobytes()
        return bytes(out)

    @classmethod
    def load(cls, data: bytes, settings: DriftSettings | None = None) -> LatencyTracker:
        """A tracker from `dump()`. Raises ValueError when the bytes are not a dump, or one made
        with other bucket sizes (its medians would mean something else)."""
        tracker = cls(settings)
        codes = _DUMP_CODES.get(data[:4])
        if codes is None or len(data) < 8:
            raise ValueError("not a latency history")
        real, count, kept = codes
        (head_len,) = struct.unpack("<I", data[4:8])
        try:
            header = json.loads(data[8 : 8 + head_len])
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("damaged latency history") from None
        if not isinstance(header, dict) or header.get("geometry") != tracker._geometry():
            raise ValueError("latency history kept with other bucket sizes")
        try:
            open_len = int(header["open_len"])
            hour_count = int(header["hour_count"])
            sizes = [
                (real, open_len),
                (real, tracker._recent.maxlen),
                (count, tracker._recent.maxlen),
                (real, hour_count),
                (kept, tracker._baseline.maxlen),
            ]
            open_count = int(header["open_count"])
            # (the open bucket's array only grows while it is not full: see `observe`)
            if (
                open_count < 0
                or open_len != min(open_count, MAX_BUCKET_VALUES)
                or not (0 <= hour_count <= len(tracker._hour_values))
            ):
                raise ValueError("latency history out of range")
            parts: list[array[Any]] = []
            at = 8 + head_len
            for code, n in sizes:
                part = array(code)
                end = at + n * part.itemsize
                if end > len(data):
                    raise ValueError("latency history cut short")
                part.frombytes(data[at:end])
                parts.append(_little_endian(part))  # (a swap is its own inverse)
                at = end
            open_values, recent_medians, recent_counts, hour_values, baseline_medians = parts
            tracker._open = array(FLOAT, open_values)
            tracker._open_count = open_count
            tracker._open_index = _opt_int(header["open_index"])
            tracker._recent._medians = array(FLOAT, recent_medians)
            tracker._recent._counts = array(COUNT, recent_counts)
            tracker._recent.newest = _opt_int(header["recent_newest"])
            tracker._hour_values[:hour_count] = array(FLOAT, hour_values)
            tracker._hour_count = hour_count
            tracker._hour_index = _opt_int(header["hour_index"])
            tracker._baseline._medians = (
                baseline_medians
                if kept == LOG16
                else array(LOG16, (to_log16(m) for m in baseline_medians))
            )
            tracker._baseline.newest = _opt_int(header["baseline_newest"])
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"damaged latency history ({exc!r})") from None
        return tracker

    def observe(self, total: float, now: float) -> DriftVerdict | None:
        """Add one probe's total time. Returns a verdict when a recent bucket closed, else None."""
        if not math.isfinite(total) or total < 0 or not math.isfinite(now):
            return None
        index = math.floor(now / self.settings.recent_bucket)
        verdict = None
        if self._open_index is None:
            self._open_index = index
        elif index > self._open_index:
            self._close_bucket()
            self._open_index = index
            verdict = self.evaluate(now)
        # (a clock stepping back keeps filling the open bucket)
        count = self._open_count
        if count < len(self._open):
            self._open[count] = total  # reuse the previous bucket's room
        elif count < MAX_BUCKET_VALUES:
            self._open.append(total)
        else:
            self._open[count % MAX_BUCKET_VALUES] = total  # a ring beyond the cap
        self._open_count = count + 1
        return verdict

    def _close_bucket(self) -> None:
        if self._open_index is None or not self._open_count:
            return
        s = self.settings
        bucket_median = median(self._open[: min(self._open_count, len(self._open))])
        self._recent.put(self._open_index, bucket_median, self._open_count)
        self._open_count = 0
        bucket_start = self._open_index * s.recent_bucket
        hour = math.floor(bucket_start / s.baseline_bucket)
        if self._hour_index is not None and hour > self._hour_index and self._hour_count:
            hour_median = median(self._hour_values[: self._hour_count])
            self._baseline.put(self._hour_index, hour_median)
            self._hour_count = 0
        if self._hour_index is None or hour >= self._hour_index:
            self._hour_index = hour
        if self._hour_count < len(self._hour_values):
            self._hour_values[self._hour_count] = bucket_median
            self._hour_count += 1

    def _baseline_values(self, now: float) -> list[float]:
        """Closed baseline buckets that end before the recent span and lie within baseline_span."""
        s = self.settings
        recent_start = now - s.recent_span
        oldest = now - s.recent_span - s.baseline_span
        return [
            median
            for index, median, _ in self._baseline.rows()
            if (index + 1) * s.baseline_bucket <= recent_start + 1e-9
            and index * s.baseline_bucket >= oldest - 1e-9
        ]

    def baseline_seconds(self, now: float | None = None) -> float | None:
        """The usual median latency (None until there is enough history). With `now` omitted,
        the baseline buckets are taken as of the newest closed bucket."""
        if now is None:
            if self._open_index is None:
                return None
            now = self._open_index * self.settings.recent_bucket
        values = self._baseline_values(now)
        if len(values) < self.settings.min_baseline_buckets:
            return None
        return float(median(values))

    def evaluate(self, now: float) -> DriftVerdict:
        s = self.settings
        current = math.floor(now / s.recent_bucket)
        recent = [
            (m, int(n))
            for index, m, n in self._recent.rows()
            if index >= current - s.recent_buckets
        ]
        baseline = self._baseline_values(now)
        recent_median = float(median(m for m, _ in recent)) if recent else None
        baseline_median = float(median(baseline)) if baseline else None
        reason = ""
        if len(recent) < s.min_recent_buckets:
            reason = f"not enough recent data ({len(recent)} of {s.min_recent_buckets} buckets)"
        elif len(baseline) < s.min_baseline_buckets:
            reason = f"not enough history ({len(baseline)} of {s.min_baseline_buckets} buckets)"
        elif recent_median is not None and baseline_median is not None:
            if recent_median < s.ratio * baseline_median:
                reason = f"below {s.ratio:g}x the usual median"
            elif recent_median - baseline_median < s.absolute:
                reason = f"less than {s.absolute:g}s above the usual median"
        return DriftVerdict(
            at=now,
            drifting=reason == "",
            recent=recent_median,
            baseline=baseline_median,
            recent_probes=sum(n for _, n in recent),
            recent_buckets=len(recent),
            baseline_buckets=len(baseline),
            recent_span=len(recent) * s.recent_bucket,
            baseline_span=len(baseline) * s.baseline_bucket,
            reason=reason,
        )


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _little_endian(part: array[Any]) -> array[Any]:
    """Dumps are little-endian whatever the machine, so a state_dir can move between machines."""
    if sys.byteorder == "little":
        return part
    swapped = array(part.typecode, part.tobytes())
    swapped.byteswap()
    return swapped
