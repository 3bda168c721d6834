"""The channel interface: what the outbox hands a channel, and what a channel must do with it.

A channel turns one stored outbox item into one delivery (an email, a POST, ...) and raises
`SendError` (transient or permanent) when that fails. A new channel type is one new module with
a class of this shape, plus one branch in `build_channels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sentinel.notify.payload import Alert

__all__ = ["Channel", "Delivery", "SetupError"]


class SetupError(ValueError):
    """A channel cannot be set up (an unreadable secret or CA file): one line naming the file."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox item as a channel sees it. `message` is what was stored for this channel (an
    email's bytes; the alert's JSON for the others); `alert` the decoded alert when there is one
    (items from before channels existed have none)."""

    channel: str
    kind: str
    site: str
    created_at: float
    message: bytes
    alert: Alert | None
    now: float  # when this attempt started (a late delivery says so)


class Channel(Protocol):
    name: str

    def render(self, alert: Alert) -> bytes:
        """What to store in the outbox for `alert` on this channel."""
        ...

    async def send(self, delivery: Delivery) -> None:
        """Deliver, or raise SendError."""
        ...

    async def start(self) -> None:
        """Open clients, start background work (an Alertmanager's resend loop)."""
        ...

    async def close(self) -> None: ...
