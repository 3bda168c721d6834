"""`[deadman]`, resolved to `sentinel.deadman.DeadmanConfig`."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import field_validator

from sentinel.deadman import MIN_EVERY, DeadmanConfig
from sentinel.parse.units import Duration, StrictSection
from sentinel.sanitize import has_control


class DeadmanSection(StrictSection):
    url: str
    every: Duration | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or has_control(value):
            raise ValueError(
                f"invalid URL {value!r} (use e.g. https://hc-ping.com/<uuid>; http or https)"
            )
        return value

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: float | None) -> float | None:
        # The scheduler proves progress at least once a second: a tick must span two of those.
        if value is not None and not MIN_EVERY <= value <= 86400.0:
            raise ValueError("must be between 2s and 1d")
        return value

    def resolve(self) -> DeadmanConfig:
        return DeadmanConfig(**self.model_dump(exclude_none=True))
