"""`[history]` and `[status_page]`, resolved to `sentinel.history.settings`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator

from sentinel.config_units import ConfigError
from sentinel.history.settings import DAY, MAX_KEEP, HistoryConfig, StatusPageConfig, check_timezone
from sentinel.parse.units import Duration, StrictSection, pydantic_errors


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
