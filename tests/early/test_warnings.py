"""The alert policy: one warning per confirmed trend, one RESOLVED when it ends, OOM at once."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.early.events import EarlyEvent, MemoryEvents, OomEvent, TrendEnded, TrendStarted
from sentinel.early.latency import DriftVerdict
from sentinel.early.trend import Verdict
from sentinel.early.warnings import (
    OOM_COOLDOWN,
    OomState,
    WarningState,
    WarnSettings,
    step,
    step_drift,
    step_oom,
    step_steal,
)

MIB = 1024 * 1024
DAY = 86400.0
SETTINGS = WarnSettings(warn_within=3 * DAY, min_growth=10 * MIB / DAY)
RISING = Verdict(
    rising=True,
    rate_per_s=48 * MIB / DAY,
    level=600 * MIB,
    limit=1024 * MIB,
    seconds_to_limit=2.5 * DAY,
    samples=1437,
    buckets=48,
    covered=DAY,
    window=DAY,
    at=0.0,
    segment=0,
    segment_start=0.0,
)
FLAT = replace(RISING, rising=False, seconds_to_limit=None, rate_per_s=0.0, reason="not rising")


def run(verdicts: list[Verdict], settings: WarnSettings = SETTINGS) -> list[object]:
    state = WarningState("creeping", "web", source="unit web.service")
    events: list[object] = []
    for i, verdict in enumerate(verdicts):
        state, new = step(state, verdict, settings, 1000.0 + i * 1800, limit_source="memory.max")
        events.extend(new)
    return events


def test_two_rising_evaluations_in_a_row_give_one_warning_with_the_numbers() -> None:
    events = run([RISING, RISING, RISING, RISING])
    assert len(events) == 1
    (started,) = events
    assert isinstance(started, TrendStarted)
    assert started.kind == "creeping"
    assert started.subject == "web"
    assert started.since == 1000.0 and started.at == 2800.0
    assert started.rate_per_s == RISING.rate_per_s
    assert started.limit == 1024 * MIB and started.limit_source == "memory.max"
    assert started.seconds_to_limit == 2.5 * DAY
    assert (started.samples, started.buckets, started.window) == (1437, 48, DAY)
    assert started.source == "unit web.service"
    assert started.trend_id == "creeping:web:1000.000"


def test_a_single_rising_evaluation_is_not_enough() -> None:
    assert run([RISING, FLAT, RISING, FLAT]) == []


def test_growth_below_min_growth_or_a_far_forecast_is_not_warned_about() -> None:
    slow = replace(RISING, rate_per_s=1 * MIB / DAY)
    far = replace(RISING, seconds_to_limit=30 * DAY)
    unknown = replace(RISING, seconds_to_limit=None, limit=None)
    assert run([slow] * 5) == []
    assert run([far] * 5) == []
    assert run([unknown] * 5) == []


def test_sentinel_itself_needs_no_forecast() -> None:
    far = replace(RISING, seconds_to_limit=None, limit=None)
    events = run([far, far], replace(SETTINGS, require_forecast=False))
    assert len(events) == 1


def test_a_restart_resolves_the_warning_once() -> None:
    restarted = replace(FLAT, segment=1, last_value=80 * MIB, reason="collecting data")
    events = run([RISING, RISING, restarted, restarted, restarted, restarted])
    assert [type(e) for e in events] == [TrendStarted, TrendEnded]
    ended = events[1]
    assert isinstance(ended, TrendEnded)
    assert ended.reason == "restarted"
    assert ended.level == 80 * MIB
    assert ended.trend_id == events[0].trend_id  # type: ignore[attr-defined]


def test_three_evaluations_without_growth_resolve_the_warning() -> None:
    events = run([RISING, RISING, FLAT, FLAT, RISING, FLAT, FLAT, FLAT, FLAT])
    assert [type(e) for e in events] == [TrendStarted, TrendEnded]
    ended = events[1]
    assert isinstance(ended, TrendEnded)
    assert ended.reason == "stopped rising: not rising"


def test_a_warned_trend_whose_samples_age_out_resolves_for_lack_of_data() -> None:
    gone = replace(FLAT, rate_per_s=None, reason="collecting data (3 of 9 buckets)")
    events = run([RISING, RISING, gone, gone, gone])
    assert isinstance(events[-1], TrendEnded)
    assert events[-1].reason == "stopped rising: no recent samples"


def test_a_trend_that_comes_back_after_a_restart_is_warned_about_again() -> None:
    again = replace(RISING, segment=1)
    events = run([RISING, RISING, again, again, again])
    assert [type(e) for e in events] == [TrendStarted, TrendEnded, TrendStarted]
    assert events[0].trend_id != events[2].trend_id  # type: ignore[attr-defined]


verdicts = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.integers(0, 1)),  # rising, in time, restart
    max_size=60,
)


@settings(max_examples=200)
@given(verdicts)
def test_warnings_and_resolutions_alternate_and_pair_up(
    steps: list[tuple[bool, bool, int]],
) -> None:
    segment = 0
    series: list[Verdict] = []
    for rising, in_time, restart in steps:
        segment += restart
        v = RISING if rising else FLAT
        if not in_time:
            v = replace(v, seconds_to_limit=10 * DAY)
        series.append(replace(v, segment=segment))
    events = run(series)
    for i, event in enumerate(events):
        assert isinstance(event, TrendStarted if i % 2 == 0 else TrendEnded)
        if isinstance(event, TrendEnded):
            assert event.warning == events[i - 1]


# ---------------------------------------------------------------- latency drift


def drift(drifting: bool, at: float) -> DriftVerdict:
    return DriftVerdict(
        at=at,
        drifting=drifting,
        recent=0.82 if drifting else 0.31,
        baseline=0.31,
        recent_probes=120,
        recent_buckets=12,
        baseline_buckets=160,
        recent_span=3600.0,
        baseline_span=160 * 3600.0,
        reason="" if drifting else "below 1.5x the usual median",
    )


def test_latency_drift_warns_after_k_evaluations_and_resolves_after_k_back_under() -> None:
    state = WarningState("slower", "shop")
    events: list[tuple[int, EarlyEvent]] = []
    pattern = [True, True, False, True, True, True, True, False, False, True, False, False, False]
    for i, drifting in enumerate(pattern):
        state, new = step_drift(state, drift(drifting, float(i)), 3, float(i))
        events.extend((i, e) for e in new)
    assert [(i, type(e)) for i, e in events] == [(5, TrendStarted), (12, TrendEnded)]
    started = events[0][1]
    assert isinstance(started, TrendStarted)
    assert (started.kind, started.level, started.usual, started.samples) == (
        "slower",
        0.82,
        0.31,
        120,
    )
    assert started.since == 3.0


# ---------------------------------------------------------------- CPU steal


def test_cpu_steal_warns_after_five_samples_over_the_threshold() -> None:
    state = WarningState("steal", "cpu")
    events: list[EarlyEvent] = []
    ratios = [0.1, 0.3, 0.3, 0.3, 0.3, 0.4, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1]
    for i, ratio in enumerate(ratios):
        state, new = step_steal(state, ratio, 0.2, float(i))
        events.extend(new)
    assert [type(e) for e in events] == [TrendStarted, TrendEnded]
    started = events[0]
    assert isinstance(started, TrendStarted)
    assert started.level == pytest.approx(0.32)
    assert started.limit == 0.2 and started.at == 5.0


def test_a_zero_steal_threshold_never_warns() -> None:
    state = WarningState("steal", "cpu")
    for i in range(20):
        state, new = step_steal(state, 1.0, 0.0, float(i))
        assert new == ()


# ---------------------------------------------------------------- OOM


def oom_run(counters: list[tuple[float, MemoryEvents]]) -> list[OomEvent]:
    state = OomState()
    out: list[OomEvent] = []
    for now, c in counters:
        state, events = step_oom(state, c, watch="web", now=now, limit=1024.0)
        out.extend(events)
    return out


def test_oom_counters_already_set_at_start_are_history_not_news() -> None:
    assert oom_run([(0, MemoryEvents(oom_kill=3, high=10)), (60, MemoryEvents(3, 10))]) == []


def test_an_oom_kill_is_reported_at_once() -> None:
    (event,) = oom_run([(0, MemoryEvents()), (60, MemoryEvents(oom_kill=1))])
    assert (event.watch, event.oom_kills, event.high_events, event.at) == ("web", 1, 0, 60)
    assert event.event_id == "oom:web:60.000"


def test_oom_events_within_the_cooldown_are_added_up_and_reported_after_it() -> None:
    events = oom_run(
        [
            (0, MemoryEvents()),
            (60, MemoryEvents(oom_kill=1)),
            (120, MemoryEvents(oom_kill=2, high=5)),
            (180, MemoryEvents(oom_kill=4, high=5)),
            (60 + OOM_COOLDOWN, MemoryEvents(oom_kill=4, high=5)),
            (120 + OOM_COOLDOWN, MemoryEvents(oom_kill=4, high=5)),
        ]
    )
    assert [(e.oom_kills, e.high_events, e.at) for e in events] == [
        (1, 0, 60),
        (3, 5, 60 + OOM_COOLDOWN),
    ]


def test_counters_that_go_down_mean_a_new_cgroup_and_count_from_zero() -> None:
    events = oom_run(
        [(0, MemoryEvents(oom_kill=5)), (60, MemoryEvents(oom_kill=1)), (120, MemoryEvents(1))]
    )
    assert [(e.oom_kills, e.at) for e in events] == [(1, 60)]


def test_a_memory_high_breach_is_reported() -> None:
    (event,) = oom_run([(0, MemoryEvents()), (60, MemoryEvents(high=7))])
    assert (event.oom_kills, event.high_events) == (0, 7)
