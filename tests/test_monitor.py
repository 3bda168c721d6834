"""The per-site state machine: thresholds, incidents, reminders, downtime, certificate warnings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import Policy
from sentinel.monitor import (
    CertExpiring,
    Event,
    Recovered,
    ResultSummary,
    SiteState,
    Status,
    StillDown,
    WentDown,
    observe,
)
from sentinel.probes.result import ProbeResult

DAY = 86400.0


def result(ok: bool, at: float, *, expiry: float | None = None) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        reason="ok" if ok else "status",
        message="fine" if ok else "HTTP 500",
        started_at=at,
        total=0.05,
        status=200 if ok else 500,
        tls_expiry=expiry,
    )


def run(
    seq: list[bool], policy: Policy, *, step: float = 60.0, start: float = 1000.0
) -> tuple[SiteState, list[Event], float]:
    state = SiteState(site="blog")
    events: list[Event] = []
    downtime = 0.0
    for i, ok in enumerate(seq):
        now = start + i * step
        obs = observe(state, result(ok, now), policy, now)
        state = obs.state
        events.extend(obs.events)
        downtime += obs.downtime_added
    return state, events, downtime


def test_three_failures_make_one_down_event() -> None:
    state, events, _ = run([True, False, False, False, False], Policy(failure_threshold=3))
    assert [type(e) for e in events] == [WentDown]
    down = events[0]
    assert isinstance(down, WentDown)
    assert down.since == 1060.0  # the first failed probe, not the third
    assert state.status is Status.DOWN


def test_a_single_dropped_probe_sends_nothing() -> None:
    _, events, _ = run([True, False, True, False, True], Policy(failure_threshold=2))
    assert events == []


def test_recovery_reports_downtime_from_first_failure_to_first_success() -> None:
    _, events, _ = run([True, False, False, False, True, True], Policy(success_threshold=2))
    recovered = [e for e in events if isinstance(e, Recovered)]
    assert len(recovered) == 1
    assert recovered[0].since == 1060.0 and recovered[0].until == 1240.0
    assert recovered[0].downtime == 180.0


def test_reminders_every_remind_every_while_down() -> None:
    policy = Policy(failure_threshold=1, remind_every=120.0)
    _, events, _ = run([False] * 8, policy)  # down at t=1000, probes every 60 s until 1420
    reminders = [e for e in events if isinstance(e, StillDown)]
    assert [r.at for r in reminders] == [1120.0, 1240.0, 1360.0]
    assert [r.reminder for r in reminders] == [1, 2, 3]
    assert all(r.incident_id == events[0].incident_id for r in reminders)  # type: ignore[union-attr]


def test_remind_every_zero_never_reminds() -> None:
    _, events, _ = run([False] * 20, Policy(failure_threshold=1, remind_every=0))
    assert [type(e) for e in events] == [WentDown]


def test_unknown_to_up_sends_nothing() -> None:
    state, events, _ = run([True, True], Policy())
    assert events == [] and state.status is Status.UP


def test_restored_down_state_recovers_with_whole_downtime() -> None:
    # A state saved before a restart: down since t=100.
    state = SiteState(
        site="blog", status=Status.DOWN, since=100.0, incident_id="100.000", last_notified=100.0
    )
    obs = observe(state, result(True, 5000.0), Policy(), 5000.0)
    assert len(obs.events) == 1
    recovered = obs.events[0]
    assert isinstance(recovered, Recovered) and recovered.downtime == 4900.0


def test_certificate_warning_once_per_certificate() -> None:
    policy = Policy(tls_expiry_warning=14 * DAY)
    state = SiteState(site="blog")
    expiry = 10 * DAY
    kinds = []
    for now in (0.0, 60.0, 120.0):
        obs = observe(state, result(True, now, expiry=expiry), policy, now)
        state = obs.state
        kinds += [type(e) for e in obs.events]
    assert kinds == [CertExpiring]
    # Renewed far into the future, then close to expiry again: a new warning.
    obs = observe(state, result(True, 200.0, expiry=200 * DAY), policy, 200.0)
    state = obs.state
    obs = observe(state, result(True, 190 * DAY, expiry=200 * DAY), policy, 190 * DAY)
    assert [type(e) for e in obs.events] == [CertExpiring]
    assert obs.events[0].days_left == 10  # type: ignore[union-attr]


def test_recent_results_are_bounded() -> None:
    state, _, _ = run([True] * 100, Policy())
    assert len(state.recent) == 5


policies = st.builds(
    Policy,
    failure_threshold=st.integers(1, 5),
    success_threshold=st.integers(1, 5),
    remind_every=st.sampled_from([0.0, 60.0, 300.0]),
    flap_changes=st.just(0),  # flapping has its own properties (tests/test_noise.py)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=80), policies)
def test_incidents_are_well_formed(seq: list[bool], policy: Policy) -> None:
    state, events, downtime = run(seq, policy)
    open_incident: str | None = None
    for event in events:
        if isinstance(event, WentDown):
            assert open_incident is None, "two DOWNs for one incident"
            open_incident = event.incident_id
        elif isinstance(event, StillDown):
            assert event.incident_id == open_incident
        elif isinstance(event, Recovered):
            assert event.incident_id == open_incident, "a RECOVERED without a DOWN"
            assert event.downtime >= 0
            open_incident = None
    assert (open_incident is not None) == (state.status is Status.DOWN)
    assert downtime >= 0
    # A DOWN happens exactly when some run of failures reaches the threshold.
    downs = sum(isinstance(e, WentDown) for e in events)
    assert (downs > 0) == any(
        all(not ok for ok in seq[i : i + policy.failure_threshold])
        for i in range(len(seq) - policy.failure_threshold + 1)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), policies)
def test_downtime_counter_matches_closed_incidents(seq: list[bool], policy: Policy) -> None:
    # With probes every 60 s, the counter covers each closed incident's downtime (at least).
    _, events, downtime = run([*seq, *([True] * policy.success_threshold)], policy)
    closed = sum(e.downtime for e in events if isinstance(e, Recovered))
    assert downtime >= closed - 1e-6


def test_counted_carries_every_field_like_replace() -> None:
    """The hot path's positional copy must stay `dataclasses.replace`: a field added to SiteState
    and forgotten in `_counted` fails here."""
    import dataclasses

    from sentinel.monitor import _counted

    values: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(SiteState)):
        if f.name == "site":
            values[f.name] = "s"
        elif f.name == "status":
            values[f.name] = Status.DOWN
        elif f.name in {"recent", "state_changes"}:
            values[f.name] = (float(i),)
        elif f.name in {"flapping", "flap_alerted", "down_held"}:
            values[f.name] = True
        elif f.name in {"incident_id"}:
            values[f.name] = f"id{i}"
        elif f.name in {"consecutive_failures", "consecutive_successes", "reminders_sent"}:
            values[f.name] = i
        else:
            values[f.name] = float(i * 100)
    state = SiteState(**values)  # type: ignore[arg-type]
    recent = (ResultSummary(1.0, True, 200, 0.1, "ok", ""),)
    got = _counted(state, 7, 0, 5.0, None, 99.0, recent)
    want = dataclasses.replace(
        state,
        consecutive_failures=7,
        consecutive_successes=0,
        failing_since=5.0,
        recovering_since=None,
        last_observed=99.0,
        recent=recent,
    )
    assert got == want
