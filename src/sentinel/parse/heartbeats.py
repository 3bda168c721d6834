"""`[[heartbeats]]`, resolved to `sentinel.heartbeats.config.HeartbeatConfig`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError, field_validator, model_validator

from sentinel.config_units import ConfigError
from sentinel.heartbeats.config import (
    CONTROL_RE,
    DEFAULT_GRACE,
    MAX_HEARTBEATS,
    MIN_PERIOD,
    NAME_RE,
    HeartbeatConfig,
    is_loopback_listen,
)
from sentinel.parse.units import Duration, StrictSection, pydantic_errors


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
        if not NAME_RE.match(value):
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
        if CONTROL_RE.search(value):
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
        if value is not None and (not value or CONTROL_RE.search(value)):
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


def _label(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if isinstance(name, str) and name:
        quoted = CONTROL_RE.sub("?", name).replace('"', '\\"')
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
