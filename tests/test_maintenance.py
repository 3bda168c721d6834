"""Maintenance windows: the config contract (one-line errors) and when a window is on, including
across DST changes, for any moment (hypothesis)."""

from __future__ import annotations

import datetime as dt
import tomllib
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import ConfigError, parse_config
from sentinel.maintenance import MaintenanceClock, MaintenanceWindow, window_state

ZURICH = ZoneInfo("Europe/Zurich")

SITES = """
[[sites]]
name = "blog"
url = "https://blog.example/"
[[sites]]
name = "shop"
url = "https://shop.example/"
"""


def config(maintenance: str) -> list[MaintenanceWindow]:
    return list(parse_config(tomllib.loads(SITES + maintenance)).maintenance)


def errors(maintenance: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(SITES + maintenance))
    return info.value.errors


def ts(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    tz: dt.tzinfo = ZURICH,
) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()


def test_a_weekly_window_in_a_time_zone() -> None:
    (window,) = config(
        """
[[maintenance]]
name = "weekly deploy"
sites = ["blog"]
schedule = "0 3 * * sun"
duration = "1h"
timezone = "Europe/Zurich"
"""
    )
    assert window.covers("blog") and not window.covers("shop")
    # Sunday 2026-12-06 03:00-04:00 in Zurich (UTC+1).
    assert not window_state(window, ts(2026, 12, 6, 2, 59)).active
    on = window_state(window, ts(2026, 12, 6, 3, 0))
    assert on.active and on.end == ts(2026, 12, 6, 4, 0)
    assert window_state(window, ts(2026, 12, 6, 3, 59)).active
    off = window_state(window, ts(2026, 12, 6, 4, 0))
    assert not off.active and off.next_change == ts(2026, 12, 13, 3, 0)


def test_a_one_off_window_accepts_strings_and_toml_datetimes() -> None:
    windows = config(
        """
[[maintenance]]
name = "xmas"
start = "2026-12-24T22:00:00+01:00"
end = "2026-12-25T02:00:00+01:00"
[[maintenance]]
name = "native"
start = 2026-12-24T22:00:00+01:00
end = 2026-12-25T02:00:00+01:00
"""
    )
    for window in windows:
        assert window.sites is None and window.covers("shop")
        assert window_state(window, ts(2026, 12, 24, 23, 0)).active
        assert not window_state(window, ts(2026, 12, 25, 2, 0)).active


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'name = "m"\nschedule = "0 3 * *"\nduration = "1h"',
            'maintenance[0] "m": schedule: invalid cron expression',
        ),
        (
            'name = "m"\nschedule = "0 3 * * *"',
            'maintenance[0] "m": duration: required with schedule',
        ),
        (
            'name = "m"\nschedule = "0 3 * * *"\nduration = "soon"',
            'maintenance[0] "m": duration: invalid duration',
        ),
        (
            'name = "m"\nsites = ["nope"]\nschedule = "0 3 * * *"\nduration = "1h"',
            "sites: no site named 'nope'",
        ),
        (
            'name = "m"\nschedule = "0 3 * * *"\nduration = "1h"\ntimezone = "Mars/Base"',
            "timezone: unknown time zone",
        ),
        (
            'name = "m"\nstart = "2026-12-24T22:00:00"\nend = "2026-12-25T02:00:00+01:00"',
            "start: 2026-12-24T22:00:00 has no UTC offset",
        ),
        (
            'name = "m"\nstart = "2026-12-25T22:00:00+01:00"\nend = "2026-12-25T02:00:00+01:00"',
            "end: must be after start",
        ),
        (
            'name = "m"\nschedule = "0 3 * * *"\nduration = "1h"\nstart = "2026-12-25T22:00:00+01:00"',
            "set either schedule",
        ),
        ('name = "m"\nschedul = "0 3 * * *"', "schedul: unknown key"),
        ('schedule = "0 3 * * *"\nduration = "1h"', "maintenance[0]: name: required"),
    ],
)
def test_bad_windows_are_one_line_errors(body: str, message: str) -> None:
    (line,) = errors(f"[[maintenance]]\n{body}\n")
    assert message in line
    assert "\n" not in line


def test_window_names_are_unique() -> None:
    body = '[[maintenance]]\nname = "m"\nschedule = "0 3 * * *"\nduration = "1h"\n'
    (line,) = errors(body * 2)
    assert line == 'maintenance[1] "m": name: duplicate maintenance name'


def test_a_daily_window_across_the_spring_dst_change() -> None:
    # 2026-03-29: Zurich skips 02:00-03:00. A window at 02:30 runs at 03:00 (cron semantics).
    window = MaintenanceWindow(
        name="m", sites=None, schedule="30 2 * * *", duration=1800.0, timezone="Europe/Zurich"
    )
    state = window_state(window, ts(2026, 3, 29, 3, 10))
    assert state.active


@settings(max_examples=300, deadline=None)
@given(
    moment=st.floats(ts(2026, 1, 1), ts(2027, 1, 1)),
    hour=st.integers(0, 23),
    minutes=st.integers(1, 180),
)
def test_a_daily_window_is_on_exactly_within_duration_after_its_start(
    moment: float, hour: int, minutes: int
) -> None:
    window = MaintenanceWindow(
        name="m", sites=None, schedule=f"0 {hour} * * *", duration=minutes * 60.0, timezone="UTC"
    )
    state = window_state(window, moment)
    day = dt.datetime.fromtimestamp(moment, dt.UTC).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    starts = [(day + dt.timedelta(days=d)).timestamp() for d in (-1, 0)]
    expected = any(s <= moment < s + minutes * 60.0 for s in starts)
    assert state.active == expected
    assert state.next_change is not None and state.next_change > moment


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 14 * 86400.0), min_size=1, max_size=30))
def test_the_clock_caches_but_answers_like_the_evaluator(offsets: list[float]) -> None:
    window = MaintenanceWindow(
        name="m", sites=("blog",), schedule="15 */6 * * *", duration=1200.0, timezone="UTC"
    )
    clock = MaintenanceClock([window])
    base = ts(2026, 6, 1, tz=dt.UTC)
    for offset in sorted(offsets):
        now = base + offset
        assert bool(clock.active_for("blog", now)) == window_state(window, now).active
        assert clock.active_for("shop", now) == []
