"""`[[heartbeats]]`: what a file turns into, the one-line errors, the token files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.config import Config, ConfigError, load_config
from sentinel.heartbeats.config import (
    TokenError,
    is_loopback_listen,
    read_token,
    token_matches,
)


def load_config_text(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    return load_config(path)


def errors_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [line.removeprefix(f"{path}: ") for line in info.value.errors]


def test_the_issues_examples_parse(tmp_path: Path) -> None:
    config = load_config_text(
        """
[[heartbeats]]
name = "nightly-backup"
every = "1d"
grace = "1h"

[[heartbeats]]
name = "renew-certs"
schedule = "0 3 * * *"
timezone = "Europe/Zurich"
grace = "30m"
token_file = "/etc/sentinel/renew.token"
""",
        tmp_path,
    )
    backup, renew = config.heartbeats
    assert (backup.name, backup.every, backup.grace, backup.schedule) == (
        "nightly-backup",
        86400.0,
        3600.0,
        None,
    )
    assert (renew.schedule, renew.timezone, renew.grace, renew.every) == (
        "0 3 * * *",
        "Europe/Zurich",
        1800.0,
        None,
    )
    assert renew.token_file == "/etc/sentinel/renew.token"
    assert backup.describe() == "every 1d"


def test_grace_defaults_to_an_hour_and_timezone_to_utc(tmp_path: Path) -> None:
    config = load_config_text('[[heartbeats]]\nname = "q"\nschedule = "*/5 * * * *"\n', tmp_path)
    (beat,) = config.heartbeats
    assert beat.grace == 3600.0 and beat.timezone == "UTC"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('name = "a"', 'heartbeats[0] "a": every: set exactly one of every'),
        (
            'name = "a"\nevery = "1d"\nschedule = "* * * * *"',
            'heartbeats[0] "a": every: set exactly one of every',
        ),
        ('name = "a"\nevery = "soon"', "heartbeats[0] \"a\": every: invalid duration 'soon'"),
        ('name = "a"\nevery = "500ms"', 'heartbeats[0] "a": every: must be at least 1s'),
        ('name = "a"\nevery = "1d"\ngrace = "0s"', 'heartbeats[0] "a": grace: must be at least 1s'),
        (
            'name = "a"\nschedule = "61 * * * *"',
            "heartbeats[0] \"a\": schedule: invalid cron expression '61 * * * *'",
        ),
        (
            'name = "a"\nschedule = "* * *"',
            "heartbeats[0] \"a\": schedule: invalid cron expression '* * *'",
        ),
        (
            'name = "a"\nschedule = "0 3 * * *"\ntimezone = "Mars/Olympus"',
            "heartbeats[0] \"a\": timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            'name = "a"\nevery = "1d"\ntimezone = "UTC"',
            'heartbeats[0] "a": timezone: only applies to a cron schedule',
        ),
        ('name = "a b"\nevery = "1d"', 'heartbeats[0] "a b": name: must be 1-100 letters'),
        ('name = "a/b"\nevery = "1d"', 'heartbeats[0] "a/b": name: must be 1-100 letters'),
        ('name = "a"\nevery = "1d"\ntypo = 1', 'heartbeats[0] "a": typo: unknown key'),
        ('every = "1d"', "heartbeats[0]: name: required"),
    ],
)
def test_each_mistake_is_one_line_naming_entry_and_field(
    entry: str, error: str, tmp_path: Path
) -> None:
    (line,) = errors_of(f"[[heartbeats]]\n{entry}\n", tmp_path)
    assert line.startswith(error), line


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    text = '[[heartbeats]]\nname = "a"\nevery = "1d"\n' * 2
    assert errors_of(text, tmp_path) == [
        'heartbeats[1] "a": name: duplicate heartbeat name (also heartbeats[0])'
    ]


def test_a_token_file_is_required_when_listening_beyond_loopback(tmp_path: Path) -> None:
    beat = '[[heartbeats]]\nname = "a"\nevery = "1d"\n'
    (line,) = errors_of('[sentinel]\nlisten = "0.0.0.0:9798"\n' + beat, tmp_path)
    assert line == (
        'heartbeats[0] "a": token_file: required when [sentinel] listen (0.0.0.0:9798) '
        "is not a loopback address"
    )
    for listen in ("127.0.0.1:9798", "[::1]:9798", "localhost:9798", "127.0.0.2:1"):
        assert load_config_text(f'[sentinel]\nlisten = "{listen}"\n' + beat, tmp_path).heartbeats
    with_token = beat + 'token_file = "/etc/sentinel/a.token"\n'
    assert load_config_text('[sentinel]\nlisten = "0.0.0.0:9798"\n' + with_token, tmp_path)


def test_heartbeats_need_the_web_server(tmp_path: Path) -> None:
    (line,) = errors_of(
        '[sentinel]\nlisten = ""\n[[heartbeats]]\nname = "a"\nevery = "1d"\n', tmp_path
    )
    assert line == 'heartbeats[0] "a": heartbeats need the web server ([sentinel] listen is off)'


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("192.0.2.1:1", False),
        (":9798", False),
    ],
)
def test_loopback_listen(listen: str, loopback: bool) -> None:
    assert is_loopback_listen(listen) is loopback


def test_token_files(tmp_path: Path) -> None:
    from sentinel.heartbeats.config import HeartbeatConfig

    good = tmp_path / "good"
    good.write_text("  s3cret-Token_1\n")
    assert read_token(HeartbeatConfig("a", every=1.0, token_file=str(good))) == b"s3cret-Token_1"
    assert read_token(HeartbeatConfig("a", every=1.0)) is None
    cases = {
        "missing": (None, "cannot read"),
        "empty": ("\n", "empty"),
        "spaces": ("two words", "printable ASCII"),
        "huge": ("x" * 2000, "longer than"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(TokenError) as info:
            read_token(HeartbeatConfig("a", every=1.0, token_file=str(path)))
        assert str(info.value).startswith(f'heartbeats "a": token_file: {path}: ')
        assert message in str(info.value) and "\n" not in str(info.value)


def test_token_comparison() -> None:
    assert token_matches(None, None) and token_matches(None, b"anything")
    assert token_matches(b"abc", b"abc")
    assert not token_matches(b"abc", b"abd")
    assert not token_matches(b"abc", None)
    assert not token_matches(b"abc", b"")
