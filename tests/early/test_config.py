"""`[[watch]]` and `[host]`: defaults, units, and one error line per problem naming entry and field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import ConfigError
from sentinel.early.config import (
    DEFAULT_DISK_MIN_GROWTH,
    EarlyConfig,
    HostConfig,
    parse_rate,
    parse_ratio,
)
from sentinel.parse.early import parse_early

MIB = 1024 * 1024
DAY = 86400.0


def errors_of(watch: list[dict[str, object]], host: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_early(watch, host)
    return info.value.errors


def test_a_minimal_watch_gets_the_documented_defaults() -> None:
    config = parse_early([{"name": "web", "unit": "web.service"}], None)
    (watch,) = config.watches
    assert watch.source == "unit"
    assert watch.target == "web.service"
    assert watch.sample_every == 60.0
    assert watch.window == DAY
    assert watch.warn_within == 3 * DAY
    assert watch.min_growth == pytest.approx(10 * MIB / DAY)
    assert watch.limit is None
    assert watch.cgroup_root == "/sys/fs/cgroup"
    assert watch.cgroup_path() == "/sys/fs/cgroup/system.slice/web.service"
    assert config.host == HostConfig()
    assert config.self_watch is not None and config.self_watch.source == "self"


def test_the_product_example_parses() -> None:
    config = parse_early(
        [
            {
                "name": "salsa-party-web-server",
                "unit": "salsa-party-web-server.service",
                "sample_every": "60s",
                "window": "24h",
                "warn_within": "3d",
                "min_growth": "10MiB/day",
            }
        ],
        {"disks": ["/", "/var"], "cpu_steal_warning": "20%"},
    )
    assert config.watches[0].name == "salsa-party-web-server"
    assert config.host.disks == ("/", "/var")
    assert config.host.cpu_steal_warning == pytest.approx(0.2)
    assert config.host.disk_min_growth == DEFAULT_DISK_MIN_GROWTH


def test_pid_file_process_limit_and_cgroup_root_are_read() -> None:
    config = parse_early(
        [
            {"name": "a", "pid_file": "/run/a.pid", "limit": "512MiB"},
            {"name": "b", "process": r"gunicorn: master \[shop\]", "cgroup_root": "/tmp/cg"},
            {"name": "c", "unit": "user.slice/user-1000.slice/app.service"},
        ],
        None,
    )
    a, b, c = config.watches
    assert (a.source, a.target, a.limit) == ("pid_file", "/run/a.pid", 512 * MIB)
    assert (b.source, b.cgroup_root) == ("process", "/tmp/cg")
    assert c.cgroup_path() == "/sys/fs/cgroup/user.slice/user-1000.slice/app.service"


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("10MiB/day", 10 * MIB / DAY),
        ("1 GiB / d", 1024 * MIB / DAY),
        ("512KiB/hour", 512 * 1024 / 3600),
        ("5MiB/h", 5 * MIB / 3600),
        ("0B/day", 0.0),
    ],
)
def test_growth_rates_are_bytes_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["10MiB", "fast", "10MiB/week", "/day", 10])
def test_a_bad_growth_rate_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="invalid growth rate"):
        parse_rate(text)


def test_percentages_become_ratios() -> None:
    assert parse_ratio("20%") == pytest.approx(0.2)
    assert parse_ratio("0%") == 0.0
    assert parse_ratio(0.35) == pytest.approx(0.35)
    for bad in ("120%", "twenty", True, -0.1):
        with pytest.raises(ValueError):
            parse_ratio(bad)


def test_an_error_names_the_entry_and_the_field() -> None:
    assert errors_of([{"name": "web", "unit": "web.service", "window": "soon"}]) == [
        "watch[0] \"web\": window: invalid duration 'soon' (use 30s, 5m, ...)"
    ]


@pytest.mark.parametrize("name", ["web\x07", "web\x85x", "web\u2028x", "web\u2029x", " "])
def test_a_watch_name_follows_the_site_name_rule(name: str) -> None:
    """It goes into email subjects and log lines: nothing that could split or garble them."""
    (error,) = errors_of([{"name": name, "unit": "web.service"}])
    assert error.endswith(("without control characters", "must not be empty"))


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of(
        [
            {"name": "a", "unit": "a.service", "min_growth": "lots"},
            {"name": "b"},
            {"name": "a", "pid_file": "/run/a.pid"},
            {"unit": "x.service"},
            {"name": "c", "process": "(unclosed"},
            {"name": "d", "unit": "d.service", "sampel_every": "1s"},
        ],
        {"disks": ["relative/path"], "cpu_steal_warning": "lots"},
    )
    assert errors[0].startswith('watch[0] "a": min_growth: invalid growth rate')
    assert errors[1].startswith('watch[1] "b": set exactly one of unit')
    assert errors[2] == 'watch[2] "a": name: duplicate watch name (also watch[0])'
    assert errors[3] == "watch[3]: name: required"
    assert errors[4].startswith('watch[4] "c": process: invalid regular expression')
    assert errors[5] == 'watch[5] "d": sampel_every: unknown key (check the spelling)'
    assert any(e.startswith("host: disks: invalid mount point 'relative/path'") for e in errors)
    assert any(e.startswith("host: cpu_steal_warning: invalid percentage") for e in errors)


def test_two_sources_in_one_watch_are_refused() -> None:
    (error,) = errors_of([{"name": "w", "unit": "w.service", "pid_file": "/run/w.pid"}])
    assert error.endswith("got unit, pid_file")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("unit", "../etc.service", "invalid unit"),
        ("unit", "web", "invalid unit"),
        ("pid_file", "run/x.pid", "must be absolute"),
        ("cgroup_root", "cg", "must be absolute"),
        ("sample_every", "10ms", "must be at least"),
        ("warn_within", "0s", "must be above 0s"),
        ("limit", "0B", "must be above 0 bytes"),
        ("window", "1000d", "must be at most"),
    ],
)
def test_bad_field_values_are_refused(field: str, value: str, message: str) -> None:
    watch: dict[str, object] = {"name": "w", "pid_file": "/run/w.pid"}
    if field == "unit":
        watch = {"name": "w"}
    watch[field] = value
    (error,) = errors_of([watch])
    assert error.startswith(f'watch[0] "w": {field}: ')
    assert message in error


def test_a_window_too_short_for_the_detector_is_refused() -> None:
    (error,) = errors_of([{"name": "w", "unit": "w.service", "sample_every": "5m", "window": "1h"}])
    assert error.startswith('watch[0] "w": window: must cover at least')


def test_the_self_watch_name_is_reserved_and_the_self_watch_can_be_turned_off() -> None:
    (error,) = errors_of([{"name": "sentinel", "unit": "sentinel.service"}])
    assert "reserved" in error
    assert parse_early([], {"self_watch": False}).self_watch is None


def test_no_early_sections_gives_a_quiet_default() -> None:
    config = parse_early([], None)
    assert config == parse_early(None, None)
    assert config.watches == ()
    assert config.host.disks == ()
    assert isinstance(config, EarlyConfig)


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=12), st.integers())))
def test_arbitrary_watch_tables_never_crash_the_parser(raw: dict[str, object]) -> None:
    try:
        parse_early([raw], None)
    except ConfigError as exc:
        assert exc.errors
        assert all(line.startswith("watch[0]") and "\n" not in line for line in exc.errors)
