"""Maintenance windows: `[[maintenance]]` in, "is this site in a window at `now`?" out. Pure.

A window is either a one-off (`start`, `end`) or recurring (`schedule`, a cron expression in
`timezone`, each occurrence lasting `duration`). Cron is evaluated by cronsim (the evaluator
healthchecks.io maintains for exactly this), so DST gaps and repeats, `L`, `#` and ranges behave
as cron users expect. During a window probes still run and are recorded; only alerts are held
(see `sentinel.monitor`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError, field_validator

from sentinel.config_units import (
    ConfigError,
    Duration,
    StrictSection,
    check_name,
    pydantic_errors,
)

MAX_WINDOW = 30 * 86400.0  # a longer "maintenance" is a removed site, not a window


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    name: str
    sites: tuple[str, ...] | None  # None = every site and heartbeat (names may be either)
    schedule: str | None = None  # cron, with duration and timezone
    duration: float = 0.0
    timezone: str = "UTC"
    start: float | None = None  # a one-off: epoch seconds
    end: float | None = None

    def covers(self, site: str) -> bool:
        return self.sites is None or site in self.sites


@dataclass(frozen=True, slots=True)
class WindowState:
    """Where `now` falls for one window: active or not, and until when that holds."""

    active: bool
    start: float | None  # of the active window, or of the next one (None: no next one)
    end: float | None
    next_change: float | None  # when `active` next flips (None: never)


def window_state(window: MaintenanceWindow, now: float) -> WindowState:
    """The window's state at `now` (epoch seconds)."""
    if window.start is not None and window.end is not None:
        if now < window.start:
            return WindowState(False, window.start, window.end, window.start)
        if now < window.end:
            return WindowState(True, window.start, window.end, window.end)
        return WindowState(False, None, None, None)
    assert window.schedule is not None
    zone = ZoneInfo(window.timezone)
    # The occurrence that may still be running started after now - duration.
    since = dt.datetime.fromtimestamp(now - window.duration, zone)
    start = next(iter(CronSim(window.schedule, since))).timestamp()
    if start <= now:
        return WindowState(True, start, start + window.duration, start + window.duration)
    return WindowState(False, start, start + window.duration, start)


class MaintenanceClock:
    """Caches each window's state until it next changes, so asking per probe costs a lookup,
    not a cron evaluation. Bounded by the configured windows."""

    def __init__(self, windows: Sequence[MaintenanceWindow]) -> None:
        self.windows = tuple(windows)
        self._states: dict[int, WindowState] = {}

    def _state(self, index: int, now: float) -> WindowState:
        cached = self._states.get(index)
        if cached is None or (cached.next_change is not None and now >= cached.next_change):
            cached = window_state(self.windows[index], now)
            self._states[index] = cached
        return cached

    def active_for(self, site: str, now: float) -> list[MaintenanceWindow]:
        return [
            w for i, w in enumerate(self.windows) if w.covers(site) and self._state(i, now).active
        ]

    def states(self, now: float) -> list[tuple[MaintenanceWindow, WindowState]]:
        return [(w, self._state(i, now)) for i, w in enumerate(self.windows)]


# ---------------------------------------------------------------- config


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
