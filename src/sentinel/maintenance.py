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

from sentinel.config import ConfigError, check_name, parse_duration

MAX_WINDOW = 30 * 86400.0  # a longer "maintenance" is a removed site, not a window


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    name: str
    sites: tuple[str, ...] | None  # None = every site
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


def _label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    return f'maintenance[{index}] "{name}"' if isinstance(name, str) else f"maintenance[{index}]"


def _timestamp(value: object, field: str) -> float:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{field}: invalid time {value!r} (use 2026-12-24T22:00:00+01:00)"
            ) from None
    else:
        raise ValueError(f"{field}: must be a date-time such as 2026-12-24T22:00:00+01:00")
    if moment.tzinfo is None:
        raise ValueError(f"{field}: {value!s} has no UTC offset (add +01:00, Z, ...)")
    return moment.timestamp()


_KEYS = frozenset({"name", "sites", "schedule", "duration", "timezone", "start", "end"})


def _one(raw: Mapping[str, Any], site_names: Iterable[str]) -> MaintenanceWindow:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key")
    name = raw.get("name")
    if not isinstance(name, str):
        raise ValueError("name: required (a string)")
    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None
    sites = raw.get("sites")
    if sites is not None:
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise ValueError("sites: must be a list of site names")
        known = set(site_names)
        for site in sites:
            if site not in known:
                raise ValueError(f"sites: no site named {site!r}")
        sites = tuple(sites)
    timezone = raw.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise ValueError("timezone: must be an IANA name such as Europe/Zurich")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone {timezone!r}") from None
    has_schedule = "schedule" in raw
    has_once = "start" in raw or "end" in raw
    if has_schedule == has_once:
        raise ValueError("set either schedule (cron) with duration, or start and end (once)")
    if has_once:
        if "start" not in raw or "end" not in raw:
            raise ValueError("a one-off window needs both start and end")
        if "duration" in raw:
            raise ValueError("duration: goes with schedule, not with start and end")
        start = _timestamp(raw["start"], "start")
        end = _timestamp(raw["end"], "end")
        if end <= start:
            raise ValueError("end: must be after start")
        return MaintenanceWindow(name=name, sites=sites, start=start, end=end, timezone=timezone)
    schedule = raw["schedule"]
    if not isinstance(schedule, str):
        raise ValueError('schedule: must be a cron expression such as "0 3 * * sun"')
    try:
        CronSim(schedule, dt.datetime.now(dt.UTC))
    except CronSimError as exc:
        raise ValueError(f"schedule: invalid cron expression {schedule!r}: {exc}") from None
    if "duration" not in raw:
        raise ValueError('duration: required with schedule (e.g. "1h")')
    try:
        duration = parse_duration(raw["duration"])
    except ValueError as exc:
        raise ValueError(f"duration: {exc}") from None
    if not 0 < duration <= MAX_WINDOW:
        raise ValueError("duration: must be above 0s and at most 30d")
    return MaintenanceWindow(
        name=name, sites=sites, schedule=schedule, duration=duration, timezone=timezone
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
            window = _one(entry, names)
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
