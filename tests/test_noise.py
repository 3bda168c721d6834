"""Noise control in the pure state machine: PENDING, flapping, and alerts held while muted
(maintenance or silence). Scenarios assert the exact emails a person would get (subjects and
threading, rendered by the real message builder); hypothesis checks the rules hold for any
sequence of results."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import EmailConfig, Policy
from sentinel.monitor import (
    Event,
    Flapping,
    Recovered,
    SiteState,
    Stable,
    Status,
    StillDown,
    WentDown,
    observe,
)
from sentinel.notify.message import build_message
from sentinel.probes.result import ProbeResult

EMAIL = EmailConfig(sender="sentinel@example.org", recipients=("me@example.org",))
STEP = 60.0


def result(ok: bool, at: float) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        reason="ok" if ok else "status",
        message="fine" if ok else "HTTP 500",
        started_at=at,
        total=0.05,
        status=200 if ok else 500,
    )


def run(
    seq: Sequence[bool],
    policy: Policy,
    *,
    muted: Sequence[bool] | None = None,
    step: float = STEP,
    state: SiteState | None = None,
    start: float = 1000.0,
) -> tuple[SiteState, list[Event]]:
    state = state or SiteState(site="blog")
    events: list[Event] = []
    for i, ok in enumerate(seq):
        now = start + i * step
        obs = observe(state, result(ok, now), policy, now, muted=bool(muted and muted[i]))
        state = obs.state
        events.extend(obs.events)
    return state, events


def subjects(events: Sequence[Event]) -> list[str]:
    return [
        str(build_message(e, email=EMAIL, target="https://blog.example/")["Subject"])
        for e in events
    ]


# ------------------------------------------------------------------ PENDING


def test_a_failure_short_of_the_threshold_is_pending_then_down() -> None:
    policy = Policy(failure_threshold=3)
    state, _ = run([True, False], policy)
    assert (state.status, state.state_name) == (Status.UP, "pending")
    state, _ = run([False], policy, state=state, start=5000.0)
    assert state.state_name == "pending"
    state, events = run([False], policy, state=state, start=6000.0)
    assert state.state_name == "down"
    assert subjects(events) == ["[sentinel] DOWN: blog — HTTP 500"]


def test_a_pending_site_that_passes_is_up_without_any_email() -> None:
    state, events = run([True, False, False, True], Policy(failure_threshold=3))
    assert state.state_name == "up"
    assert events == []


# ------------------------------------------------------------------ flapping

FLAPPY = Policy(failure_threshold=1, flap_changes=4, flap_window=3600.0, flap_quiet=1800.0)


def test_a_flapping_site_gets_one_flapping_email_then_one_stable() -> None:
    # Up, then down/up every minute for ten minutes, then up for 40 minutes.
    seq = [True] + [False, True] * 5 + [True] * 40
    state, events = run(seq, FLAPPY)
    assert subjects(events) == [
        "[sentinel] DOWN: blog — HTTP 500",
        "[sentinel] RECOVERED: blog after 1m",
        "[sentinel] DOWN: blog — HTTP 500",
        "[sentinel] FLAPPING: blog",
        "[sentinel] STABLE: blog (now UP)",
    ]
    flapping = next(e for e in events if isinstance(e, Flapping))
    stable = next(e for e in events if isinstance(e, Stable))
    assert stable.at - stable.stable_since >= FLAPPY.flap_quiet
    msg_flap = build_message(flapping, email=EMAIL, target="x")
    msg_stable = build_message(stable, email=EMAIL, target="x")
    assert msg_stable["In-Reply-To"] == msg_flap["Message-ID"]
    assert not state.flapping


def test_a_site_that_settles_down_gets_stable_now_down_and_a_threaded_recovery() -> None:
    seq = [True] + [False, True] * 3 + [False] * 40 + [True]
    state, events = run(seq, FLAPPY)
    assert subjects(events)[-2:] == [
        "[sentinel] STABLE: blog (now DOWN)",
        subjects(events)[-1],
    ]
    stable, recovered = events[-2], events[-1]
    assert isinstance(stable, Stable) and isinstance(recovered, Recovered)
    assert stable.status is Status.DOWN
    stable_msg = build_message(stable, email=EMAIL, target="x")
    recovered_msg = build_message(recovered, email=EMAIL, target="x")
    # The STABLE email is the incident's root: the RECOVERED replies to it.
    assert recovered_msg["In-Reply-To"] == stable_msg["Message-ID"]
    assert state.state_name == "up"


def test_flap_changes_zero_turns_flapping_off() -> None:
    seq = [True] + [False, True] * 10
    _, events = run(seq, Policy(failure_threshold=1, flap_changes=0))
    assert not any(isinstance(e, Flapping | Stable) for e in events)
    assert sum(isinstance(e, WentDown) for e in events) == 10


# ------------------------------------------------------------------ muted (maintenance, silence)


def test_a_site_down_during_maintenance_is_alerted_when_the_window_ends() -> None:
    policy = Policy(failure_threshold=2, flap_changes=0)
    seq = [True] + [False] * 10
    muted = [False] + [True] * 6 + [False] * 4
    state, events = run(seq, policy, muted=muted)
    assert subjects(events) == ["[sentinel] DOWN: blog — HTTP 500"]
    down = events[0]
    assert isinstance(down, WentDown)
    assert down.at == 1000.0 + 7 * STEP  # the first probe after the window
    assert down.since == 1000.0 + 1 * STEP  # the incident started in the window
    assert state.status is Status.DOWN


def test_a_site_that_recovers_within_the_window_sends_nothing() -> None:
    policy = Policy(failure_threshold=2, flap_changes=0)
    seq = [True, False, False, False, True, True]
    muted = [False, True, True, True, True, False]
    _, events = run(seq, policy, muted=muted)
    assert events == []


def test_a_site_already_alerted_still_gets_its_recovery_during_a_window() -> None:
    policy = Policy(failure_threshold=1, flap_changes=0, remind_every=60.0)
    seq = [True, False, False, False, True]
    muted = [False, False, True, True, True]
    _, events = run(seq, policy, muted=muted)
    kinds = [type(e) for e in events]
    assert kinds == [WentDown, Recovered]  # no STILL DOWN reminders while muted


# ------------------------------------------------------------------ properties

policies = st.builds(
    Policy,
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 3),
    remind_every=st.sampled_from([0.0, 60.0, 300.0]),
    flap_changes=st.sampled_from([0, 2, 3, 4, 6]),
    flap_window=st.sampled_from([600.0, 3600.0]),
    flap_quiet=st.sampled_from([120.0, 1800.0]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), max_size=120),
    policies,
)
def test_the_emails_of_any_history_tell_a_consistent_story(
    steps: list[tuple[bool, bool]], policy: Policy
) -> None:
    seq = [ok for ok, _ in steps]
    muted = [m for _, m in steps]
    state, events = run(seq, policy, muted=muted)
    alerted: str | None = None  # the incident a person was told about, not yet recovered
    flapping = False
    for event in events:
        if isinstance(event, Flapping):
            assert not flapping, "two FLAPPING without a STABLE"
            flapping = True
        elif isinstance(event, Stable):
            assert flapping, "a STABLE without a FLAPPING"
            flapping = False
            alerted = event.incident_id if event.status is Status.DOWN else None
        elif isinstance(event, WentDown):
            assert not flapping, "a DOWN while flapping"
            assert alerted is None, "two DOWNs for one incident"
            alerted = event.incident_id
        elif isinstance(event, StillDown):
            assert not flapping
            assert event.incident_id == alerted, "a reminder of an incident never alerted"
        elif isinstance(event, Recovered):
            assert event.incident_id == alerted, "a RECOVERED without its DOWN"
            alerted = None
    # At the end: a person who was told "down" is told "recovered" once the site is up again,
    # and a site that is DOWN, unmuted and not flapping has been alerted.
    if state.status is not Status.DOWN:
        assert alerted is None or flapping or state.flapping
    elif not state.flapping and not (muted and muted[-1]):
        assert alerted == state.incident_id
    assert len(state.state_changes) <= 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=200))
def test_flapping_state_is_bounded_and_expires(seq: list[bool]) -> None:
    policy = Policy(failure_threshold=1, flap_changes=4, flap_window=600.0, flap_quiet=120.0)
    state, _ = run([*seq, *([True] * 20)], policy)
    assert not state.flapping  # 20 minutes of quiet ends any flapping
    assert all(
        state.last_observed is not None and state.last_observed - t < 600.0
        for t in state.state_changes
    )


# ------------------------------------------------------------------ shown on the status page


def test_the_status_page_says_pending_flapping_maintenance_and_silenced() -> None:
    import tomllib

    from sentinel.config import parse_config
    from sentinel.daemon import Daemon
    from sentinel.silences import Silence

    config = parse_config(
        tomllib.loads(
            '[sentinel]\nlisten = ""\n'
            '[[sites]]\nname = "shop"\nurl = "http://127.0.0.1:9/"\n'
            '[[sites]]\nname = "blog"\nurl = "http://127.0.0.1:9/"\n'
            '[[maintenance]]\nname = "deploy"\nsites = ["blog"]\n'
            'start = "2000-01-01T00:00:00Z"\nend = "2999-01-01T00:00:00Z"\n'
        )
    )
    daemon = Daemon("s.toml", config, environ={})
    daemon.states["shop"] = SiteState(
        site="shop", status=Status.UP, consecutive_failures=1, flapping=True
    )
    daemon.states["blog"] = SiteState(site="blog", status=Status.UP)
    daemon.silences = [Silence(id=7, site="shop", until=4e9, reason="moving", created=0.0)]
    reply = daemon._status_pages().index()
    assert reply.chunks is not None
    page = b"".join(reply.chunks()).decode()
    assert "Pending: 1 failed, being confirmed" in page
    assert "Flapping: alerts held until it is stable" in page
    assert "In maintenance: deploy" in page
    assert "Silenced until 2096-" in page and "moving" in page
