"""The heartbeat state machine: pure, `now` passed in, no I/O.

    ping(state, config, kind, now, ...) -> Transition(state, events)   a ping arrived
    check(state, config, now)           -> Transition(state, events)   the timer looks

Displayed status: NEW (never pinged) -> UP (the last run ended well) or RUNNING (a start without
an end yet); LATE (no ping by `deadline`) and FAILED (a fail / non-zero exit ping) are incidents:
the ping that opens one causes a LATE or FAILED alert, the next success a RECOVERED threaded to it.

When is a heartbeat late? A ping is expected `next_expected(last end ping)` (`every` later, or at
the cron schedule's next fire time), and late `grace` after that; a start ping instead gives the
run `grace` to end. Pings sent while sentinel was down are lost, so after a (re)start at R the
deadline is never before `next_expected(R) + grace` (`resumed_at`). A heartbeat never pinged
counts from when sentinel began watching it, so a job that never runs is noticed too. A run that
started after the restart is not covered by that rule: its end ping cannot have been lost.

Muting mirrors sites (`sentinel.monitor`): while a maintenance window or a silence covers the
heartbeat (`muted=True`), an incident still opens (status LATE/FAILED, shown everywhere) but its
alert is held (`held`). A success ping closes a held incident without a RECOVERED (nobody was
told it broke); one still open when the mute ends is alerted by the next `check` that is not
muted, as a LATE or FAILED sent then. A RECOVERED of an incident that was alerted goes out even
while muted (good news is never held), as for sites.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sentinel.heartbeats.config import HeartbeatConfig

MAX_OUTPUT = 10 * 1024  # characters of a job's output kept for the alert

Status = Literal["new", "up", "running", "late", "failed"]
PingKind = Literal["start", "success", "fail"]
STATUSES: tuple[Status, ...] = ("new", "up", "running", "late", "failed")


@dataclass(frozen=True, slots=True)
class HeartbeatState:
    """What sentinel knows about one heartbeat; every field but `resumed_at` is persisted."""

    name: str
    watching_since: float  # when sentinel first watched this heartbeat (its config appeared)
    resumed_at: float | None = None  # sentinel's last (re)start: pings before it may be lost
    last_ping: float | None = None  # any ping: start, success or failure
    last_ping_kind: Literal["start", "success", "fail"] | None = None
    last_end: float | None = None  # the last success or failure ping
    started_at: float | None = None  # an open run: a start ping without an end yet
    last_duration: float | None = None  # start to end of the last run that sent both
    last_exit: int | None = None  # the last end ping's exit code (None: `/fail` gave none)
    last_output: str = ""  # the last end ping's body (at most MAX_OUTPUT characters)
    alert: Literal["", "late", "failed"] = ""  # the open incident, if any
    incident_id: str | None = None  # threads the incident's emails
    incident_since: float | None = None
    held: bool = False  # the open incident's alert is held (it opened while muted): not sent yet

    @property
    def status(self) -> Status:
        if self.alert:
            return self.alert
        if self.started_at is not None:
            return "running"
        return "up" if self.last_end is not None else "new"


@dataclass(frozen=True, slots=True)
class Late:
    """No ping by the deadline (or a run that did not end within grace): opens an incident."""

    name: str
    at: float
    incident_id: str
    last_ping: float | None  # None: never pinged
    expected_at: float  # when the ping (or the end of the run) was due, before grace
    started_at: float | None  # set when a run started and did not end


@dataclass(frozen=True, slots=True)
class Failed:
    """The job said it failed. `opens` is False when it follows a LATE of the same incident."""

    name: str
    at: float
    incident_id: str
    exit_code: int | None
    output: str
    duration: float | None
    opens: bool


@dataclass(frozen=True, slots=True)
class Recovered:
    """A success ping ended the incident."""

    name: str
    at: float
    incident_id: str
    since: float
    was: Literal["late", "failed"]


Event = Late | Failed | Recovered


@dataclass(frozen=True, slots=True)
class Transition:
    state: HeartbeatState
    events: tuple[Event, ...] = ()


def new_state(name: str, now: float) -> HeartbeatState:
    """A heartbeat sentinel starts watching now."""
    return HeartbeatState(name=name, watching_since=now, resumed_at=now)


def resume(state: HeartbeatState, now: float) -> HeartbeatState:
    """The state restored from the store when sentinel starts again at `now`."""
    return replace(state, resumed_at=now)


def incident_id_for(now: float) -> str:
    """A new incident's id: the opening time in milliseconds, hex (safe in a Message-ID)."""
    return f"{max(0, int(now * 1000)):x}"


def expected_at(state: HeartbeatState, config: HeartbeatConfig) -> float:
    """When the next ping (or the end of the open run) is due; late `grace` after this."""
    resumed = state.resumed_at
    if state.started_at is not None:
        due = state.started_at
        # A run that started after the restart cannot have lost its end ping.
        if resumed is not None and state.started_at >= resumed:
            return due
    else:
        base = state.last_end if state.last_end is not None else state.watching_since
        due = config.next_expected(base)
    if resumed is not None:
        due = max(due, config.next_expected(resumed))
    return due


def deadline(state: HeartbeatState, config: HeartbeatConfig) -> float:
    """The heartbeat is late after this time (+inf: a schedule that never fires again)."""
    return expected_at(state, config) + config.grace


def check(
    state: HeartbeatState, config: HeartbeatConfig, now: float, *, muted: bool = False
) -> Transition:
    """The timer's look: opens a LATE incident once the deadline has passed (its alert held
    while `muted`), and sends a held incident's alert once no longer muted."""
    if state.alert:
        if state.held and not muted:
            return _release(state, config, now)
        return Transition(state)
    if now <= deadline(state, config):
        return Transition(state)
    incident = incident_id_for(now)
    event = Late(
        name=state.name,
        at=now,
        incident_id=incident,
        last_ping=state.last_ping,
        expected_at=expected_at(state, config),
        started_at=state.started_at,
    )
    new = replace(state, alert="late", incident_id=incident, incident_since=now, held=muted)
    return Transition(new, () if muted else (event,))


def _release(state: HeartbeatState, config: HeartbeatConfig, now: float) -> Transition:
    """The mute ended with the incident still open: its alert goes out now, as the opening one."""
    incident = state.incident_id if state.incident_id is not None else incident_id_for(now)
    since = state.incident_since if state.incident_since is not None else now
    event: Event
    if state.alert == "late":
        # The incident opened after its deadline (expected + grace); a restart since then must
        # not move "expected by" past it (the restart rule only delays opening one).
        expected = min(expected_at(state, config), since - config.grace)
        event = Late(
            name=state.name,
            at=now,
            incident_id=incident,
            last_ping=state.last_ping,
            expected_at=expected,
            started_at=state.started_at,
        )
    else:
        event = Failed(
            name=state.name,
            at=now,
            incident_id=incident,
            exit_code=state.last_exit,
            output=state.last_output,
            duration=state.last_duration,
            opens=True,
        )
    new = replace(state, held=False, incident_id=incident, incident_since=since)
    return Transition(new, (event,))


def ping(
    state: HeartbeatState,
    config: HeartbeatConfig,
    kind: PingKind,
    now: float,
    *,
    exit_code: int | None = None,
    output: str = "",
    muted: bool = False,
) -> Transition:
    """A ping arrived: `start`, `success` (exit 0) or `fail` (exit_code 1-255, or None for
    `/fail`). `output` is the job's output (a POST body); only end pings keep it. `muted`: a
    maintenance window or a silence covers the heartbeat now (a new FAILED alert is held)."""
    del config  # the schedule matters only to `check`; kept for a symmetrical API
    if kind == "start":
        return Transition(replace(state, last_ping=now, last_ping_kind="start", started_at=now))
    duration = None if state.started_at is None else max(0.0, now - state.started_at)
    ended = replace(
        state,
        last_ping=now,
        last_ping_kind=kind,
        last_end=now,
        started_at=None,
        last_duration=duration,
        last_exit=0 if kind == "success" else exit_code,
        last_output=output[-MAX_OUTPUT:],
    )
    if kind == "success":
        closed = replace(ended, alert="", incident_id=None, incident_since=None, held=False)
        if not state.alert or state.incident_id is None or state.held:
            return Transition(closed)  # nothing open, or nobody was told: nothing to recover
        recovered = Recovered(
            name=state.name,
            at=now,
            incident_id=state.incident_id,
            since=state.incident_since if state.incident_since is not None else now,
            was=state.alert,
        )
        return Transition(closed, (recovered,))
    if state.alert == "failed":
        return Transition(ended)  # still failing: the open incident already said so (or will)
    fresh = not state.alert or state.incident_id is None
    # A LATE that was held was never sent: the FAILED opens the incident for the reader (the
    # same incident: its id and start stay).
    opens = fresh or state.held
    incident = incident_id_for(now) if fresh or state.incident_id is None else state.incident_id
    since = now if fresh or state.incident_since is None else state.incident_since
    failed = Failed(
        name=state.name,
        at=now,
        incident_id=incident,
        exit_code=exit_code,
        output=output[-MAX_OUTPUT:],
        duration=duration,
        opens=opens,
    )
    # Muted: a new incident is held (sent when the mute ends); the follow-up of a LATE already
    # sent is dropped, as a site's STILL DOWN is while muted.
    held = muted and opens
    new = replace(ended, alert="failed", incident_id=incident, incident_since=since, held=held)
    return Transition(new, () if muted else (failed,))
