"""The building blocks every config section uses: `ConfigError`, durations, sizes, names, the one
strict pydantic base of every section, and pydantic errors as one-line messages.

A leaf (it imports no other config module), so `sentinel.config` and `sentinel.early.config` both
build on it without importing each other. Pure.
"""

from __future__ import annotations

import re

from sentinel.sanitize import has_control

__all__ = [
    "ConfigError",
    "check_name",
    "format_duration",
    "parse_duration",
    "parse_size",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}
MAX_NAME_CHARS = 100


class ConfigError(Exception):
    """An invalid configuration; `errors` holds one human-readable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def check_name(value: str) -> str:
    """A site's or a watch's name: it goes into email subjects, log lines and metric labels, so
    1-100 characters, not blank, and nothing that could split a line (sentinel.sanitize)."""
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_NAME_CHARS or has_control(value):
        raise ValueError(f"must be 1-{MAX_NAME_CHARS} characters without control characters")
    return value


def parse_duration(value: object) -> float:
    """'500ms', '30s', '5m', '4h', '14d' -> seconds. Bare numbers are refused: '30' is ambiguous."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'invalid duration {value!r} (use a string such as "30s", "5m")')
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"invalid duration {value!r} (use 30s, 5m, ...)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest config-style spelling ('90s' -> '1m30s' is not config syntax, so
    this gives '90s'); used in summaries that a user may paste back into a file."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_size(value: object) -> int:
    """'1MiB', '512KiB', 1048576 -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}")
        return value
    if not isinstance(value, str) or (match := _SIZE_RE.match(value)) is None:
        raise ValueError(f'invalid size {value!r} (use e.g. "1MiB", "512KiB")')
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
