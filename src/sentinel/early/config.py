"""The early-warning config: `[[watch]]` entries and `[host]`, validated into frozen values.

Pure. `parse_early(watch, host)` takes the raw tables that `sentinel.config.FileSection` passes
through and raises `ConfigError` (sentinel.config_units) with one line per problem, each naming
the entry and the field: `watch[0] "web": window: invalid duration 'soon' (use 30s, 5m, ...)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from sentinel.config_units import (
    parse_size,
)
from sentinel.early.latency import DriftSettings

DAY = 86400.0
MIB = 1024 * 1024
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_SAMPLE_EVERY = 60.0
DEFAULT_WINDOW = DAY
DEFAULT_WARN_WITHIN = 3 * DAY
DEFAULT_MIN_GROWTH = 10 * MIB / DAY  # "10MiB/day"
DEFAULT_DISK_MIN_GROWTH = 1 * MIB / DAY  # "1MiB/day": the forecast is what matters for a disk
DEFAULT_STEAL_WARNING = 0.2
MIN_SAMPLE_EVERY = 0.1
MAX_WINDOW = 90 * DAY
SELF_WATCH_NAME = "sentinel"

_UNIT_PART = r"[A-Za-z0-9:_.@\\-]+"
UNIT_RE = re.compile(rf"^({_UNIT_PART}\.slice/)*{_UNIT_PART}\.(service|scope|slice)$")
_RATE_RE = re.compile(r"^\s*(.+?)\s*/\s*(day|d|hour|h)\s*$")
_RATE_UNITS = {"day": DAY, "d": DAY, "hour": 3600.0, "h": 3600.0}
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_rate(value: object) -> float:
    """'10MiB/day', '1 GiB / d', '512KiB/hour', '5MiB/h' -> bytes per second."""
    if isinstance(value, str) and (match := _RATE_RE.match(value)) is not None:
        try:
            size = parse_size(match.group(1))
        except ValueError:
            pass
        else:
            return size / _RATE_UNITS[match.group(2)]
    raise ValueError(f'invalid growth rate {value!r} (use e.g. "10MiB/day" or "1MiB/hour")')


def parse_ratio(value: object) -> float:
    """'20%' -> 0.2; a bare number is taken as a fraction (0.2)."""
    if isinstance(value, bool):
        raise ValueError(f'invalid percentage {value!r} (use e.g. "20%")')
    if isinstance(value, int | float):
        ratio = float(value)
    elif isinstance(value, str) and (match := _PERCENT_RE.match(value)) is not None:
        ratio = float(match.group(1)) / 100.0
    else:
        raise ValueError(f'invalid percentage {value!r} (use e.g. "20%")')
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"invalid percentage {value!r} (0% to 100%)")
    return ratio


# ---------------------------------------------------------------- resolved values


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """One watched local service. `source` says how `target` finds it."""

    name: str
    source: Literal["unit", "pid_file", "process", "self"]
    target: str  # the unit (or cgroup path under cgroup_root), the pid file, the regex, or the pid
    sample_every: float = DEFAULT_SAMPLE_EVERY
    window: float = DEFAULT_WINDOW
    warn_within: float = DEFAULT_WARN_WITHIN
    min_growth: float = DEFAULT_MIN_GROWTH  # bytes per second
    limit: int | None = None  # overrides memory.high/memory.max/MemTotal
    cgroup_root: str = DEFAULT_CGROUP_ROOT

    def describe(self) -> str:
        """'unit x.service', 'pid file /run/x.pid', 'process /regex/' for emails and logs."""
        if self.source == "unit":
            return f"unit {self.target}"
        if self.source == "pid_file":
            return f"pid file {self.target}"
        if self.source == "process":
            return f"process matching /{self.target}/"
        return "sentinel itself"

    def cgroup_path(self) -> str:
        """The unit's cgroup directory: `<root>/system.slice/<unit>`, or `<root>/<path>` when the
        unit is written with its slices (`user.slice/x.service`)."""
        relative = self.target if "/" in self.target else f"system.slice/{self.target}"
        return f"{self.cgroup_root.rstrip('/')}/{relative}"


@dataclass(frozen=True, slots=True)
class HostConfig:
    disks: tuple[str, ...] = ()
    disk_sample_every: float = DEFAULT_SAMPLE_EVERY
    disk_window: float = DEFAULT_WINDOW
    disk_warn_within: float = DEFAULT_WARN_WITHIN
    disk_min_growth: float = DEFAULT_DISK_MIN_GROWTH
    cpu_steal_warning: float = DEFAULT_STEAL_WARNING  # 0 = metric only, never an email
    cpu_steal_sample_every: float = DEFAULT_SAMPLE_EVERY
    self_watch: bool = True


def default_self_watch(
    sample_every: float = DEFAULT_SAMPLE_EVERY, window: float = DEFAULT_WINDOW
) -> WatchConfig:
    """sentinel's own memory: the same detector, any confirmed growth above min_growth counts."""
    return WatchConfig(
        name=SELF_WATCH_NAME,
        source="self",
        target="",
        sample_every=sample_every,
        window=window,
    )


@dataclass(frozen=True, slots=True)
class EarlyConfig:
    watches: tuple[WatchConfig, ...] = ()
    host: HostConfig = HostConfig()
    self_watch: WatchConfig | None = field(default_factory=default_self_watch)
    drift: DriftSettings = field(default_factory=DriftSettings)

    @property
    def enabled(self) -> bool:
        """Anything to sample at all (the daemon may skip starting EarlyWarnings otherwise)."""
        return bool(self.watches or self.host.disks or self.self_watch is not None)

    def watch(self, name: str) -> WatchConfig:
        for watch in self.watches:
            if watch.name == name:
                return watch
        raise KeyError(name)


# ---------------------------------------------------------------- TOML models


# ---------------------------------------------------------------- parsing
