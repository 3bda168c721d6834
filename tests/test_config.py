"""Config: what a user's file turns into, and the one-line errors a broken file gives."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import (
    ConfigError,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)

ROOT = Path(__file__).resolve().parent.parent


def errors_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "sites.example.toml")
    assert [s.name for s in config.sites] == ["sentinel-itself", "local-web", "metrics-port"]
    itself = config.site("sentinel-itself")
    assert itself.interval == 10.0 and itself.timeout == 2.0
    assert itself.policy.remind_every == 4 * 3600  # inherited from [defaults]
    assert itself.expect_status == (200,)
    assert config.site("metrics-port").kind == "tcp"


def test_sites_with_equal_policies_share_one_even_after_pickling() -> None:
    # (the daemon gets its config pickled from a child: a policy a site is ~0.2 KiB each)
    config = parse_config(
        {
            "defaults": {"remind_every": "1h"},
            "sites": [
                {"name": "a", "url": "http://127.0.0.1/a"},
                {"name": "b", "url": "http://127.0.0.1/b"},
                {"name": "c", "url": "http://127.0.0.1/c", "failure_threshold": 5},
            ],
        }
    )
    a, b, c = pickle.loads(pickle.dumps(config)).sites
    assert a.policy is b.policy and a.policy.remind_every == 3600
    assert c.policy.failure_threshold == 5 and c.policy.remind_every == 3600


def test_defaults_are_inherited_and_overridden() -> None:
    config = parse_config(
        {
            "defaults": {"interval": "2m", "failure_threshold": 5, "remind_every": "0s"},
            "sites": [
                {"name": "a", "url": "http://a.example/"},
                {"name": "b", "url": "http://b.example/", "failure_threshold": 1},
            ],
        }
    )
    a, b = config.sites
    assert a.interval == 120.0 and a.policy.failure_threshold == 5 and a.policy.remind_every == 0
    assert b.policy.failure_threshold == 1 and b.interval == 120.0


def test_precise_latency_is_off_unless_asked_for() -> None:
    assert parse_config({}).precise_latency is False
    assert parse_config({"sentinel": {"precise_latency": True}}).precise_latency is True


@pytest.mark.parametrize(
    ("text", "value"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("4h", 14400), ("14d", 14 * 86400), ("1.5s", 1.5)],
)
def test_durations_parse(text: str, value: float) -> None:
    assert parse_duration(text) == pytest.approx(value)


@given(st.integers(min_value=1, max_value=10**6))
def test_formatted_durations_parse_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_status_accepts_2xx_by_default_and_patterns() -> None:
    config = parse_config(
        {
            "sites": [
                {"name": "a", "url": "http://a.example/"},
                {"name": "b", "url": "http://b.example/", "expect_status": ["2xx", 301]},
                {"name": "c", "url": "http://c.example/", "expect_status": 404},
            ]
        }
    )
    a, b, c = config.sites
    assert a.accepts_status(204) and not a.accepts_status(301)
    assert b.accepts_status(299) and b.accepts_status(301) and not b.accepts_status(302)
    assert c.accepts_status(404) and not c.accepts_status(200)


BROKEN = [
    # (file text, an expected fragment of the one error line)
    (
        '[[sites]]\nname = "blog"\nurl = "http://x/"\ninterval = "soon"\n',
        "sites[0] \"blog\": interval: invalid duration 'soon' (use 30s, 5m, ...)",
    ),
    (
        '[[sites]]\nname = "blog"\nurl = "http://x/"\nintervall = "30s"\n',
        'sites[0] "blog": intervall: unknown key',
    ),
    (
        '[[sites]]\nname = "a"\nurl = "http://x/"\n[[sites]]\nname = "a"\nurl = "http://y/"\n',
        'sites[1] "a": name: duplicate site name',
    ),
    (
        '[[sites]]\nname = "a"\nurl = "http://x/"\ninterval = "10s"\ntimeout = "10s"\n',
        'sites[0] "a": timeout: must be below interval',
    ),
    ('[[sites]]\nname = "a"\nurl = "ftp://x/"\n', 'sites[0] "a": url: invalid URL'),
    ('[[sites]]\nname = "a"\n', 'sites[0] "a": set exactly one of url'),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\ntcp = "x:1"\n', "set exactly one of url"),
    ('[[sites]]\nname = "a"\ntcp = "x"\n', 'sites[0] "a": tcp: invalid tcp'),
    ('[[sites]]\nname = "a"\ntcp = "x:99999"\n', "invalid port 99999"),
    (
        '[[sites]]\nname = "a"\nurl = "http://x/"\ninterval = "500ms"\ntimeout = "100ms"\n',
        "interval: must be at least 1s",
    ),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\ninterval = 30\n', "interval: invalid duration 30"),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\nfailure_threshold = 0\n', "failure_threshold"),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\nexpect_status = [999]\n', "invalid status 999"),
    (
        '[[sites]]\nname = "a"\nurl = "http://x/"\nbody_regex = "("\n',
        "body_regex: invalid regular expression",
    ),
    ('[[sites]]\nname = "a\\u0007"\nurl = "http://x/"\n', "name: must be 1-100 characters"),
    ('[[sites]]\nurl = "http://x/"\n', "sites[0]: name: required"),
    ('[defaults]\ninterval = "x"\n', "defaults: interval: invalid duration 'x'"),
    ('[defaults]\nname = "x"\n', "defaults: name: unknown key"),
    ('[sentinel]\nlisten = "nowhere"\n', "sentinel: listen: invalid listen 'nowhere'"),
    ("[sentinel]\nmax_concurrency = 0\n", "sentinel: max_concurrency"),
    ('[sentinel]\nbatch_window = "2s"\n', "sentinel: batch_window: must be between 0s and 1s"),
    ("[sentinel]\nbatch_window = 0.05\n", "sentinel: batch_window: invalid duration"),
    ('[sentinel]\nprecise_latency = "yes"\n', "sentinel: precise_latency"),
    ("[sentinl]\n", "sentinl: unknown key"),
    ('[email]\nfrom = "a@b"\nto = []\n', "email: to: at least one recipient"),
    ('[email]\nfrom = "a@b"\nto = ["x"]\n', "email: to: invalid email address 'x'"),
    ('[email]\nfrom = "a@b"\nto = ["x@y"]\nsecurity = "ssl"\n', "email: security"),
    ('[email]\nfrom = "a@b"\nto = ["x@y"]\nsmtp_port = 0\n', "email: smtp_port"),
    ('[email]\nto = ["x@y"]\n', "email: from: required"),
    (
        '[[sites]]\nname = "a"\nurl = "http://x/"\nheaders = { "Bad Name" = "1" }\n',
        "invalid header name",
    ),
    ('[[sites]]\nname = "a"\ntcp = "x:1"\nbody_contains = "y"\n', "need an HTTP check"),
    ('sites = "nope"\n', "sites: must be an array of tables"),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\nmax_body_bytes = "lots"\n', "invalid size"),
    ('[[sites]]\nname = "a"\nurl = "http://x/"\nmethod = "BREW"\n', "method"),
    ('[[sites]]\nname = "a"\nurl = "http://x:0/"\n', "bad port"),
]


@pytest.mark.parametrize(("text", "fragment"), BROKEN)
def test_broken_config_gives_one_line_naming_site_and_field(
    text: str, fragment: str, tmp_path: Path
) -> None:
    errors = errors_of(text, tmp_path)
    assert any(fragment in line for line in errors), errors
    assert all("\n" not in line and "Traceback" not in line for line in errors)


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    errors = errors_of('[[sites]]\nname = "a\nurl = 1\n', tmp_path)
    assert len(errors) == 1
    assert "TOML syntax error" in errors[0] and "line 2" in errors[0] and "column" in errors[0]


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    errors = errors_of(
        '[[sites]]\nname = "a"\nurl = "http://x/"\ninterval = "x"\n'
        '[[sites]]\nname = "b"\nurl = "gopher://y/"\n',
        tmp_path,
    )
    assert len(errors) == 2
    assert errors[0].startswith(str(tmp_path / "sites.toml"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.errors == [f"{tmp_path / 'nope.toml'}: no such file"]


def test_every_toml_example_in_the_readme_is_a_valid_config() -> None:
    import re
    import tomllib

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        parse_config(tomllib.loads(block))


# ---------------------------------------------------------------- emails: watch, public_url

_WATCHED = {
    "watch": [{"name": "blog-app", "unit": "blog-app.service"}],
    "sites": [{"name": "blog", "url": "https://blog.example/", "watch": ["blog-app"]}],
}


def test_a_site_names_the_local_services_it_runs_on() -> None:
    from sentinel.config import parse_config

    config = parse_config(_WATCHED)
    assert config.site("blog").watch == ("blog-app",)
    assert (
        parse_config({"sites": [{"name": "b", "url": "https://b.example/"}]}).sites[0].watch == ()
    )


def test_a_site_watch_that_names_no_watch_entry_is_an_error() -> None:
    from sentinel.config import ConfigError, parse_config

    data = {**_WATCHED, "sites": [{"name": "blog", "url": "https://b.example/", "watch": ["nope"]}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors == [
        'sites[0] "blog": watch: "nope" is not a [[watch]] name (known: blog-app)'
    ]


def test_public_url_is_the_link_and_status_url_is_still_read_once_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sentinel import config as config_module
    from sentinel.config import parse_config

    config_module._DEPRECATIONS_LOGGED.clear()
    sites = {"sites": [{"name": "b", "url": "https://b.example/"}]}
    new = parse_config({**sites, "status_page": {"public_url": "https://status.example/"}})
    assert new.status_url == "https://status.example/"
    assert not caplog.records
    for _ in range(2):  # a reload does not say it again
        old = parse_config({**sites, "sentinel": {"status_url": "https://old.example/"}})
        assert old.status_url == "https://old.example/"
        assert old.status_page is not None and old.status_page.public_url == "https://old.example/"
    both = parse_config(
        {
            **sites,
            "sentinel": {"status_url": "https://old.example/"},
            "status_page": {"public_url": "https://status.example/"},
        }
    )
    assert both.status_url == "https://status.example/"
    deprecations = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert deprecations == [
        "[sentinel] status_url is deprecated: set [status_page] public_url instead",
        "[sentinel] status_url is deprecated: set [status_page] public_url instead "
        "(public_url is set and wins)",
    ]
