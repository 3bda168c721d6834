"""Display time zones by IANA name: UTC without zoneinfo, any other through it."""

from __future__ import annotations

from datetime import datetime

import pytest

from sentinel.zones import zone, zone_name


def test_a_zone_is_known_by_its_name() -> None:
    assert zone_name(zone("UTC")) == "UTC" and zone_name(zone("Etc/UTC")) == "UTC"
    zurich = zone("Europe/Zurich")
    assert zone_name(zurich) == "Europe/Zurich"
    assert datetime(2026, 7, 1, tzinfo=zurich).isoformat().endswith("+02:00")
    assert datetime(2026, 7, 1, tzinfo=zone("UTC")).isoformat().endswith("+00:00")


@pytest.mark.parametrize("name", ["Nope/Nope", "", "../etc/passwd", "utc", "Europe"])
def test_an_unknown_zone_is_a_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        zone(name)
