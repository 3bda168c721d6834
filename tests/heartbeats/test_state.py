"""The heartbeat state machine with a fake clock: examples from the issue, then hypothesis over
schedules (fixed periods and cron expressions in several time zones) and ping sequences."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.heartbeats.config import HeartbeatConfig, next_fire
from sentinel.heartbeats.state import (
    MAX_OUTPUT,
    Failed,
    HeartbeatState,
    Late,
    PingKind,
    Recovered,
    check,
    deadline,
    expected_at,
    new_state,
    ping,
    resume,
)
from sentinel.store import decode_dataclass, encode_dataclass

ZURICH = ZoneInfo("Europe/Zurich")
HOUR = 3600.0
DAY = 86400.0


def ts(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    tz: ZoneInfo = ZURICH,
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


NIGHTLY = HeartbeatConfig(
    name="nightly-backup", schedule="0 3 * * *", timezone="Europe/Zurich", grace=HOUR
)
EVERY = HeartbeatConfig(name="worker", every=60.0, grace=30.0)


# ---------------------------------------------------------------------------- examples


def test_a_nightly_job_that_pings_on_time_is_never_late() -> None:
    state = new_state("nightly-backup", ts(2026, 11, 30, 12, 0))
    for day in range(1, 8):
        at = ts(2026, 12, day, 3, 0, 5)
        assert check(state, NIGHTLY, at - 1).events == ()
        state = ping(state, NIGHTLY, "success", at).state
        assert state.status == "up"
        assert expected_at(state, NIGHTLY) == ts(2026, 12, day + 1, 3, 0)


def test_a_missed_night_is_late_one_grace_after_the_schedule() -> None:
    state = ping(
        new_state("nightly-backup", 0.0), NIGHTLY, "success", ts(2026, 12, 1, 3, 0, 5)
    ).state
    assert deadline(state, NIGHTLY) == ts(2026, 12, 2, 4, 0)
    assert check(state, NIGHTLY, ts(2026, 12, 2, 4, 0)).events == ()
    step = check(state, NIGHTLY, ts(2026, 12, 2, 4, 0, 1))
    (late,) = step.events
    assert isinstance(late, Late)
    assert late.last_ping == ts(2026, 12, 1, 3, 0, 5)
    assert late.expected_at == ts(2026, 12, 2, 3, 0)
    assert step.state.status == "late"
    # One alert per incident: the timer looking again says nothing new.
    assert check(step.state, NIGHTLY, ts(2026, 12, 2, 5, 0)).events == ()


def test_the_schedule_follows_daylight_saving_time() -> None:
    # Zurich springs forward on 2026-03-29: 03:00 local is 01:00 UTC after, 02:00 UTC before.
    before = ts(2026, 3, 28, 3, 0, 5)
    assert next_fire("0 3 * * *", "Europe/Zurich", before) == ts(2026, 3, 29, 3, 0)
    assert ts(2026, 3, 29, 3, 0) - ts(2026, 3, 28, 3, 0) == 23 * HOUR


def test_a_start_without_an_end_is_late_after_grace() -> None:
    state = ping(new_state("worker", 0.0), EVERY, "success", 100.0).state
    state = ping(state, EVERY, "start", 150.0).state
    assert state.status == "running"
    assert check(state, EVERY, 180.0).events == ()  # start + grace
    (late,) = check(state, EVERY, 180.5).events
    assert isinstance(late, Late)
    assert late.started_at == 150.0


def test_a_run_that_ends_is_measured() -> None:
    state = ping(new_state("worker", 0.0), EVERY, "start", 10.0).state
    state = ping(state, EVERY, "success", 17.5, output="done").state
    assert state.status == "up"
    assert state.last_duration == 7.5
    assert state.last_output == "done"
    assert state.started_at is None


def test_a_failure_alerts_once_and_a_success_recovers_in_the_same_thread() -> None:
    state = new_state("worker", 0.0)
    step = ping(state, EVERY, "fail", 10.0, exit_code=2, output="x" * (MAX_OUTPUT + 5))
    (failed,) = step.events
    assert isinstance(failed, Failed)
    assert failed.exit_code == 2 and failed.opens
    assert len(failed.output) == MAX_OUTPUT
    assert step.state.status == "failed"
    again = ping(step.state, EVERY, "fail", 20.0, exit_code=3)
    assert again.events == ()  # still failing: no second email
    assert again.state.last_exit == 3
    done = ping(again.state, EVERY, "success", 30.0)
    (recovered,) = done.events
    assert isinstance(recovered, Recovered)
    assert recovered.incident_id == failed.incident_id
    assert recovered.since == 10.0 and recovered.was == "failed"
    assert done.state.status == "up"


def test_a_failure_after_late_continues_the_incident() -> None:
    state = ping(new_state("worker", 0.0), EVERY, "success", 0.0).state
    late_step = check(state, EVERY, 100.0)
    (late,) = late_step.events
    step = ping(late_step.state, EVERY, "fail", 120.0, exit_code=1)
    (failed,) = step.events
    assert isinstance(failed, Failed)
    assert not failed.opens and failed.incident_id == late.incident_id
    (recovered,) = ping(step.state, EVERY, "success", 130.0).events
    assert isinstance(recovered, Recovered)
    assert recovered.incident_id == late.incident_id and recovered.since == 100.0


def test_a_job_that_never_pings_is_late_counting_from_when_sentinel_began_watching() -> None:
    state = new_state("worker", 1000.0)
    assert state.status == "new"
    assert check(state, EVERY, 1090.0).events == ()
    (late,) = check(state, EVERY, 1090.5).events
    assert isinstance(late, Late) and late.last_ping is None


def test_after_a_restart_not_late_before_one_full_period_plus_grace() -> None:
    # Last ping long ago, sentinel down meanwhile: the pings sent then are lost.
    state = ping(new_state("worker", 0.0), EVERY, "success", 0.0).state
    restarted = resume(state, 10_000.0)
    assert check(restarted, EVERY, 10_090.0).events == ()
    assert len(check(restarted, EVERY, 10_090.5).events) == 1
    # The rule is about the restart: a ping after it counts as usual.
    pinged = ping(restarted, EVERY, "success", 10_010.0).state
    assert deadline(pinged, EVERY) == 10_010.0 + 60 + 30


def test_a_run_started_after_a_restart_has_just_grace_to_end() -> None:
    state = resume(new_state("worker", 0.0), 10_000.0)
    running = ping(state, EVERY, "start", 10_001.0).state
    assert deadline(running, EVERY) == 10_031.0
    # A run that started before the restart may have ended while sentinel was down.
    before = ping(new_state("worker", 0.0), EVERY, "start", 9_000.0).state
    assert deadline(resume(before, 10_000.0), EVERY) == 10_090.0


def test_an_open_incident_survives_a_restart_without_a_second_alert() -> None:
    state = ping(new_state("worker", 0.0), EVERY, "success", 0.0).state
    late = check(state, EVERY, 100.0).state
    restored = resume(decode_dataclass(HeartbeatState, encode_dataclass(late)), 5000.0)
    assert restored.status == "late"
    assert check(restored, EVERY, 10_000.0).events == ()
    assert len(ping(restored, EVERY, "success", 10_001.0).events) == 1


# ---------------------------------------------------------------------------- hypothesis

CRONS = st.sampled_from(
    [
        "* * * * *",
        "*/5 * * * *",
        "0 3 * * *",
        "30 2 * * *",  # inside the spring-forward gap in Europe
        "15 1 * * 1-5",
        "0 0 1 * *",
        "0 12 * * 0",
        "0 */6 * * *",
        "*/10 * * * * *",
        "0 0 29 2 *",
    ]
)
ZONES = st.sampled_from(["UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe"])
TIMES = st.floats(min_value=1.5e9, max_value=2.2e9, allow_nan=False)


@st.composite
def configs(draw: st.DrawFn) -> HeartbeatConfig:
    grace = draw(st.floats(min_value=1.0, max_value=2 * HOUR))
    if draw(st.booleans()):
        return HeartbeatConfig(
            "job", every=draw(st.floats(min_value=1.0, max_value=2 * DAY)), grace=grace
        )
    return HeartbeatConfig("job", schedule=draw(CRONS), timezone=draw(ZONES), grace=grace)


@settings(max_examples=300, deadline=None)
@given(CRONS, ZONES, TIMES)
def test_next_fire_is_the_first_matching_time_strictly_after(
    cron: str, zone: str, after: float
) -> None:
    fire = next_fire(cron, zone, after)
    assert fire > after
    # Nothing fires in between: from any point before `fire`, the next fire time is `fire`.
    assert next_fire(cron, zone, (after + fire) / 2) == fire
    assert next_fire(cron, zone, fire - 0.5) == fire
    assert next_fire(cron, zone, fire) > fire


Op = tuple[str, float, int]  # (kind, seconds after the previous op, exit code)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["start", "success", "fail", "check", "restart"]),
        st.floats(min_value=0.0, max_value=3 * DAY),
        st.integers(min_value=1, max_value=255),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(configs(), TIMES, OPS)
def test_any_sequence_keeps_the_incident_rules(
    config: HeartbeatConfig, start: float, ops: list[Op]
) -> None:
    state = new_state("job", start)
    now = start
    open_incident: str | None = None
    lates_in_incident = 0
    for kind, gap, code in ops:
        now += gap
        before = state
        if kind == "restart":
            state = resume(decode_dataclass(HeartbeatState, encode_dataclass(state)), now)
            assert replace(state, resumed_at=before.resumed_at) == before  # nothing else lost
            continue
        if kind == "check":
            step = check(state, config, now)
            # Never late before the deadline, always late after it (unless already alerting).
            if not before.alert:
                assert bool(step.events) == (now > deadline(before, config))
            if step.events:
                resumed, started = before.resumed_at, before.started_at
                if started is not None:
                    assert now > started + config.grace
                if resumed is not None and (started is None or started < resumed):
                    assert now > config.next_expected(resumed) + config.grace  # restart rule
            # Looking again at the same time says nothing new.
            assert check(step.state, config, now).events == ()
        elif kind == "start":
            step = ping(state, config, "start", now)
            assert step.events == ()
            assert step.state.status in ("running", "late", "failed")
        else:
            outcome: PingKind = "success" if kind == "success" else "fail"
            step = ping(state, config, outcome, now, exit_code=None if kind == "success" else code)
        for event in step.events:
            if isinstance(event, Late):
                assert open_incident is None
                open_incident, lates_in_incident = event.incident_id, 1
            elif isinstance(event, Failed):
                if event.opens:
                    assert open_incident is None
                    open_incident = event.incident_id
                else:
                    assert event.incident_id == open_incident and lates_in_incident == 1
            else:
                assert isinstance(event, Recovered)
                assert event.incident_id == open_incident
                assert event.since <= event.at
                open_incident, lates_in_incident = None, 0
        state = step.state
        assert (state.alert != "") == (open_incident is not None)
        assert state.incident_id == open_incident
        assert (state.status in ("late", "failed")) == bool(state.alert)
        assert decode_dataclass(HeartbeatState, encode_dataclass(state)) == state


@settings(max_examples=200, deadline=None)
@given(configs(), TIMES, st.floats(min_value=0.0, max_value=30 * DAY))
def test_a_heartbeat_that_stops_pinging_is_always_noticed(
    config: HeartbeatConfig, last: float, silence: float
) -> None:
    state = ping(new_state("job", last - 1), config, "success", last).state
    due = deadline(state, config)
    if due == float("inf"):
        pytest.skip("the schedule never fires again")
    assert due >= last + config.grace
    assert check(state, config, due).events == ()
    (late,) = check(state, config, due + 0.001 + silence).events
    assert isinstance(late, Late) and late.last_ping == last
