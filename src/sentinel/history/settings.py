"""The `[history]` and `[status_page]` sections and `[sentinel] timezone`, as frozen values.

Pure. `parse_history(history, status_page, timezone)` takes the raw tables that
`sentinel.config.FileSection` passes through and raises `sentinel.config.ConfigError` with one
line per problem, each naming the section and the key: `history: keep_hourly: ...`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator

from sentinel.config_units import ConfigError, Duration, StrictSection, pydantic_errors

DAY = 86400.0
MAX_KEEP = 3660 * DAY  # ten years: anything longer is a typo


def _check_keep(value: float, *, minimum: float) -> float:
    if not minimum <= value <= MAX_KEEP:
        raise ValueError(f"must be between {int(minimum // DAY)}d and {int(MAX_KEEP // DAY)}d")
    return value


class HistorySection(StrictSection):
    enabled: bool = True
    keep_hourly: Duration = 35 * DAY
    keep_daily: Duration = 400 * DAY
    keep_incidents: Duration = 400 * DAY
    write_every: Duration = 60.0

    @field_validator("write_every")
    @classmethod
    def _write_every(cls, value: float) -> float:
        # What a kill -9 can lose; shorter costs a transaction a site-hour more often.
        if not 1.0 <= value <= 3600.0:
            raise ValueError("must be between 1s and 1h")
        return value

    @field_validator("keep_hourly")
    @classmethod
    def _hourly(cls, value: float) -> float:
        # The page's 7-day latency chart and 24 h uptime read hourly rows.
        return _check_keep(value, minimum=7 * DAY)

    @field_validator("keep_daily", "keep_incidents")
    @classmethod
    def _daily(cls, value: float) -> float:
        return _check_keep(value, minimum=DAY)


class StatusPageSection(StrictSection):
    title: str = "Status"
    show_targets: bool = True
    public_url: str = ""

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip() or len(value) > 200:
            raise ValueError("must be 1-200 characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value == "":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise ValueError(f"invalid URL {value!r} (use e.g. https://status.example.org/)")
        return value


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
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f'unknown time zone {value!r} (use an IANA name such as "Europe/Zurich")'
        ) from None
    return value


def parse_history(
    history: Mapping[str, Any] | None, status_page: Mapping[str, Any] | None, timezone: str
) -> tuple[HistoryConfig, StatusPageConfig]:
    errors: list[str] = []
    h = HistorySection()
    p = StatusPageSection()
    try:
        h = HistorySection.model_validate(history or {})
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc, "history"))
    try:
        p = StatusPageSection.model_validate(status_page or {})
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc, "status_page"))
    try:
        check_timezone(timezone)
    except ValueError as exc:
        errors.append(f"sentinel: timezone: {exc}")
    if errors:
        raise ConfigError(errors)
    return (
        HistoryConfig(h.enabled, h.keep_hourly, h.keep_daily, h.keep_incidents, h.write_every),
        StatusPageConfig(p.title, p.show_targets, p.public_url, timezone),
    )
