"""[history], [status_page] and [sentinel] timezone: values, defaults and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.config import ConfigError, load_config, parse_config
from sentinel.history.settings import HistoryConfig, StatusPageConfig

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def errors(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_defaults() -> None:
    config = parse_config({})
    assert config.history == HistoryConfig(True, 35 * DAY, 400 * DAY, 400 * DAY, 60.0)
    assert config.status_page == StatusPageConfig("Status", True, "", "UTC")


def test_the_example_sets_every_key_to_its_documented_default() -> None:
    config = load_config(ROOT / "sites.example.toml")
    assert config.history == HistoryConfig()
    assert config.status_page == StatusPageConfig()


def test_values() -> None:
    config = parse_config(
        {
            "sentinel": {"timezone": "Europe/Zurich"},
            "history": {"keep_hourly": "10d", "keep_daily": "90d", "write_every": "5s"},
            "status_page": {
                "title": "Acme",
                "show_targets": True,
                "public_url": "https://status.example.org/",
            },
        }
    )
    assert config.history is not None and config.status_page is not None
    assert config.history.keep_hourly == 10 * DAY and config.history.write_every == 5.0
    assert config.status_page == StatusPageConfig(
        "Acme", True, "https://status.example.org/", "Europe/Zurich"
    )


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"history": {"keep_hourly": "3d"}}, "history: keep_hourly: must be between 7d and 3660d"),
        ({"history": {"keep_daily": "soon"}}, "history: keep_daily: invalid duration 'soon'"),
        ({"history": {"keep_forever": True}}, "history: keep_forever: unknown key"),
        ({"history": {"write_every": "0s"}}, "history: write_every: must be between 1s and 1h"),
        ({"status_page": {"title": ""}}, "status_page: title: must be 1-200 characters"),
        ({"status_page": {"public_url": "status"}}, "status_page: public_url: invalid URL"),
        ({"status_page": {"colour": "red"}}, "status_page: colour: unknown key"),
        ({"sentinel": {"timezone": "Mars/Olympus"}}, "sentinel: timezone: unknown time zone"),
        ({"history": "yes"}, "history: "),
    ],
)
def test_errors_are_one_line_naming_the_section_and_key(data: dict[str, object], line: str) -> None:
    found = errors(data)
    assert any(e.startswith(line) for e in found), found
    assert all("\n" not in e for e in found)
