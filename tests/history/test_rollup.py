"""The pure rollup arithmetic: histograms, merging, percentiles, interval splitting, coverage."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from sentinel.history.rollup import (
    BUCKET_BOUNDS_US,
    HOUR_MS,
    N_BUCKETS,
    Coverage,
    PackedRollup,
    Rollup,
    bucket_of,
    decode_hist,
    encode_hist,
    split,
)

latencies = st.integers(min_value=0, max_value=200_000_000)
probes = st.lists(st.tuples(st.booleans(), latencies), max_size=200)


def rollup_of(items: list[tuple[bool, int]]) -> Rollup:
    r = Rollup()
    for ok, lat in items:
        r.add_probe(ok, lat)
    return r


def test_buckets_are_log_spaced_and_cover_two_minutes() -> None:
    assert N_BUCKETS <= 256  # an index is one byte in the stored histogram
    assert BUCKET_BOUNDS_US[0] == 500
    assert BUCKET_BOUNDS_US[-1] >= 120_000_000
    for lo, hi in itertools.pairwise(BUCKET_BOUNDS_US):
        assert 1.18 < hi / lo < 1.20


@given(st.dictionaries(st.integers(0, N_BUCKETS - 1), st.integers(1, 2**40)))
def test_histogram_bytes_round_trip(hist: dict[int, int]) -> None:
    assert decode_hist(encode_hist(hist)) == hist


@given(st.binary(max_size=40))
def test_damaged_histogram_bytes_raise_value_error_or_decode(data: bytes) -> None:
    try:
        hist = decode_hist(data)
    except ValueError:
        return
    assert all(0 <= k < N_BUCKETS for k in hist)


@given(probes, st.lists(st.integers(0, 200), max_size=6))
def test_merging_any_partition_equals_the_raw_probes(
    items: list[tuple[bool, int]], cuts: list[int]
) -> None:
    bounds = sorted({0, len(items), *(min(c, len(items)) for c in cuts)})
    parts = [rollup_of(items[a:b]) for a, b in itertools.pairwise(bounds)]
    merged = Rollup()
    for part in reversed(parts):  # order does not matter
        merged.merge(part)
    assert merged == rollup_of(items)
    good = [lat for ok, lat in items if ok]
    assert merged.probes == len(items)
    assert merged.failures == len(items) - len(good)
    assert merged.lat_max_us == max(good, default=0)
    assert sum(merged.hist.values()) == len(good)


@given(probes, st.integers(0, 10**9), st.integers(0, 10**9))
def test_a_packed_rollup_gives_back_an_equal_one(
    items: list[tuple[bool, int]], covered: int, down: int
) -> None:
    r = rollup_of(items)
    r.covered_ms, r.down_ms, r.excused_ms = covered, down, down // 3
    packed = PackedRollup.of(r)
    assert packed.rollup() == r
    assert (packed.covered_ms, packed.down_ms, packed.excused_ms) == (covered, down, down // 3)
    assert packed.rollup() is not packed.rollup()  # (each caller gets its own to merge into)


@given(probes, st.sampled_from([0.5, 0.95, 0.99, 1.0]))
def test_percentile_is_the_true_quantile_within_one_bucket(
    items: list[tuple[bool, int]], q: float
) -> None:
    r = rollup_of(items)
    good = sorted(lat for ok, lat in items if ok)
    estimate = r.percentile_us(q)
    if not good:
        assert estimate is None
        return
    true = good[max(1, math.ceil(q * len(good))) - 1]
    assert estimate is not None
    assert true <= estimate <= max(good)
    # never more than one bucket (19 %) above the truth, unless the truth is below the first
    assert estimate <= max(500, math.ceil(true * 2 ** (1 / 4)) + 1)
    assert bucket_of(estimate) == bucket_of(true)


@given(st.integers(0, 10**13), st.integers(0, 10 * HOUR_MS))
def test_split_covers_the_interval_exactly(start: int, length: int) -> None:
    pieces = list(split(start, start + length, HOUR_MS))
    assert sum(span for _, span in pieces) == length
    assert all(0 < span <= HOUR_MS for _, span in pieces)
    assert [p for p, _ in pieces] == list(range(start // HOUR_MS, start // HOUR_MS + len(pieces)))


def test_coverage_counts_the_time_since_the_previous_probe() -> None:
    c = Coverage(cap_ms=150_000)
    assert c.observe(1_000_000, was_down=False, went_down=False, failing_since_ms=None) == (
        None,
        None,
    )
    assert c.observe(1_060_000, was_down=False, went_down=False, failing_since_ms=None) == (
        (1_000_000, 1_060_000),
        None,
    )
    # a gap longer than the cap (sentinel was stopped) is no data
    assert c.observe(2_000_000, was_down=True, went_down=False, failing_since_ms=None) == (
        None,
        None,
    )


def test_going_down_makes_the_failing_streak_downtime_but_not_before_watching() -> None:
    c = Coverage(cap_ms=150_000)
    c.observe(1_000_000, was_down=False, went_down=False, failing_since_ms=None)
    c.observe(1_060_000, was_down=False, went_down=False, failing_since_ms=None)
    watched, down = c.observe(1_120_000, was_down=False, went_down=True, failing_since_ms=1_060_000)
    assert watched == (1_060_000, 1_120_000)
    assert down == (1_060_000, 1_120_000)
    # after a restart the streak may have begun before this run: clipped to the watching
    c2 = Coverage(cap_ms=150_000)
    c2.observe(5_000_000, was_down=False, went_down=False, failing_since_ms=None)
    _, down = c2.observe(5_060_000, was_down=False, went_down=True, failing_since_ms=4_000_000)
    assert down == (5_000_000, 5_060_000)


def test_uptime_is_none_without_watching() -> None:
    assert Rollup().uptime() is None
    assert Rollup(covered_ms=1000, down_ms=250).uptime() == 0.75
