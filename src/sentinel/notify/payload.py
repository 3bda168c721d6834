"""The alert every non-email channel is sent: a versioned JSON object built from a monitor or an
early-warning event. Pure: no clock, no I/O.

This is the documented webhook payload (docs/channels.md), and the stored form of an alert in the
outbox, from which a fallback channel renders its own message. Version 1 fields:

    version      1
    kind         "down" | "still_down" | "recovered" | "certificate" | an early-warning kind
                 ("creeping", "disk", "slower", "self", "steal", "oom", "resolved")
    state        "firing" | "resolved"
    site         the site's name (an early warning: what it is about)
    url          the site's URL or host:port (null for early warnings)
    summary      one line for people, like an email's subject without the "[sentinel]" prefix
    reason       the failure reason ("status", "timeout", ...) or "" when there is none
    message      the failure detail ("HTTP 500")
    since        the incident's start, RFC 3339 UTC
    at           when the event happened, RFC 3339 UTC
    duration     seconds down (or of the trend) at `at`
    incident_id  stable for the whole incident: the DOWN, its reminders and the RECOVERED share it
    reminder     the reminder's number for still_down, else 0
    status_page  the status page link ([sentinel] status_url), or null
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded, TrendStarted
from sentinel.early.messages import early_message_kind, early_subject
from sentinel.monitor import (
    CertExpiring,
    Event,
    Flapping,
    Recovered,
    Stable,
    StillDown,
    WentDown,
)
from sentinel.notify.wording import failure_words
from sentinel.sanitize import one_line

__all__ = [
    "PAYLOAD_VERSION",
    "Alert",
    "alert_from_early",
    "alert_from_event",
    "decode_alert",
    "encode_alert",
]

PAYLOAD_VERSION = 1
_MAX_TEXT = 500
_RESOLVED_KINDS = frozenset({"recovered", "resolved", "stable"})  # stable: flapping ended


def _clean(text: str, limit: int = _MAX_TEXT) -> str:
    return one_line(text, limit)


def iso(ts: float) -> str:
    """RFC 3339 in UTC with a Z, as Alertmanager and most webhook receivers parse it."""
    safe = min(max(ts if math.isfinite(ts) else 0.0, 0.0), 253402300799.0)
    return datetime.fromtimestamp(safe, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, channel-neutral. Times are Unix seconds here, RFC 3339 in the JSON."""

    kind: str
    site: str
    url: str | None
    summary: str
    reason: str
    message: str
    since: float
    at: float
    incident_id: str
    reminder: int = 0
    status_page: str | None = None

    @property
    def firing(self) -> bool:
        return self.kind not in _RESOLVED_KINDS

    @property
    def duration(self) -> float:
        return max(0.0, self.at - self.since) if math.isfinite(self.at - self.since) else 0.0

    def to_json(self) -> dict[str, Any]:
        """The webhook payload (version 1)."""
        return {
            "version": PAYLOAD_VERSION,
            "kind": self.kind,
            "state": "firing" if self.firing else "resolved",
            "site": self.site,
            "url": self.url,
            "summary": self.summary,
            "reason": self.reason,
            "message": self.message,
            "since": iso(self.since),
            "at": iso(self.at),
            "duration": round(self.duration, 3),
            "incident_id": self.incident_id,
            "reminder": self.reminder,
            "status_page": self.status_page,
        }


def _human(seconds: float) -> str:
    # Imported here: sentinel.notify.message pulls in the email machinery.
    from sentinel.notify.message import human_duration

    return human_duration(seconds)


def alert_from_event(event: Event, *, target: str, status_page: str | None = None) -> Alert:
    """A site's DOWN / STILL DOWN / RECOVERED / CERTIFICATE / FLAPPING / STABLE event as an
    Alert. Total over `Event`: every event the monitor gives has its alert."""
    site = _clean(event.site, 100)
    if isinstance(event, WentDown | StillDown):
        detail = _clean(event.message, 200)
        reason = _clean(event.reason, 40)
        # The same words as the email's subject (sentinel.notify.wording); the code stays in
        # `reason`.
        status = next((r.status for r in reversed(event.recent) if not r.ok), 0)
        what = failure_words(event.reason, event.message, status=status)
        if isinstance(event, WentDown):
            summary = f"DOWN: {site} — {what}"
        else:
            summary = f"STILL DOWN: {site} for {_human(event.at - event.since)} — {what}"
        return Alert(
            kind="down" if isinstance(event, WentDown) else "still_down",
            site=event.site,
            url=target,
            summary=summary,
            reason=reason,
            message=detail,
            since=event.since,
            at=event.at,
            incident_id=event.incident_id,
            reminder=event.reminder if isinstance(event, StillDown) else 0,
            status_page=status_page,
        )
    if isinstance(event, Recovered):
        return Alert(
            kind="recovered",
            site=event.site,
            url=target,
            summary=f"RECOVERED: {site} after {_human(event.downtime)}",
            reason="",
            message="",
            since=event.since,
            at=event.until,
            incident_id=event.incident_id,
            status_page=status_page,
        )
    if isinstance(event, Flapping | Stable):
        # The FLAPPING alert and the STABLE that ends it share an incident: the flapping's start.
        flap_id = f"flap-{int(event.since) if math.isfinite(event.since) else 0}"
        if isinstance(event, Flapping):
            summary = (
                f"FLAPPING: {site} — {event.changes} changes between UP and DOWN "
                f"within {_human(event.window)}"
            )
            kind, reason = "flapping", "flapping"
        else:
            summary = f"STABLE: {site} (now {event.status.value.upper()})"
            kind, reason = "stable", ""
        return Alert(
            kind=kind,
            site=event.site,
            url=target,
            summary=summary,
            reason=reason,
            message=f"now {event.status.value.upper()}",
            since=event.since,
            at=event.at,
            incident_id=flap_id,
            status_page=status_page,
        )
    assert isinstance(event, CertExpiring)
    return Alert(
        kind="certificate",
        site=event.site,
        url=target,
        summary=f"CERTIFICATE: {site} expires in {event.days_left} days",
        reason="certificate",
        message=f"expires {iso(event.expires_at)}",
        since=event.at,
        at=event.at,
        incident_id=f"cert-{int(event.expires_at) if math.isfinite(event.expires_at) else 0}",
        status_page=status_page,
    )


def alert_from_early(event: EarlyEvent, *, status_page: str | None = None) -> Alert:
    """An early warning (creeping memory, disk filling, slower site, OOM) as an Alert."""
    subject = early_subject(event).removeprefix("[sentinel]").strip()
    kind = early_message_kind(event)
    if isinstance(event, TrendEnded):
        name, incident, since = event.warning.subject, event.warning.trend_id, event.warning.since
    elif isinstance(event, TrendStarted):
        name, incident, since = event.subject, event.trend_id, event.since
    else:
        assert isinstance(event, OomEvent)
        name, incident, since = event.watch, event.event_id, event.at
    return Alert(
        kind=kind,
        site=name,
        url=None,
        summary=_clean(subject),
        # A RESOLVED names the warning's kind, so it matches the warning it ends.
        reason=event.warning.kind if isinstance(event, TrendEnded) else kind,
        message=_clean(event.reason) if isinstance(event, TrendEnded) else "",
        since=since,
        at=event.at,
        incident_id=incident,
        status_page=status_page,
    )


def encode_alert(alert: Alert) -> str:
    """The stored form: the version-1 payload plus the raw times (for exact round trips)."""
    data = alert.to_json()
    data["since_ts"] = alert.since
    data["at_ts"] = alert.at
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode_alert(text: str) -> Alert:
    """`encode_alert`'s text back to an Alert; raises ValueError for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"stored alert is not JSON: {exc}") from None
    if not isinstance(data, Mapping) or data.get("version") != PAYLOAD_VERSION:
        raise ValueError("stored alert has an unknown format")
    try:
        return Alert(
            kind=str(data["kind"]),
            site=str(data["site"]),
            url=None if data.get("url") is None else str(data["url"]),
            summary=str(data["summary"]),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            since=float(data["since_ts"]),
            at=float(data["at_ts"]),
            incident_id=str(data["incident_id"]),
            reminder=int(data.get("reminder", 0)),
            status_page=None if data.get("status_page") is None else str(data["status_page"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"stored alert is incomplete: {exc}") from None
