"""Time zones by IANA name, for display. Pure; a leaf module.

UTC (the default of `[sentinel] timezone`) is datetime's own: `zoneinfo` is imported only for
another zone, since it imports `sysconfig` and its build data (~0.2 MiB a daemon would keep for
good to show UTC).
"""

from __future__ import annotations

from datetime import UTC, tzinfo

__all__ = ["zone", "zone_name"]

_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})


def zone(name: str) -> tzinfo:
    """The zone called `name`. Raises ValueError for a name this machine's tz database does not
    know."""
    if name in _UTC_NAMES:
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (see the module's docstring)

    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # (a KeyError)
        raise ValueError(f"no time zone {name!r} here") from None


def zone_name(tz: tzinfo) -> str:
    """The IANA name of a zone from `zone` (a ZoneInfo's key; "UTC" for datetime's UTC)."""
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz.tzname(None))
