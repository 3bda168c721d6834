"""The configuration as the daemon uses it: a frozen, fully resolved `Config` of plain dataclasses.

`parse_config` / `load_config` (TOML in, a `Config` out, or a list of one-line errors) are done by
`sentinel.parse`, imported on first use: this module, and everything the daemon imports, stays
free of pydantic (the daemon validates its file in a child process, `sentinel.config_child`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sentinel import USER_AGENT
from sentinel.config_units import (
    ConfigError,
    check_name,
    format_duration,
    parse_duration,
    parse_size,
)
from sentinel.deadman import DeadmanConfig
from sentinel.early.config import EarlyConfig
from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.maintenance import MaintenanceWindow
from sentinel.sanitize import has_control
from sentinel.shard import Shard

# The building blocks from sentinel.config_units are re-exported: `from sentinel.config import
# ConfigError` keeps working.
__all__ = [
    "DEFAULT_BATCH_WINDOW",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_INTERVAL",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "Config",
    "ConfigError",
    "EmailConfig",
    "Policy",
    "SiteConfig",
    "check_name",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "split_host_port",
]

if TYPE_CHECKING:
    from sentinel.history.settings import HistoryConfig, StatusPageConfig
    from sentinel.notify.channel_config import ChannelConfig

DEFAULT_CONFIG_PATH = "/etc/sentinel/sites.toml"
DEFAULT_LISTEN = "127.0.0.1:9798"
# Probes due within this long of each other start in one wake-up: each wake-up of an idle
# process costs about as much CPU as a probe's own work (bench/README.md: 0.97 -> 0.43 ms per
# probe at 1,000 sites / 10 s), and a start up to 50 ms late changes nothing for uptime.
DEFAULT_BATCH_WINDOW = 0.05
# Outage grouping is off by default: it delays every DOWN by group_wait, and a delay shorter than
# the probe interval (sites' probes are spread over it) would group little. README "Quiet alarms".
DEFAULT_GROUP_WAIT = 0.0
DEFAULT_GROUP_MIN = 3
MAX_GROUP_WAIT = 300.0  # an alarm is never held longer (the outbox's clock-jump guard allows it)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# A failure is confirmed (or cleared) this soon instead of waiting whole intervals: 3 failures at
# a 60 s interval took 2-3 minutes to alert, with retries they take ~20 s.
DEFAULT_RETRY_INTERVAL = 10.0
DEFAULT_MAX_REDIRECTS = 20  # as browsers (curl allows 50)
# The probe kind of each URL scheme (sentinel/probes/base.py registers one class per kind; a
# test holds the two together).
URL_SCHEMES = {"http": "http", "https": "http", "tcp": "tcp"}

DEFAULT_MAX_CONCURRENCY = 200
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0  # or half the interval, if that is less


# The section models say what a file may set; None = not set, and the resolved values below
# (`Config`, `EmailConfig`, `SiteConfig`, `Policy`) hold the defaults: each is written once.


# ---------------------------------------------------------------- resolved, immutable values


@dataclass(frozen=True, slots=True)
class Policy:
    """What the monitor needs to know about a site to decide on alerts."""

    failure_threshold: int = 3
    success_threshold: int = 1
    remind_every: float = 4 * 3600.0
    tls_expiry_warning: float = 14 * 86400.0
    # After a failed probe, until the site is DOWN or passes again: probe this often (PENDING).
    retry_interval: float = DEFAULT_RETRY_INTERVAL
    # FLAPPING after this many UP<->DOWN changes within flap_window (0 = never); STABLE again
    # after flap_quiet without a change.
    flap_changes: int = 4
    flap_window: float = 3600.0
    flap_quiet: float = 1800.0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    kind: Literal["http", "tcp"]
    target: str  # the URL, or "host:port"
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    policy: Policy = Policy()
    expect_status: tuple[int, ...] | None = None  # None = any 2xx
    body_contains: str | None = None
    body_regex: str | None = None
    max_response_time: float | None = None
    tls_verify: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    follow_redirects: bool = True
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    latency_drift: bool = True
    ca_file: str | None = None  # PEM, added to the system trust store
    client_cert: str | None = None  # with client_key: a client certificate (mTLS)
    client_key: str | None = None
    connect_to: str | None = None  # "ADDRESS[:PORT]": connect there, keep the URL's host
    notify: tuple[str, ...] | None = None  # channel names; None = every channel
    fallback: str | None = None
    escalate_after: float | None = None
    watch: tuple[str, ...] = ()  # [[watch]] names of the local services it depends on

    def accepts_status(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status <= 299
        return status in self.expect_status

    @property
    def needs_body(self) -> bool:
        return self.body_contains is not None or self.body_regex is not None


@dataclass(frozen=True, slots=True)
class EmailConfig:
    sender: str
    recipients: tuple[str, ...]
    smtp_host: str = "localhost"
    smtp_port: int = 25
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str = ""
    password_file: str = ""
    timeout: float = 30.0
    outbox_limit: int = 1000
    tls_verify: bool = True
    ca_file: str = ""
    helo_name: str = ""  # EHLO name; default: the machine's fully qualified name


@dataclass(frozen=True, slots=True)
class Config:
    sites: tuple[SiteConfig, ...]
    listen: str = DEFAULT_LISTEN
    state_dir: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    user_agent: str = USER_AGENT
    batch_window: float = DEFAULT_BATCH_WINDOW  # probes due this close together start together
    precise_latency: bool = False  # plain-HTTP responses timed by the kernel's receive stamp
    email: EmailConfig | None = None
    source: str = ""  # the file it came from, for messages
    early: EarlyConfig | None = None  # [[watch]] and [host]: the early warnings
    maintenance: tuple[MaintenanceWindow, ...] = ()  # [[maintenance]]: alerts held meanwhile
    channels: tuple[ChannelConfig, ...] = ()  # [[channels]]: webhook, apprise, alertmanager
    # The status page's address as users reach it, linked from every alert: [status_page]
    # public_url, else the deprecated [sentinel] status_url.
    status_url: str | None = None
    notify: tuple[str, ...] | None = None  # [defaults] routing, for alerts not tied to a site
    fallback: str | None = None
    escalate_after: float | None = None
    heartbeats: tuple[HeartbeatConfig, ...] = ()  # [[heartbeats]]: pings from cron jobs
    history: HistoryConfig | None = None  # [history]; None only for a Config built by hand
    status_page: StatusPageConfig | None = None  # [status_page] and [sentinel] timezone
    group_wait: float = DEFAULT_GROUP_WAIT  # DOWNs/RECOVEREDs this close together: one alert
    group_min: int = DEFAULT_GROUP_MIN  # ... when at least this many (checks of one host: any)
    canaries: tuple[str, ...] = ()  # all failing = sentinel's own network is down
    web_config: str | None = None  # [sentinel] web_config: TLS and basic auth (sentinel.webauth)
    shard: Shard | None = None  # [sentinel] shard: None = probe every site
    deadman: DeadmanConfig | None = None  # [deadman]: pings to an outside dead man's switch

    def site(self, name: str) -> SiteConfig:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


# ---------------------------------------------------------------- parsing


def split_host_port(value: str, *, what: str) -> tuple[str, int]:
    """'host:port' or '[::1]:port' -> (host, port), with a clear error."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        example = "127.0.0.1:9798" if what == "listen" else "mail.example.org:587"
        raise ValueError(f"invalid {what} {value!r} (use host:port, e.g. {example})")
    port = int(port_text)
    if not 1 <= port <= 65535 and not (what == "listen" and port == 0):
        raise ValueError(f"invalid port {port} in {value!r} (1..65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if has_control(host) or " " in host:
        raise ValueError(f"invalid host in {value!r}")
    return host, port


_log = logging.getLogger("sentinel")
_DEPRECATIONS_LOGGED: set[str] = set()  # bounded: one entry per deprecated key


def deprecated_once(text: str) -> None:
    """A deprecated key still read: said once per process, not at every reload (also when the
    file is read by a child process, which hands its warnings back: sentinel.config_child)."""
    if text not in _DEPRECATIONS_LOGGED:
        _DEPRECATIONS_LOGGED.add(text)
        _log.warning("%s", text)


# ---------------------------------------------------------------- parsing (sentinel.parse)
# The file's validation lives in sentinel.parse, the one package that imports pydantic (~20 MiB
# resident); these two import it on first use, so a process that never parses never loads it.


def parse_config(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem found."""
    from sentinel.parse.file import parse_config as parse

    return parse(data, source)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError (never a traceback for user mistakes)."""
    from sentinel.parse.file import load_config as load

    return load(path)
