"""The trend detector over synthetic series: leaks are found with the right rate; sawtooth, plateau,
noise and restarts are not reported."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sentinel.early.trend import (
    MAX_BUCKETS,
    TrendSeries,
    bucket_width,
    detect_samples,
    mann_kendall_z,
    theil_sen,
)

DAY = 86400.0
MIB = 1024 * 1024
WINDOW = DAY
EVERY = 300.0  # 6 samples per 30-minute bucket: fast, and enough to catch a GC floor
T0 = 1_700_000_000.0  # an absolute epoch, as the service uses

Series = list[tuple[float, float, str | None]]


def times(coverage: float, every: float = EVERY) -> list[float]:
    """Sample times covering `coverage` of the window, ending just before `now`."""
    n = int(WINDOW * coverage / every)
    return [T0 + i * every for i in range(n)]


def now_after(ts: list[float], every: float = EVERY) -> float:
    return ts[-1] + every


def sawtooth(i: int, period: int, amplitude: float, phase: int) -> float:
    """Allocate-and-free: climbs for `period` samples, then a collection drops it to the floor."""
    return amplitude * (((i + phase) % period) / period) if period > 1 else 0.0


leak_params = st.fixed_dictionaries(
    {
        "base": st.floats(10 * MIB, 2048 * MIB),
        "per_day": st.floats(5 * MIB, 5000 * MIB),
        "coverage": st.floats(0.4, 1.0),
        "noise": st.floats(0.0, 0.04),  # of the rise over the covered span
        "saw_period": st.integers(1, 3),  # at most half a bucket
        "saw_amp": st.floats(0.0, 5.0),  # of the rise over the covered span
        "phase": st.integers(0, 2),
        "seed": st.integers(0, 2**32 - 1),
    }
)


@settings(max_examples=150, deadline=None)
@given(leak_params)
def test_a_linear_leak_is_found_with_its_rate_within_20_percent(p: dict[str, float]) -> None:
    rng = random.Random(p["seed"])
    rate = p["per_day"] / DAY
    ts = times(p["coverage"])
    rise = rate * (ts[-1] - ts[0])
    series = [
        (
            t,
            p["base"]
            + rate * (t - T0)
            + sawtooth(i, int(p["saw_period"]), p["saw_amp"] * rise, int(p["phase"]))
            + rng.uniform(-1, 1) * p["noise"] * rise,
            "pid:1",
        )
        for i, t in enumerate(ts)
    ]
    now = now_after(ts)
    limit = p["base"] + 10 * rise
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=now, limit=limit)
    assert verdict.rising, verdict.reason
    assert verdict.rate_per_s is not None
    assert abs(verdict.rate_per_s - rate) <= 0.2 * rate
    assert verdict.level is not None and verdict.seconds_to_limit is not None
    assert verdict.seconds_to_limit == pytest.approx((limit - verdict.level) / verdict.rate_per_s)
    assert verdict.reason == ""


@settings(max_examples=150, deadline=None)
@given(
    base=st.floats(10 * MIB, 2048 * MIB),
    amp=st.floats(0.0, 4.0),  # of the base
    period=st.integers(2, 15),
    phase=st.integers(0, 14),
    coverage=st.floats(0.34, 1.0),
)
def test_an_allocate_and_free_sawtooth_is_not_a_leak(
    base: float, amp: float, period: int, phase: int, coverage: float
) -> None:
    every = 60.0  # 30 samples per bucket: the floor is seen in every bucket
    ts = times(coverage, every)
    series = [(t, base + sawtooth(i, period, amp * base, phase), None) for i, t in enumerate(ts)]
    verdict = detect_samples(
        series, window=WINDOW, sample_every=every, now=now_after(ts, every), limit=4 * base
    )
    assert not verdict.rising
    assert verdict.seconds_to_limit is None


@settings(max_examples=150, deadline=None)
@given(
    base=st.floats(10 * MIB, 1024 * MIB),
    height=st.floats(0.05, 3.0),  # of the base
    ramp=st.floats(0.0, 0.6),  # share of the covered span spent filling
    shape=st.sampled_from(["linear", "exponential"]),
    noise=st.floats(0.0, 0.01),  # of the height
    coverage=st.floats(0.5, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
# Found by CI: a cache that filled in the first 8 % of the covered span, then level with noise.
@example(
    base=10 * MIB,
    height=1.0,
    ramp=0.083984375,
    shape="exponential",
    noise=0.009765625,
    coverage=0.5,
    seed=29536,
)
def test_a_cache_that_fills_and_levels_off_is_not_a_leak(
    base: float,
    height: float,
    ramp: float,
    shape: str,
    noise: float,
    coverage: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    ts = times(coverage)
    span = ts[-1] - ts[0]
    full = height * base

    def level(t: float) -> float:
        x = (t - ts[0]) / span
        if shape == "linear":
            filled = 1.0 if ramp == 0 else min(1.0, x / ramp)
        else:  # saturating: 95 % full after `ramp` (at most 60 %) of the span
            filled = 1 - math.exp(-3 * x / max(ramp, 1e-6))
        return base + full * filled + rng.uniform(-1, 1) * noise * full

    series = [(t, level(t), None) for t in ts]
    verdict = detect_samples(
        series, window=WINDOW, sample_every=EVERY, now=now_after(ts), limit=base + 2 * full
    )
    assert not verdict.rising, verdict


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(10 * MIB, 2048 * MIB),
    amplitude=st.floats(0.0, 0.5),  # of the base
    gaussian=st.booleans(),
    coverage=st.floats(0.34, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_noise_around_a_steady_level_is_not_a_leak(
    base: float, amplitude: float, gaussian: bool, coverage: float, seed: int
) -> None:
    rng = random.Random(seed)
    ts = times(coverage)

    def jitter() -> float:
        if gaussian:
            return max(-0.9, min(0.9, rng.gauss(0, amplitude / 2)))
        return rng.uniform(-amplitude, amplitude)

    series = [(t, base * (1 + jitter()), None) for t in ts]
    verdict = detect_samples(
        series, window=WINDOW, sample_every=EVERY, now=now_after(ts), limit=2 * base
    )
    assert not verdict.rising, verdict


@settings(max_examples=100, deadline=None)
@given(
    segments=st.lists(
        st.tuples(
            st.floats(10 * MIB, 1024 * MIB),  # steady level after warm-up
            st.floats(0.02, 0.3),  # share of the window until the next restart
        ),
        min_size=2,
        max_size=12,
    ),
    warmup=st.integers(0, 6),  # samples of start-up growth
)
def test_a_service_that_restarts_at_different_levels_is_not_a_leak(
    segments: list[tuple[float, float]], warmup: int
) -> None:
    series: Series = []
    t = T0
    for number, (level, share) in enumerate(segments):
        for i in range(max(2, int(share * WINDOW / EVERY))):
            value = level * (0.5 + 0.5 * min(1.0, i / warmup)) if warmup else level
            series.append((t, value, f"invocation:{number}"))
            t += EVERY
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=t, limit=4096 * MIB)
    assert not verdict.rising, verdict
    assert verdict.segment == len(segments) - 1


@settings(max_examples=60, deadline=None)
@given(
    per_day=st.floats(50 * MIB, 2000 * MIB),
    restarts_every=st.floats(0.05, 0.25),  # of the window
    current=st.floats(0.4, 0.6),  # of the window since the last restart
)
def test_only_the_segment_since_the_last_restart_is_fitted(
    per_day: float, restarts_every: float, current: float
) -> None:
    """Restarts found by the drop (no identity): each old segment leaks from 100 MiB too, and
    the fit of the current one is not bent by them."""
    rate = per_day / DAY
    base = 100 * MIB
    series: Series = []
    t = T0
    # Old segments leak far enough that the restart is a drop below half of the floor.
    old_len = max(2, int(restarts_every * WINDOW / EVERY))
    for _ in range(3):
        start = t
        for _ in range(old_len):
            series.append((t, 3 * base + rate * (t - start), None))
            t += EVERY
    start = t
    for _ in range(int(current * WINDOW / EVERY)):
        series.append((t, base + rate * (t - start), None))
        t += EVERY
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=t, limit=8192 * MIB)
    assert verdict.segment >= 1
    assert verdict.segment_start == start
    assert verdict.rising, verdict.reason
    assert verdict.rate_per_s == pytest.approx(rate, rel=0.2)


def test_a_new_identity_starts_a_new_segment_even_without_a_drop() -> None:
    series = TrendSeries(WINDOW, EVERY)
    assert series.add(T0, 100.0, "pid:1") is None
    assert series.add(T0 + EVERY, 101.0, "pid:1") is None
    assert series.add(T0 + 2 * EVERY, 150.0, "pid:2") == "restarted"
    assert series.segment == 1
    assert [b.value for b in series.buckets()] == [150.0]


def test_a_drop_below_half_of_the_recent_floor_starts_a_new_segment() -> None:
    series = TrendSeries(WINDOW, EVERY)
    series.add(T0, 400.0)
    series.add(T0 + EVERY, 300.0)  # a collection: a drop, but not below half
    assert series.segment == 0
    assert series.add(T0 + 2 * EVERY, 140.0) == "dropped"
    assert series.segment == 1


def test_a_clock_that_steps_back_starts_a_new_segment() -> None:
    series = TrendSeries(WINDOW, EVERY)
    series.add(T0, 100.0)
    assert series.add(T0 - 3600, 100.0) == "clock"


def test_too_little_data_is_not_a_verdict_and_says_why() -> None:
    ts = [T0 + i * EVERY for i in range(21)]  # 100 minutes: 3 complete buckets of 30
    series = [(t, 100 * MIB + (t - T0) * 1000, None) for t in ts[:20]]
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=ts[20])
    assert not verdict.rising
    assert verdict.reason.startswith("collecting data")
    assert verdict.rate_per_s is None


def test_a_short_segment_of_a_long_window_is_not_enough() -> None:
    # 12 complete buckets of 30 minutes = 6 hours < a third of 24 hours.
    ts = [T0 + i * EVERY for i in range(6 * 12 + 1)]
    series = [(t, 100 * MIB + (t - T0) * 1000, None) for t in ts]
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=ts[-1] + 1)
    assert not verdict.rising
    assert "of the window" in verdict.reason


def test_the_open_bucket_is_left_out_of_the_fit() -> None:
    width = bucket_width(WINDOW, EVERY)
    ts = [T0 + i * EVERY for i in range(int(WINDOW / EVERY))]
    series = [(t, 100 * MIB + (t - T0) * 1000, None) for t in ts]
    now = (math.floor(ts[-1] / width)) * width + 1  # inside the last sample's bucket
    verdict = detect_samples(series, window=WINDOW, sample_every=EVERY, now=now)
    assert verdict.buckets <= MAX_BUCKETS
    assert verdict.samples < len(series)


def test_the_series_stays_bounded_whatever_the_sample_rate() -> None:
    series = TrendSeries(window=3600.0, sample_every=0.1)
    for i in range(60_000):
        series.add(T0 + i * 0.1, float(i))
    assert len(series.buckets()) <= MAX_BUCKETS + 2


def test_theil_sen_is_exact_on_a_line_and_ignores_an_outlier() -> None:
    xs = [float(i) for i in range(11)]
    ys = [3.0 * x + 7 for x in xs]
    assert theil_sen(xs, ys) == pytest.approx(3.0)
    ys[5] = 1e9
    assert theil_sen(xs, ys) == pytest.approx(3.0)
    assert theil_sen([1.0, 1.0], [0.0, 5.0]) is None


def test_mann_kendall_sees_a_monotone_rise_and_not_a_flat_line() -> None:
    assert mann_kendall_z([float(i) for i in range(10)]) > 3
    assert mann_kendall_z([5.0] * 10) == 0.0
    assert mann_kendall_z([float(-i) for i in range(10)]) < -3
