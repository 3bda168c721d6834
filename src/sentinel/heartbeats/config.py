"""The heartbeat config: `[[heartbeats]]` tables validated into frozen `HeartbeatConfig`s.

Pure apart from `read_tokens` (which reads the token files). Errors are one line each and name
the entry and the field: `heartbeats[0] "backup": grace: must be at least 1s`. A heartbeat's
schedule is either `every` (a fixed period from the last ping) or a cron `schedule` evaluated in
`timezone` by cronsim.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cronsim import CronSim, CronSimError

from sentinel.config_units import (
    format_duration,
)
from sentinel.zones import zone

DEFAULT_GRACE = 3600.0
MIN_PERIOD = 1.0  # seconds: `every` and `grace` below this would make every ping late
MAX_HEARTBEATS = 1000  # the per-name state, metrics and rate limits are bounded by this
MAX_TOKEN_BYTES = 1024
# A name is part of the ping URL and of metric labels: URL-safe characters only.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# A schedule that never fires again (cronsim stops iterating) is never late.
_FAR_FUTURE = float("inf")


class TokenError(Exception):
    """A heartbeat's token file cannot be used; the message is one line naming the heartbeat."""


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """One heartbeat: when pings are expected and how late they may be."""

    name: str
    grace: float = DEFAULT_GRACE
    every: float | None = None  # a fixed period after the last ping ...
    schedule: str | None = None  # ... or a cron expression (5 fields, or 6 with seconds first)
    timezone: str = "UTC"  # the cron schedule's time zone
    token_file: str | None = None

    def next_expected(self, after: float) -> float:
        """When the next ping is due, given that the last one (or the start of watching) was at
        `after`: `after + every`, or the schedule's first fire time strictly after `after`."""
        if self.every is not None:
            return after + self.every
        return next_fire(self.schedule or "", self.timezone, after)

    def describe(self) -> str:
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        return f"schedule {self.schedule!r} ({self.timezone})"


def next_fire(schedule: str, timezone: str, after: float) -> float:
    """The first time the cron `schedule` fires strictly after `after` (seconds since the
    epoch), in `timezone`; +inf if it never fires again."""
    try:
        start = datetime.fromtimestamp(after, zone(timezone))
        # Strictly after: cronsim drops the microseconds of `start`, then steps forward.
        fire = next(CronSim(schedule, start))
    except (CronSimError, StopIteration, ValueError, OverflowError, OSError):
        return _FAR_FUTURE
    return fire.timestamp()


def is_loopback_listen(listen: str) -> bool:
    """True for 127.x.y.z:port, [::1]:port and localhost:port: only this machine can connect."""
    from sentinel.config import split_host_port  # sentinel.config imports this module

    try:
        host, _ = split_host_port(listen, what="listen")
    except ValueError:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(beat: HeartbeatConfig) -> bytes | None:
    """The heartbeat's token (the file's content without surrounding whitespace), None when it
    has no token_file. Raises TokenError with one line naming the heartbeat."""
    if beat.token_file is None:
        return None
    where = f'heartbeats "{beat.name}": token_file: {beat.token_file}'
    try:
        with Path(beat.token_file).open("rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise TokenError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_TOKEN_BYTES:
        raise TokenError(f"{where}: longer than {MAX_TOKEN_BYTES} bytes")
    token = data.strip()
    if not token:
        raise TokenError(f"{where}: empty")
    if any(b < 0x21 or b > 0x7E for b in token):
        raise TokenError(f"{where}: must be printable ASCII without spaces (it goes in a URL)")
    return token


def read_tokens(beats: Sequence[HeartbeatConfig]) -> dict[str, bytes | None]:
    """Every heartbeat's token; raises TokenError for the first unusable file."""
    return {beat.name: read_token(beat) for beat in beats}


def token_matches(expected: bytes | None, given: bytes | None) -> bool:
    """Constant-time comparison; a heartbeat without a token accepts any (or no) token."""
    if expected is None:
        return True
    return hmac.compare_digest(expected, given or b"")
