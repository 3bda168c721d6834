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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError, field_validator, model_validator

from sentinel.config_units import (
    ConfigError,
    Duration,
    StrictSection,
    format_duration,
    pydantic_errors,
)

DEFAULT_GRACE = 3600.0
MIN_PERIOD = 1.0  # seconds: `every` and `grace` below this would make every ping late
MAX_HEARTBEATS = 1000  # the per-name state, metrics and rate limits are bounded by this
MAX_TOKEN_BYTES = 1024
# A name is part of the ping URL and of metric labels: URL-safe characters only.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# A schedule that never fires again (cronsim stops iterating) is never late.
_FAR_FUTURE = float("inf")


class TokenError(Exception):
    """A heartbeat's token file cannot be used; the message is one line naming the heartbeat."""


class HeartbeatSection(StrictSection):
    name: str
    every: Duration | None = None
    schedule: str | None = None
    timezone: str | None = None
    grace: Duration = DEFAULT_GRACE
    token_file: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit (it is part of the ping URL)"
            )
        return value

    @field_validator("every", "grace")
    @classmethod
    def _check_period(cls, value: float | None) -> float | None:
        if value is not None and value < MIN_PERIOD:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if _CONTROL_RE.search(value):
            raise ValueError("invalid cron expression (control characters)")
        try:
            CronSim(value, datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
        except (CronSimError, ValueError) as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone {value!r} (use e.g. "Europe/Zurich")') from None
        return value

    @field_validator("token_file")
    @classmethod
    def _check_token_file(cls, value: str | None) -> str | None:
        if value is not None and (not value or _CONTROL_RE.search(value)):
            raise ValueError("must be a file path")
        return value

    @model_validator(mode="after")
    def _every_xor_schedule(self) -> HeartbeatSection:
        if (self.every is None) == (self.schedule is None):
            raise ValueError(
                'every: set exactly one of every (e.g. "1d") or schedule (e.g. "0 3 * * *")'
            )
        if self.timezone is not None and self.schedule is None:
            raise ValueError("timezone: only applies to a cron schedule")
        return self


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
        start = datetime.fromtimestamp(after, ZoneInfo(timezone))
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


def _label(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if isinstance(name, str) and name:
        quoted = _CONTROL_RE.sub("?", name).replace('"', '\\"')
        return f'heartbeats[{index}] "{quoted}"'
    return f"heartbeats[{index}]"


def parse_heartbeats(raw: Sequence[object] | None, *, listen: str) -> tuple[HeartbeatConfig, ...]:
    """Validate the `[[heartbeats]]` tables. Raises ConfigError listing every problem found."""
    errors: list[str] = []
    beats: list[HeartbeatConfig] = []
    seen: dict[str, int] = {}
    items = list(raw or ())
    if len(items) > MAX_HEARTBEATS:
        raise ConfigError([f"heartbeats: at most {MAX_HEARTBEATS} heartbeats"])
    loopback = is_loopback_listen(listen)
    for index, item in enumerate(items):
        label = _label(index, item)
        if not isinstance(item, Mapping):
            errors.append(f"{label}: must be a table ([[heartbeats]] entry)")
            continue
        try:
            section = HeartbeatSection.model_validate(dict(item))
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, label))
            continue
        if section.name in seen:
            errors.append(
                f"{label}: name: duplicate heartbeat name (also heartbeats[{seen[section.name]}])"
            )
            continue
        seen[section.name] = index
        if not listen:
            errors.append(f"{label}: heartbeats need the web server ([sentinel] listen is off)")
            continue
        if section.token_file is None and not loopback:
            errors.append(
                f"{label}: token_file: required when [sentinel] listen ({listen}) is not a "
                "loopback address"
            )
            continue
        beats.append(
            HeartbeatConfig(
                name=section.name,
                grace=section.grace,
                every=section.every,
                schedule=section.schedule,
                timezone=section.timezone or "UTC",
                token_file=section.token_file,
            )
        )
    if errors:
        raise ConfigError(errors)
    return tuple(beats)


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
