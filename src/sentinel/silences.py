"""Silences: "be quiet about this site (or every site) until then", set at run time with
`sentinel silence`. Pure: the values and the rules; the store keeps them, the daemon asks.

A silence holds DOWN and STILL DOWN alerts exactly as a maintenance window does (see
`sentinel.monitor`); it expires by itself at `until`. The CLI writes it into the state store; the
running daemon notices the store changed (SQLite's data_version) within a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sentinel.config_units import check_name
from sentinel.sanitize import has_control

MAX_SILENCES = 1000  # active at once: a loop in a script must not grow the store without bound
MAX_DURATION = 90 * 86400.0  # a longer silence is a removed site
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    site: str | None  # None = every site
    until: float
    reason: str
    created: float

    def covers(self, site: str, now: float) -> bool:
        return now < self.until and (self.site is None or self.site == site)


def active_for(silences: Iterable[Silence], site: str, now: float) -> list[Silence]:
    return [s for s in silences if s.covers(site, now)]


def check_request(site: str | None, duration: float, reason: str) -> tuple[str | None, str]:
    """Validate a new silence; returns (site, reason) cleaned, or raises ValueError (one line)."""
    if site is not None:
        check_name(site)
    if not 0 < duration <= MAX_DURATION:
        raise ValueError("--for must be above 0s and at most 90d")
    reason = " ".join(reason.split())  # one line: no newlines or control whitespace
    if has_control(reason):
        raise ValueError("--reason must not contain control characters")
    if len(reason) > MAX_REASON:
        raise ValueError(f"--reason is at most {MAX_REASON} characters")
    return site, reason
