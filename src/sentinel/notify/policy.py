"""Delivery decisions, pure (no clock, no I/O; `now` is passed in): which channels an alert goes
to, when an undelivered item goes to the fallback channel, which queued reminders are stale, how a
permanent failure is retried, and what a late email says about its lateness."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sentinel.notify.message import human_duration

__all__ = [
    "LATE_AFTER",
    "PERMANENT_DELAYS",
    "late_note",
    "permanent_delay",
    "recipients",
    "should_escalate",
    "superseded",
]

# A permanent failure (an SMTP 5xx, an HTTP 4xx) is often a misconfiguration fixed within minutes:
# three more tries, 1, 5 and 15 minutes apart, then the item becomes a dead letter.
PERMANENT_DELAYS: tuple[float, ...] = (60.0, 300.0, 900.0)
# An alert delivered this long after it was raised says so.
LATE_AFTER = 120.0
# Kinds that an Alertmanager channel is sent: its own resend loop keeps an incident firing, so
# STILL DOWN reminders would only repeat it.
_ALERTMANAGER_SKIPS = frozenset({"still_down"})


def recipients(
    kind: str,
    notify: Sequence[str] | None,
    channels: Sequence[tuple[str, str]],
) -> tuple[str, ...]:
    """The channels (names) an alert of `kind` goes to: the site's `notify` list (None = every
    channel), in the configured order, minus the channels that do not take this kind.
    `channels` is (name, type) of every configured channel."""
    wanted = None if notify is None else set(notify)
    return tuple(
        name
        for name, type_ in channels
        if (wanted is None or name in wanted)
        and not (type_ == "alertmanager" and kind in _ALERTMANAGER_SKIPS)
    )


def should_escalate(
    *,
    channel: str,
    fallback: str | None,
    escalated: bool,
    permanent: bool,
    created_at: float,
    escalate_after: float | None,
    now: float,
) -> bool:
    """Whether an undelivered item goes to the fallback channel now: once, never to itself, at
    once after a permanent failure, else once it has waited `escalate_after`."""
    if fallback is None or fallback == channel or escalated:
        return False
    if permanent:
        return True
    return escalate_after is not None and now - created_at >= escalate_after


def permanent_delay(permanent_failures: int, delays: Sequence[float]) -> float | None:
    """The wait before the next try after `permanent_failures` (>= 1) permanent failures, or None
    when the item should become a dead letter."""
    if permanent_failures < 1 or permanent_failures > len(delays):
        return None
    return delays[permanent_failures - 1]


def superseded(kind: str, later_kinds: Iterable[str]) -> bool:
    """A queued STILL DOWN is stale once a later reminder or the RECOVERED of the same incident is
    queued behind it on the same channel: after a long outage only the latest one is sent."""
    return kind == "still_down" and any(k in ("still_down", "recovered") for k in later_kinds)


def late_note(created_at: float, now: float) -> str | None:
    """One sentence for an alert delivered `LATE_AFTER` or more after it was raised, else None."""
    delay = now - created_at
    if not delay >= LATE_AFTER:  # also False for NaN
        return None
    return (
        f"Delivered late: this alert was raised {human_duration(delay)} before it could be "
        "delivered."
    )
