"""`[[maintenance]]`, resolved to `sentinel.maintenance.MaintenanceWindow`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError, field_validator

from sentinel.config_units import ConfigError, check_name
from sentinel.maintenance import MAX_WINDOW, MaintenanceWindow
from sentinel.parse.units import Duration, StrictSection, pydantic_errors


class MaintenanceSection(StrictSection):
    """One `[[maintenance]]` table: a cron `schedule` with `duration`, or `start` and `end`."""

    name: str
    sites: list[str] | None = None  # default: every site
    schedule: str | None = None
    duration: Duration | None = None
    timezone: str = "UTC"
    # TOML date-times or strings, both with a UTC offset.
    start: dt.datetime | str | None = None
    end: dt.datetime | str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronSim(value, dt.datetime.now(dt.UTC))
            except CronSimError as exc:
                raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_WINDOW:
            raise ValueError("must be above 0s and at most 30d")
        return value


def _label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    return f'maintenance[{index}] "{name}"' if isinstance(name, str) else f"maintenance[{index}]"


def _timestamp(value: object, field: str) -> float:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(
                f"{field}: invalid time {value!r} (use 2026-12-24T22:00:00+01:00)"
            ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{field}: {value!s} has no UTC offset (add +01:00, Z, ...)")
    return moment.timestamp()


def _window(section: MaintenanceSection, site_names: Iterable[str]) -> MaintenanceWindow:
    sites = None
    if section.sites is not None:
        known = set(site_names)
        for site in section.sites:
            if site not in known:
                raise ValueError(f"sites: no site named {site!r} (nor a heartbeat)")
        sites = tuple(section.sites)
    once = section.start is not None or section.end is not None
    if (section.schedule is not None) == once:
        raise ValueError("set either schedule (cron) with duration, or start and end (once)")
    if once:
        if section.start is None or section.end is None:
            raise ValueError("a one-off window needs both start and end")
        if section.duration is not None:
            raise ValueError("duration: goes with schedule, not with start and end")
        start = _timestamp(section.start, "start")
        end = _timestamp(section.end, "end")
        if end <= start:
            raise ValueError("end: must be after start")
        return MaintenanceWindow(
            name=section.name, sites=sites, start=start, end=end, timezone=section.timezone
        )
    if section.duration is None:
        raise ValueError('duration: required with schedule (e.g. "1h")')
    return MaintenanceWindow(
        name=section.name,
        sites=sites,
        schedule=section.schedule,
        duration=section.duration,
        timezone=section.timezone,
    )


def parse_maintenance(
    raw: Sequence[Mapping[str, Any]], site_names: Iterable[str]
) -> tuple[MaintenanceWindow, ...]:
    """`[[maintenance]]` tables -> windows; ConfigError with one line per problem."""
    names = list(site_names)
    windows: list[MaintenanceWindow] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        label = _label(index, entry)
        try:
            section = MaintenanceSection.model_validate(entry)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, label))
            continue
        try:
            window = _window(section, names)
        except ValueError as exc:
            errors.append(f"{label}: {exc}")
            continue
        if window.name in seen:
            errors.append(f"{label}: name: duplicate maintenance name")
            continue
        seen.add(window.name)
        windows.append(window)
    if errors:
        raise ConfigError(errors)
    return tuple(windows)
