"""The per-site alert state machine: pure, `now` passed in, no I/O.

observe(state, result, policy, now) -> Observation(state, events, downtime_added)

UNKNOWN --(success_threshold good)--> UP --(failure_threshold bad)--> DOWN
DOWN --(success_threshold good)--> UP;  UNKNOWN --(failure_threshold bad)--> DOWN

A failed probe short of the threshold makes the site PENDING (a view, `SiteState.state_name`: the
daemon then probes it at `retry_interval` to confirm or clear the failure fast).

Noise control, after the transitions (`_quiet`): a site that changes between UP and DOWN
`flap_changes` times within `flap_window` is FLAPPING (one Flapping event, then no DOWN / STILL
DOWN / RECOVERED until it has not changed for `flap_quiet`, then one Stable event). While `muted`
(a maintenance window or a silence) DOWN and STILL DOWN are held; a site still DOWN when the mute
ends is alerted then; a RECOVERED is sent only for an incident whose DOWN was sent.

An incident's downtime counts from the first failed probe of the streak that took the site DOWN to
the first good probe of the streak that brought it back. Only the fields a restart must not lose
(status, streak start, incident, last reminder, certificate warnings) are in `persistent_key`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from sentinel.config import Policy
from sentinel.probes.result import ProbeResult

RECENT_RESULTS = 5  # how many probe summaries a state keeps for emails (bounded on purpose)


class Status(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class ResultSummary:
    """The few facts of a probe that an email or the status API shows."""

    at: float
    ok: bool
    status: int
    total: float
    reason: str
    message: str

    @classmethod
    def of(cls, result: ProbeResult) -> ResultSummary:
        # Positional (every probe): at, ok, status, total, reason, message.
        r = result
        return cls(r.started_at, r.ok, r.status, r.total, r.reason, r.message)


@dataclass(frozen=True, slots=True)
class SiteState:
    site: str
    status: Status = Status.UNKNOWN
    since: float | None = None  # when the current status began (DOWN: first failure of streak)
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    failing_since: float | None = None  # first failure of the current failure streak
    recovering_since: float | None = None  # first success of the current success streak
    incident_id: str | None = None  # set while DOWN; threads the incident's emails
    incident_started: float | None = None
    last_notified: float | None = None  # time of the DOWN or the last STILL DOWN
    reminders_sent: int = 0
    cert_warned_expiry: float | None = None  # the NotAfter already warned about
    last_observed: float | None = None
    recent: tuple[ResultSummary, ...] = ()
    state_changes: tuple[float, ...] = ()  # UP<->DOWN changes within flap_window (bounded)
    last_change: float | None = None  # the latest UP<->DOWN change
    flapping: bool = False
    flapping_since: float | None = None
    flap_alerted: bool = False  # the FLAPPING alert went out (it was not muted)
    down_held: bool = False  # DOWN, but its alert is held (muted or flapping): not sent yet

    @property
    def last(self) -> ResultSummary | None:
        return self.recent[-1] if self.recent else None

    @property
    def state_name(self) -> str:
        """unknown, up, pending (failing, not yet DOWN) or down: what a person is shown."""
        if self.status is not Status.DOWN and self.consecutive_failures > 0:
            return "pending"
        return self.status.value

    def persistent_key(self) -> tuple[object, ...]:
        """Changes to these fields must be written to the store before their emails go out."""
        return (
            self.status,
            self.since,
            self.failing_since,
            self.incident_id,
            self.last_notified,
            self.reminders_sent,
            self.cert_warned_expiry,
            self.last_change,
            self.flapping,
            self.flap_alerted,
            self.down_held,
        )


@dataclass(frozen=True, slots=True)
class WentDown:
    site: str
    incident_id: str
    since: float  # first failed probe
    at: float  # when the threshold was reached
    reason: str
    message: str
    recent: tuple[ResultSummary, ...]


@dataclass(frozen=True, slots=True)
class StillDown:
    site: str
    incident_id: str
    since: float
    at: float
    reason: str
    message: str
    reminder: int  # 1 for the first reminder
    recent: tuple[ResultSummary, ...]

    @property
    def duration(self) -> float:
        return max(0.0, self.at - self.since)


@dataclass(frozen=True, slots=True)
class Recovered:
    site: str
    incident_id: str
    since: float
    until: float  # first good probe of the streak that closed the incident
    at: float
    recent: tuple[ResultSummary, ...]

    @property
    def downtime(self) -> float:
        return max(0.0, self.until - self.since)


@dataclass(frozen=True, slots=True)
class CertExpiring:
    site: str
    expires_at: float
    at: float
    subject: str | None = None  # which certificate of the served chain expires first

    @property
    def days_left(self) -> int:
        return max(0, int((self.expires_at - self.at) // 86400))


@dataclass(frozen=True, slots=True)
class Flapping:
    site: str
    since: float  # when it started flapping (the change that crossed flap_changes)
    at: float
    changes: int  # UP<->DOWN changes within the window
    window: float
    status: Status  # its status right now
    recent: tuple[ResultSummary, ...]


@dataclass(frozen=True, slots=True)
class Stable:
    site: str
    since: float  # when it started flapping (threads to the FLAPPING email)
    at: float
    status: Status  # UP or DOWN: how it settled
    incident_id: str | None  # the open incident when it settled DOWN
    stable_since: float  # its last change
    recent: tuple[ResultSummary, ...]


Event = WentDown | StillDown | Recovered | CertExpiring | Flapping | Stable
MAX_STATE_CHANGES = 100  # flap_changes is at most 100: older changes never matter


@dataclass(frozen=True, slots=True)
class Observation:
    state: SiteState
    events: tuple[Event, ...]
    downtime_added: float  # seconds of DOWN to add to the downtime counter


def incident_id_for(since: float) -> str:
    """An incident's id: when its first failure was seen (threads its emails)."""
    return f"{since:.3f}"


def _counted(  # noqa: PLR0917 (the hot path: positional on purpose)
    s: SiteState,
    failures: int,
    successes: int,
    failing_since: float | None,
    recovering_since: float | None,
    now: float,
    recent: tuple[ResultSummary, ...],
) -> SiteState:
    """`s` with its streak counters, `last_observed` and `recent` replaced: what every probe
    changes. The same as `dataclasses.replace` (tests/test_monitor.py checks every field is
    carried), built positionally because `replace` costs ~3x as much and runs once a probe."""
    return SiteState(
        s.site,
        s.status,
        s.since,
        failures,
        successes,
        failing_since,
        recovering_since,
        s.incident_id,
        s.incident_started,
        s.last_notified,
        s.reminders_sent,
        s.cert_warned_expiry,
        now,
        recent,
        s.state_changes,
        s.last_change,
        s.flapping,
        s.flapping_since,
        s.flap_alerted,
        s.down_held,
    )


def observe(
    state: SiteState, result: ProbeResult, policy: Policy, now: float, *, muted: bool = False
) -> Observation:
    """Fold one probe result into a site's state, returning the new state and its events.
    `muted`: a maintenance window or a silence covers the site now (DOWN alerts are held)."""
    events: list[Event] = []
    recent = (*state.recent, ResultSummary.of(result))[-RECENT_RESULTS:]
    at = result.started_at
    downtime = 0.0
    if state.status is Status.DOWN and state.last_observed is not None:
        downtime = max(0.0, now - state.last_observed)

    if result.ok:
        successes = state.consecutive_successes + 1
        recovering_since = state.recovering_since if state.consecutive_successes else at
        new = _counted(state, 0, successes, None, recovering_since, now, recent)
        if state.status is not Status.UP and successes >= policy.success_threshold:
            if state.status is Status.DOWN and state.incident_id is not None:
                since = state.since if state.since is not None else at
                until = recovering_since if recovering_since is not None else at
                events.append(
                    Recovered(
                        site=state.site,
                        incident_id=state.incident_id,
                        since=since,
                        until=max(until, since),
                        at=now,
                        recent=recent,
                    )
                )
            new = replace(
                new,
                status=Status.UP,
                since=recovering_since,
                incident_id=None,
                incident_started=None,
                last_notified=None,
                reminders_sent=0,
            )
    else:
        failures = state.consecutive_failures + 1
        failing_since = state.failing_since if state.failing_since is not None else at
        new = _counted(state, failures, 0, failing_since, None, now, recent)
        if state.status is not Status.DOWN and failures >= policy.failure_threshold:
            incident = incident_id_for(failing_since)
            events.append(
                WentDown(
                    site=state.site,
                    incident_id=incident,
                    since=failing_since,
                    at=now,
                    reason=result.reason,
                    message=result.message,
                    recent=recent,
                )
            )
            new = replace(
                new,
                status=Status.DOWN,
                since=failing_since,
                incident_id=incident,
                incident_started=failing_since,
                last_notified=now,
                reminders_sent=0,
            )
            # The streak before the threshold was downtime too.
            downtime += max(0.0, now - failing_since)

    if (
        new.status is Status.DOWN
        and state.status is Status.DOWN
        and new.incident_id is not None
        and policy.remind_every > 0
        and new.last_notified is not None
        and now - new.last_notified >= policy.remind_every
    ):
        reminder = new.reminders_sent + 1
        events.append(
            StillDown(
                site=state.site,
                incident_id=new.incident_id,
                since=new.since if new.since is not None else now,
                at=now,
                reason=result.reason,
                message=result.message,
                reminder=reminder,
                recent=recent,
            )
        )
        new = replace(new, last_notified=now, reminders_sent=reminder)

    if result.tls_expiry is not None:
        left = result.tls_expiry - now
        if left <= policy.tls_expiry_warning and new.cert_warned_expiry != result.tls_expiry:
            events.append(
                CertExpiring(
                    site=state.site,
                    expires_at=result.tls_expiry,
                    at=now,
                    subject=result.tls_expiry_subject,
                )
            )
            new = replace(new, cert_warned_expiry=result.tls_expiry)
        elif left > policy.tls_expiry_warning and new.cert_warned_expiry is not None:
            # A renewed certificate re-arms the warning for its own expiry.
            new = replace(new, cert_warned_expiry=None)

    new, quiet_events = _quiet(state, new, events, result, policy=policy, now=now, muted=muted)
    return Observation(state=new, events=quiet_events, downtime_added=downtime)


def _quiet(
    before: SiteState,
    after: SiteState,
    events: list[Event],
    result: ProbeResult,
    *,
    policy: Policy,
    now: float,
    muted: bool,
) -> tuple[SiteState, tuple[Event, ...]]:
    """Flapping and muting, applied to the events of one observation (see the module doc)."""
    changed = (
        before.status in (Status.UP, Status.DOWN)
        and after.status in (Status.UP, Status.DOWN)
        and before.status is not after.status
    )
    changes = after.state_changes
    if changed:
        changes = (*changes, now)
        after = replace(after, last_change=now)
    if changes:  # (none, the common case: nothing to drop, nothing to replace)
        changes = tuple(t for t in changes if now - t < policy.flap_window)[-MAX_STATE_CHANGES:]
        if changes != after.state_changes:  # (rare: a replace() costs as much as all the rest)
            after = replace(after, state_changes=changes)
    out: list[Event] = []

    if (
        not after.flapping
        and changed
        and policy.flap_changes > 0
        and len(changes) >= policy.flap_changes
    ):
        after = replace(after, flapping=True, flapping_since=now, flap_alerted=not muted)
        if not muted:
            out.append(
                Flapping(
                    site=after.site,
                    since=now,
                    at=now,
                    changes=len(changes),
                    window=policy.flap_window,
                    status=after.status,
                    recent=after.recent,
                )
            )
    elif (
        after.flapping
        and after.last_change is not None
        and now - after.last_change >= policy.flap_quiet
        # A person told FLAPPING hears STABLE (now DOWN) once the mute ends, not a bare DOWN.
        and not (muted and after.flap_alerted and after.status is Status.DOWN)
    ):
        settled_down = after.status is Status.DOWN
        # STABLE (now UP) is good news and goes out even when muted.
        if after.flap_alerted:
            out.append(
                Stable(
                    site=after.site,
                    since=after.flapping_since if after.flapping_since is not None else now,
                    at=now,
                    status=after.status,
                    incident_id=after.incident_id if settled_down else None,
                    stable_since=after.last_change,
                    recent=after.recent,
                )
            )
            # The STABLE email takes the DOWN email's place as the root of the incident.
            after = replace(after, down_held=False, last_notified=now)
        else:
            after = replace(after, down_held=settled_down)
        # Counting starts afresh: the changes that made it flap must not re-trigger it at once.
        after = replace(
            after, flapping=False, flapping_since=None, flap_alerted=False, state_changes=()
        )

    for event in events:
        if isinstance(event, WentDown):
            if after.flapping or muted:
                after = replace(after, down_held=True)
                continue
        elif isinstance(event, StillDown):
            if after.flapping or muted or after.down_held:
                continue
        elif isinstance(event, Recovered):
            # Held when its DOWN was never sent, or when the person was told it is flapping
            # (the STABLE email then says how it settled).
            held = before.down_held or (after.flapping and after.flap_alerted)
            after = replace(after, down_held=False)
            if held:
                continue
        out.append(event)

    if (
        after.down_held
        and not muted
        and not after.flapping
        and after.status is Status.DOWN
        and after.incident_id is not None
    ):
        # Held while muted (or flapping without an alert): the site is still DOWN, alert now.
        out.append(
            WentDown(
                site=after.site,
                incident_id=after.incident_id,
                since=after.since if after.since is not None else now,
                at=now,
                reason=result.reason,
                message=result.message,
                recent=after.recent,
            )
        )
        after = replace(after, down_held=False, last_notified=now, reminders_sent=0)
    return after, tuple(out)
