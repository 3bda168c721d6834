"""Heartbeats under maintenance windows and silences (`muted`), with a fake clock: the same rules
as sites. Examples first, then hypothesis over ping sequences with the mute switched on and off."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.heartbeats.state import (
    Event,
    Failed,
    HeartbeatState,
    Late,
    PingKind,
    Recovered,
    Transition,
    check,
    deadline,
    new_state,
    ping,
    resume,
)
from sentinel.store import decode_dataclass, encode_dataclass

HOUR = 3600.0
DAY = 86400.0
EVERY = HeartbeatConfig(name="worker", every=60.0, grace=30.0)


def pinged(at: float = 0.0) -> HeartbeatState:
    return ping(new_state("worker", at), EVERY, "success", at).state


# ---------------------------------------------------------------------------- examples


def test_late_while_muted_is_held_then_alerted_when_the_mute_ends() -> None:
    state = pinged()
    step = check(state, EVERY, 100.0, muted=True)
    assert step.events == ()
    assert step.state.status == "late" and step.state.held
    # Still muted: nothing, however often the timer looks.
    assert check(step.state, EVERY, 500.0, muted=True).events == ()
    released = check(step.state, EVERY, 900.0, muted=False)
    (late,) = released.events
    assert isinstance(late, Late)
    assert late.incident_id == step.state.incident_id and late.at == 900.0
    assert late.expected_at == 60.0 and late.last_ping == 0.0
    assert not released.state.held and released.state.incident_since == 100.0
    # Released once: the next look says nothing; the next success recovers in the same thread.
    assert check(released.state, EVERY, 901.0).events == ()
    (recovered,) = ping(released.state, EVERY, "success", 950.0).events
    assert isinstance(recovered, Recovered) and recovered.incident_id == late.incident_id


def test_a_held_incident_that_ends_while_muted_says_nothing() -> None:
    held = check(pinged(), EVERY, 100.0, muted=True).state
    step = ping(held, EVERY, "success", 200.0, muted=True)
    assert step.events == () and step.state.status == "up" and not step.state.held
    # Also when the mute ended before the success ping but the timer had not looked yet.
    assert ping(held, EVERY, "success", 200.0, muted=False).events == ()


def test_a_failure_while_muted_is_held_with_its_exit_code_and_output() -> None:
    step = ping(pinged(), EVERY, "fail", 50.0, exit_code=3, output="disk full", muted=True)
    assert step.events == () and step.state.status == "failed" and step.state.held
    (failed,) = check(step.state, EVERY, 400.0).events
    assert isinstance(failed, Failed)
    assert failed.opens and failed.exit_code == 3 and failed.output == "disk full"
    assert failed.incident_id == step.state.incident_id


def test_a_failure_after_a_held_late_opens_the_incident_for_the_reader() -> None:
    held = check(pinged(), EVERY, 100.0, muted=True).state
    (failed,) = ping(held, EVERY, "fail", 200.0, exit_code=2).events
    assert isinstance(failed, Failed) and failed.opens
    assert failed.incident_id == held.incident_id


def test_an_alerted_incident_recovers_even_while_muted() -> None:
    late = check(pinged(), EVERY, 100.0).state  # alerted before the window began
    (recovered,) = ping(late, EVERY, "success", 200.0, muted=True).events
    assert isinstance(recovered, Recovered)


def test_a_failure_following_an_alerted_late_is_dropped_while_muted() -> None:
    late = check(pinged(), EVERY, 100.0).state
    step = ping(late, EVERY, "fail", 200.0, exit_code=1, muted=True)
    assert step.events == () and step.state.status == "failed" and not step.state.held
    # The reader heard LATE; the mute ending adds nothing, the success recovers.
    assert check(step.state, EVERY, 300.0).events == ()
    assert len(ping(step.state, EVERY, "success", 400.0).events) == 1


def test_a_held_alert_survives_a_restart() -> None:
    held = check(pinged(), EVERY, 100.0, muted=True).state
    restored = resume(decode_dataclass(HeartbeatState, encode_dataclass(held)), 5000.0)
    assert restored.held
    (late,) = check(restored, EVERY, 5001.0).events
    assert isinstance(late, Late)
    # Before the incident opened (at 100, grace 30), not moved past it by the restart at 5000.
    assert late.expected_at <= 100.0 - EVERY.grace


def test_a_state_saved_before_muting_existed_decodes_as_not_held() -> None:
    text = encode_dataclass(pinged()).replace(',"held":false', "")
    assert '"held"' not in text
    assert decode_dataclass(HeartbeatState, text).held is False


# ---------------------------------------------------------------------------- hypothesis

Op = tuple[str, float, int, bool]  # (kind, seconds after the previous op, exit code, muted)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["start", "success", "fail", "check", "check", "restart"]),
        st.floats(min_value=0.0, max_value=2 * DAY),
        st.integers(min_value=1, max_value=255),
        st.booleans(),
    ),
    max_size=50,
)
CONFIGS = st.builds(
    lambda every, grace: HeartbeatConfig("job", every=every, grace=grace),
    st.floats(min_value=1.0, max_value=DAY),
    st.floats(min_value=1.0, max_value=2 * HOUR),
)
TIMES = st.floats(min_value=1.5e9, max_value=2.2e9, allow_nan=False)


def step_for(state: HeartbeatState, config: HeartbeatConfig, op: Op, now: float) -> Transition:
    kind, _, code, muted = op
    if kind == "check":
        return check(state, config, now, muted=muted)
    if kind == "start":
        return ping(state, config, "start", now, muted=muted)
    outcome: PingKind = "success" if kind == "success" else "fail"
    exit_code = None if kind == "success" else code
    return ping(state, config, outcome, now, exit_code=exit_code, muted=muted)


def opening(event: Event) -> bool:
    return isinstance(event, Late) or (isinstance(event, Failed) and event.opens)


@settings(max_examples=300, deadline=None)
@given(CONFIGS, TIMES, OPS)
@example(
    config=HeartbeatConfig("job", every=1.0, grace=1.0),
    start=1500000000.0,
    ops=[("check", 3.0, 1, True), ("start", 0.0, 1, False), ("check", 0.0, 1, False)],
)
def test_muting_holds_alerts_and_never_loses_or_orphans_one(
    config: HeartbeatConfig, start: float, ops: list[Op]
) -> None:
    state = new_state("job", start)
    now = start
    told: str | None = None  # the incident the reader was told about (its opening alert sent)
    for op in ops:
        kind, gap, _, muted = op
        now += gap
        if kind == "restart":
            state = resume(decode_dataclass(HeartbeatState, encode_dataclass(state)), now)
            continue
        before = state
        step = step_for(state, config, op, now)
        for event in step.events:
            if isinstance(event, Late):
                # Also after a restart. A held LATE released later says "expected by" at most
                # its opening time minus grace (state.py, _release), so it may be released the
                # very moment it opened with expected_at + grace == at: hence <=, not <.
                if before.held:
                    assert event.expected_at + config.grace <= event.at
                else:
                    assert event.expected_at + config.grace < event.at
            if muted:
                # Only good news about an incident the reader heard of goes out while muted.
                assert isinstance(event, Recovered) and event.incident_id == told
            if opening(event):
                assert told is None
                if before.alert:  # a held incident, told now: the same thread
                    assert event.incident_id == before.incident_id
                told = event.incident_id
            elif isinstance(event, Failed):
                assert event.incident_id == told  # a follow-up only of an alerted incident
            else:
                assert isinstance(event, Recovered) and event.incident_id == told
                told = None
        state = step.state
        # A held incident is one the reader has not heard of; an alerted one, one they have.
        assert state.held == (bool(state.alert) and told is None)
        if state.alert and not state.held:
            assert told == state.incident_id
        if not state.alert:
            assert told is None and not state.held
        # The moment the mute is off, the timer's next look sends a held alert.
        if state.held:
            (released,) = check(state, config, now).events
            assert opening(released) and released.incident_id == state.incident_id
        # Unmuted, a look past the deadline always opens an incident, alerted at once.
        if not state.alert and deadline(state, config) < float("inf"):
            late_step = check(state, config, deadline(state, config) + 1.0)
            assert len(late_step.events) == 1 and not late_step.state.held


@settings(max_examples=150, deadline=None)
@given(CONFIGS, TIMES, OPS)
def test_never_muted_is_the_unmuted_state_machine(
    config: HeartbeatConfig, start: float, ops: list[Op]
) -> None:
    """muted=False everywhere gives exactly the events of calls without the argument."""
    a = b = new_state("job", start)
    now = start
    for kind, gap, code, _ in ops:
        now += gap
        if kind == "restart":
            continue
        sa = step_for(a, config, (kind, gap, code, False), now)
        if kind == "check":
            sb = check(b, config, now)
        elif kind == "start":
            sb = ping(b, config, "start", now)
        else:
            outcome: PingKind = "success" if kind == "success" else "fail"
            sb = ping(b, config, outcome, now, exit_code=None if kind == "success" else code)
        assert sa == sb and not sa.state.held
        a, b = sa.state, sb.state
