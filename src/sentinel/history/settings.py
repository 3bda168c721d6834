"""The `[history]` and `[status_page]` sections and `[sentinel] timezone`, as frozen values.

Pure. `parse_history(history, status_page, timezone)` takes the raw tables that
`sentinel.config.FileSection` passes through and raises `sentinel.config.ConfigError` with one
line per problem, each naming the section and the key: `history: keep_hourly: ...`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sentinel.zones import zone

DAY = 86400.0
MAX_KEEP = 3660 * DAY  # ten years: anything longer is a typo


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    enabled: bool = True
    keep_hourly: float = 35 * DAY
    keep_daily: float = 400 * DAY
    keep_incidents: float = 400 * DAY
    write_every: float = 60.0  # seconds between batched writes (what a kill -9 can lose)


@dataclass(frozen=True, slots=True)
class StatusPageConfig:
    title: str = "Status"
    # URLs and failure messages (which may name internal hosts): set false for a public page
    show_targets: bool = True
    public_url: str = ""
    timezone: str = "UTC"  # IANA name, from [sentinel] timezone


def check_timezone(value: str) -> str:
    """An IANA time zone name that this machine's tz database knows."""
    try:
        zone(value)
    except ValueError:
        raise ValueError(
            f'unknown time zone {value!r} (use an IANA name such as "Europe/Zurich")'
        ) from None
    return value
