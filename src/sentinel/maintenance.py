"""Maintenance windows: `[[maintenance]]` in, "is this site in a window at `now`?" out. Pure.

A window is either a one-off (`start`, `end`) or recurring (`schedule`, a cron expression in
`timezone`, each occurrence lasting `duration`). Cron is evaluated by cronsim (the evaluator
healthchecks.io maintains for exactly this), so DST gaps and repeats, `L`, `#` and ranges behave
as cron users expect. During a window probes still run and are recorded; only alerts are held
(see `sentinel.monitor`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cronsim import CronSim

from sentinel.zones import zone

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
    tz = zone(window.timezone)
    # The occurrence that may still be running started after now - duration.
    since = dt.datetime.fromtimestamp(now - window.duration, tz)
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
