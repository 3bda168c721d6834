"""The per-site alert state machine: pure, `now` passed in, no I/O.

observe(state, result, policy, now) -> Observation(state, events, downtime_added)

UNKNOWN --(success_threshold good)--> UP --(failure_threshold bad)--> DOWN
DOWN --(success_threshold good)--> UP;  UNKNOWN --(failure_threshold bad)--> DOWN

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
        return cls(
            at=result.started_at,
            ok=result.ok,
            status=result.status,
            total=result.total,
            reason=result.reason,
            message=result.message,
        )


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

    @property
    def last(self) -> ResultSummary | None:
        return self.recent[-1] if self.recent else None

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


Event = WentDown | StillDown | Recovered | CertExpiring


@dataclass(frozen=True, slots=True)
class Observation:
    state: SiteState
    events: tuple[Event, ...]
    downtime_added: float  # seconds of DOWN to add to the downtime counter


def incident_id_for(site: str, since: float) -> str:
    return f"{since:.3f}"


def observe(state: SiteState, result: ProbeResult, policy: Policy, now: float) -> Observation:
    """Fold one probe result into a site's state, returning the new state and its events."""
    events: list[Event] = []
    recent = (*state.recent, ResultSummary.of(result))[-RECENT_RESULTS:]
    at = result.started_at
    downtime = 0.0
    if state.status is Status.DOWN and state.last_observed is not None:
        downtime = max(0.0, now - state.last_observed)

    if result.ok:
        successes = state.consecutive_successes + 1
        recovering_since = state.recovering_since if state.consecutive_successes else at
        new = replace(
            state,
            consecutive_successes=successes,
            consecutive_failures=0,
            failing_since=None,
            recovering_since=recovering_since,
            recent=recent,
            last_observed=now,
        )
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
        new = replace(
            state,
            consecutive_failures=failures,
            consecutive_successes=0,
            recovering_since=None,
            failing_since=failing_since,
            recent=recent,
            last_observed=now,
        )
        if state.status is not Status.DOWN and failures >= policy.failure_threshold:
            incident = incident_id_for(state.site, failing_since)
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

    return Observation(state=new, events=tuple(events), downtime_added=downtime)
