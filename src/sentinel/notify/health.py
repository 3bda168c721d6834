"""Whether alerts can still go out: each channel's latest delivery outcome, and the verdict the
dead man's switch reports (`[deadman]`, sentinel.deadman).

Pure (the caller passes `now`). The dispatcher reports every delivery attempt of every channel.
- A channel is *failing* when its latest attempt failed and either a failure since its last
  success was permanent (an SMTP 5xx, an HTTP 4xx: the outbox dead-letters such an item after a
  few retries) or the failures have gone on for FAILING_AFTER without a success (a transient
  hiccup retried a minute later is not an outage). Any delivery on the channel clears it: a new
  alert, a retry, `sentinel outbox retry`.
- A channel not tried yet counts as working: nothing says otherwise.
- Alerts are *undeliverable* when at least one channel is configured and every one is failing.
  With no channel at all (metrics only) nothing is undeliverable: that is a choice, not a fault.
A reload keeps the record of a channel whose settings did not change (a reload for a new site
must not hide a broken mail server) and starts a changed or new channel afresh; a restart starts
every channel afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sentinel.sanitize import one_line

__all__ = ["FAILING_AFTER", "ChannelHealth"]

FAILING_AFTER = 300.0  # seconds of transient failures without a success
_DETAIL_CHARS = 200


@dataclass(slots=True)
class _Streak:
    since: float  # the first failure after the last success
    permanent: bool  # a permanent failure since the last success
    detail: str  # the latest error


class ChannelHealth:
    def __init__(self) -> None:
        self._settings: dict[str, object] = {}
        self._streaks: dict[str, _Streak] = {}

    def configure(self, settings: Mapping[str, object]) -> None:
        """The configured channels, each with the (comparable) settings that define it."""
        for name in list(self._streaks):
            if name not in settings or settings[name] != self._settings.get(name):
                del self._streaks[name]
        self._settings = dict(settings)

    def sent(self, channel: str) -> None:
        self._streaks.pop(channel, None)

    def failed(self, channel: str, *, permanent: bool, detail: str, now: float) -> None:
        if channel not in self._settings:
            return
        streak = self._streaks.get(channel)
        text = one_line(detail, _DETAIL_CHARS)
        if streak is None:
            self._streaks[channel] = _Streak(since=now, permanent=permanent, detail=text)
        else:
            streak.permanent = streak.permanent or permanent
            streak.detail = text

    def failing(self, now: float) -> dict[str, str]:
        """The failing channels, each with its latest error."""
        return {
            name: streak.detail
            for name, streak in self._streaks.items()
            if streak.permanent or now - streak.since >= FAILING_AFTER
        }

    def undeliverable(self, now: float) -> str | None:
        """None while some channel may deliver; else one line saying why none can."""
        if not self._settings:
            return None
        failing = self.failing(now)
        if any(name not in failing for name in self._settings):
            return None
        parts = "; ".join(f"{name}: {failing[name]}" for name in self._settings)
        return f"alerts cannot be delivered, every channel is failing ({parts})"
