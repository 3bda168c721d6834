"""Latency drift: the recent median against a multi-day baseline, with seconds standing in for
minutes and hours."""

from __future__ import annotations

import json
import math
import random
import struct
import tracemalloc
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.early.events import TrendEnded, TrendStarted
from sentinel.early.latency import (
    FLOAT,
    LOG16,
    MAX_BUCKET_VALUES,
    DriftSettings,
    LatencyTracker,
    Slots,
    from_log16,
    to_log16,
)
from sentinel.early.warnings import WarningState, step_drift

# The baseline's hourly medians are kept to 0.036 % (16 bits on a log scale).
BASELINE_REL = 4e-4

# "5 minutes" = 1 s, "1 hour" = 10 s, "7 days" = 200 s.
FAST = DriftSettings(
    recent_bucket=1.0,
    recent_span=10.0,
    baseline_bucket=10.0,
    baseline_span=200.0,
    min_baseline_buckets=5,
)
PROBE_EVERY = 0.25


class Site:
    """A tracker plus its alert state, fed like the service feeds it."""

    def __init__(self, drift: DriftSettings = FAST) -> None:
        self.tracker = LatencyTracker(drift)
        self.state = WarningState("slower", "shop")
        self.events: list[tuple[float, object]] = []
        self.evaluations = 0
        self.now = 1_700_000_000.0

    def probe(self, seconds: float, total: float) -> None:
        end = self.now + seconds
        while self.now < end:
            verdict = self.tracker.observe(total, self.now)
            if verdict is not None:
                self.evaluations += 1
                self.state, new = step_drift(
                    self.state, verdict, self.tracker.settings.consecutive, self.now
                )
                self.events.extend((self.now, e) for e in new)
            self.now += PROBE_EVERY


def test_no_verdict_before_there_is_enough_history() -> None:
    site = Site()
    site.probe(30, 0.3)
    site.probe(15, 3.0)  # 3 "hours" of history before the recent "hour": 5 are needed
    assert site.events == []
    verdict = site.tracker.evaluate(site.now)
    assert not verdict.drifting
    assert verdict.reason.startswith("not enough history")


def test_a_site_that_gets_slower_is_reported_after_k_evaluations_and_resolves() -> None:
    site = Site()
    site.probe(100, 0.310)
    assert site.tracker.baseline_seconds() == pytest.approx(0.310, rel=BASELINE_REL)
    slow_from = site.now
    site.probe(20, 0.820)
    (first,) = site.events
    at, started = first
    assert isinstance(started, TrendStarted)
    assert started.kind == "slower"
    assert started.level == pytest.approx(0.820)
    assert started.usual == pytest.approx(0.310, rel=BASELINE_REL)
    assert started.evaluations == FAST.consecutive
    # Half of the recent buckets must be slow before the median moves, then K evaluations.
    assert slow_from + 5 <= at <= slow_from + 5 + FAST.consecutive + 1
    back_from = site.now
    site.probe(20, 0.310)
    assert len(site.events) == 2
    at, ended = site.events[1]
    assert isinstance(ended, TrendEnded)
    assert ended.reason == "back to usual"
    assert ended.warning is started
    assert at <= back_from + 10


def test_a_large_ratio_without_an_absolute_difference_is_not_drift() -> None:
    site = Site()
    site.probe(100, 0.010)
    site.probe(30, 0.040)  # 4x slower, but only 30 ms
    assert site.events == []


def test_an_absolute_difference_without_the_ratio_is_not_drift() -> None:
    site = Site()
    site.probe(100, 2.0)
    site.probe(30, 2.5)  # +500 ms, but only 1.25x
    assert site.events == []


def test_a_short_spike_is_not_drift() -> None:
    site = Site()
    site.probe(100, 0.3)
    site.probe(3, 5.0)  # under half of the recent window
    site.probe(20, 0.3)
    assert site.events == []


@settings(max_examples=50, deadline=None)
@given(
    usual=st.floats(0.005, 5.0),
    jitter=st.floats(0.0, 0.3),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_steady_site_with_jitter_never_drifts(usual: float, jitter: float, seed: int) -> None:
    rng = random.Random(seed)
    tracker = LatencyTracker(FAST)
    now = 1_700_000_000.0
    for _ in range(int(300 / PROBE_EVERY)):
        verdict = tracker.observe(usual * (1 + rng.uniform(-jitter, jitter)), now)
        assert verdict is None or not verdict.drifting
        now += PROBE_EVERY


def test_memory_stays_bounded_however_long_and_fast_it_is_fed() -> None:
    tracker = LatencyTracker(FAST)
    now = 0.0
    for i in range(40_000):
        tracker.observe(0.1 + (i % 7) / 100, now)
        now += 0.05  # longer than the baseline span, and more probes than a bucket holds
    assert len(tracker._recent) <= FAST.recent_buckets
    assert len(tracker._baseline) <= FAST.baseline_buckets
    assert len(tracker._open) <= MAX_BUCKET_VALUES
    assert len(tracker._hour_values) <= FAST.baseline_bucket / FAST.recent_bucket + 1


def test_a_trackers_memory_is_fixed_after_its_first_bucket_for_a_week_and_more() -> None:
    """The soak's question, per site: a week of history (168 hourly medians) must not cost more
    memory than the first hour did, so a long-running daemon's RSS stays flat."""
    tracker = LatencyTracker(DriftSettings())
    now = 1_700_000_000.0
    rng = random.Random(7)
    tracemalloc.start()
    try:
        for _ in range(int(3600 / 10)):  # an hour at 10 s: buckets have closed, free lists filled
            tracker.observe(0.1 + rng.random() / 100, now)
            now += 10
        spare = [rng.random() for _ in range(1000)]
        del spare  # fills the interpreter's float free list, which tracemalloc counts as used
        after_warm_up = tracemalloc.get_traced_memory()[0]
        for _ in range(int(8 * 86400 / 10)):  # eight days: every ring has wrapped
            tracker.observe(0.1 + rng.random() / 100, now)
            now += 10
        after_a_week = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(tracker._baseline) == DriftSettings().baseline_buckets
    # (a list of 168 boxed medians alone would be 5 KiB; typed arrays grown as they fill, 2.7 KiB)
    assert after_a_week - after_warm_up <= 512  # bytes: no growth beyond allocator noise


def test_the_default_settings_are_an_hour_against_a_week() -> None:
    d = DriftSettings()
    assert (d.ratio, d.absolute, d.consecutive) == (1.5, 0.1, 3)
    assert d.recent_buckets == 12
    assert d.baseline_buckets == 168


def test_bad_values_are_ignored() -> None:
    tracker = LatencyTracker(FAST)
    assert tracker.observe(float("nan"), 1.0) is None
    assert tracker.observe(-1.0, 1.0) is None
    assert tracker.observe(1.0, float("inf")) is None
    assert len(tracker._open) == 0


@settings(max_examples=200, deadline=None)
@given(
    maxlen=st.integers(1, 12),
    steps=st.lists(st.tuples(st.integers(0, 30), st.floats(0, 10)), max_size=60),
)
def test_slots_keep_the_newest_indices_like_a_dict_would(
    maxlen: int, steps: list[tuple[int, float]]
) -> None:
    """The fixed-size history against the obvious model: a dict of index -> median, keeping
    indices within `maxlen` of the newest ever seen (indices only move forward in use, plus
    repeats of the current one; here they also jump and go back)."""
    slots = Slots(maxlen)
    model: dict[int, float] = {}
    newest: int | None = None
    for index, median in steps:
        slots.put(index, median, 1)
        if newest is None or index > newest:
            newest = index
        if index > newest - maxlen:
            model[index] = array(FLOAT, [median])[0]  # kept in 32 bits
        model = {i: m for i, m in model.items() if i > newest - maxlen}
    assert [(i, m) for i, m, _ in slots.rows()] == sorted(model.items())


def _feed(tracker: LatencyTracker, start: float, seconds: float, every: float, seed: int) -> list:
    rng = random.Random(seed)
    verdicts = []
    now = start
    while now < start + seconds:
        verdict = tracker.observe(0.1 + rng.random() / 50 + (now - start) / 3e6, now)
        if verdict is not None:
            verdicts.append(verdict)
        now += every
    return verdicts


def test_a_dumped_and_loaded_history_carries_on_exactly_like_the_original() -> None:
    """What a restart of sentinel keeps: the week of hourly medians behind the baseline, the
    recent medians and the open bucket, so that drift detection is not blind for a day."""
    original = LatencyTracker()
    start = 1_700_000_123.0
    _feed(original, start, 2 * 86400, 30, seed=1)
    data = original.dump()
    assert len(data) < 4096
    restored = LatencyTracker.load(data)
    assert restored.baseline_seconds() == original.baseline_seconds() is not None
    # (a restart a few minutes later: the open bucket closes into the right place)
    later = start + 2 * 86400 + 400
    assert _feed(restored, later, 86400, 30, seed=2) == _feed(original, later, 86400, 30, seed=2)
    assert restored.dump() == original.dump()


def _as_earlier_format(dump: bytes, magic: bytes) -> bytes:
    """The same history as an earlier version dumped it: SLT1 in doubles and 64-bit counts,
    SLT2 in 32-bit floats and counts (both with the baseline as floats)."""
    (head_len,) = struct.unpack("<I", dump[4:8])
    head = dump[8 : 8 + head_len]
    out, at = bytearray(magic + dump[4 : 8 + head_len]), 8 + head_len
    header = json.loads(head)
    recent, baseline = int(header["geometry"][1]), int(header["geometry"][3])
    real, count = ("d", "q") if magic == b"SLT1" else ("f", "i")
    for code, wide, n in [
        ("f", real, header["open_len"]),
        ("f", real, recent),
        ("i", count, recent),
        ("f", real, header["hour_count"]),
        (LOG16, real, baseline),
    ]:
        part: array[Any] = array(code)
        part.frombytes(dump[at : at + n * part.itemsize])
        at += n * part.itemsize
        values = [from_log16(q) for q in part] if code == LOG16 else part
        out += array(wide, values).tobytes()
    assert at == len(dump)
    return bytes(out)


@pytest.mark.parametrize("magic", [b"SLT1", b"SLT2"])
def test_a_history_dumped_by_an_earlier_version_is_read(magic: bytes) -> None:
    original = LatencyTracker()
    start = 1_700_000_123.0
    _feed(original, start, 2 * 86400, 30, seed=1)
    restored = LatencyTracker.load(_as_earlier_format(original.dump(), magic))
    assert restored.dump() == original.dump()
    later = start + 2 * 86400 + 400
    assert _feed(restored, later, 86400, 30, seed=2) == _feed(original, later, 86400, 30, seed=2)


@given(st.floats(0, 1e5))
def test_a_baseline_median_is_kept_to_four_in_ten_thousand(seconds: float) -> None:
    code = to_log16(seconds)
    assert 1 <= code <= 65535
    assert to_log16(from_log16(code)) == code  # (what a dump keeps reads back the same)
    if 1e-6 <= seconds <= 3600:
        assert from_log16(code) == pytest.approx(seconds, rel=BASELINE_REL)


def test_an_empty_baseline_hour_is_its_own_code() -> None:
    assert to_log16(math.nan) == 0 and math.isnan(from_log16(0))
    assert to_log16(0.0) == 1  # (a median of 0 s is kept as 1 us, not as "no data")


def test_a_fresh_tracker_round_trips_too() -> None:
    assert LatencyTracker.load(LatencyTracker().dump()).dump() == LatencyTracker().dump()


def test_a_history_kept_with_other_bucket_sizes_is_refused() -> None:
    data = LatencyTracker(FAST).dump()
    with pytest.raises(ValueError, match="other bucket sizes"):
        LatencyTracker.load(data)
    # thresholds are not geometry: a changed ratio keeps the history
    LatencyTracker.load(LatencyTracker().dump(), DriftSettings(ratio=2.0, consecutive=5))


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 5000), flip=st.integers(0, 5000), junk=st.binary(max_size=64))
def test_damaged_histories_raise_value_error_and_nothing_else(
    cut: int, flip: int, junk: bytes
) -> None:
    tracker = LatencyTracker()
    _feed(tracker, 1_700_000_000.0, 3 * 3600, 60, seed=3)
    data = bytearray(tracker.dump())
    if flip < len(data):
        data[flip] ^= 0xFF
    for damaged in (bytes(data[:cut]), bytes(data) + junk, junk, bytes(data)):
        try:
            loaded = LatencyTracker.load(damaged)
        except ValueError:
            continue
        loaded.observe(0.1, 1_700_100_000.0)  # whatever loaded must keep working
        loaded.evaluate(1_700_100_000.0)
