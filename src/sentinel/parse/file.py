"""The config file: TOML in, a frozen, fully resolved `sentinel.config.Config` out, or a list of
one-line errors.

Pure apart from `load_config` reading the file. Every error names the place it concerns
(`sites[2] "blog": interval: ...`) so a user can fix a file without reading a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from sentinel.config import (
    DEFAULT_INTERVAL,
    DEFAULT_LISTEN,
    DEFAULT_RETRY_INTERVAL,
    DEFAULT_TIMEOUT,
    MAX_GROUP_WAIT,
    URL_SCHEMES,
    Config,
    EmailConfig,
    Policy,
    SiteConfig,
    deprecated_once,
    split_host_port,
)
from sentinel.config_units import ConfigError, check_name, format_duration
from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.hostnames import ascii_host, parse_connect_to
from sentinel.maintenance import MaintenanceWindow
from sentinel.notify.channel_config import ChannelConfig
from sentinel.parse.deadman import DeadmanSection
from sentinel.parse.early import parse_early
from sentinel.parse.heartbeats import parse_heartbeats
from sentinel.parse.maintenance import parse_maintenance
from sentinel.parse.units import Duration, Size, StrictSection, pydantic_errors
from sentinel.sanitize import has_control, quote
from sentinel.shard import parse_shard
from sentinel.tlsfiles import check_ca_file, check_client_pair, check_readable


def _expect_status(value: object) -> tuple[int, ...] | None:
    """`[200, 204]`, `200`, "2xx" or ["2xx", 301] -> the accepted codes."""
    items: list[object] = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError("expect_status must list at least one status")
    codes: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"invalid status {item!r}")
        if isinstance(item, int):
            if not 100 <= item <= 599:
                raise ValueError(f"invalid status {item} (100..599)")
            codes.append(item)
        elif isinstance(item, str) and re.fullmatch(r"[1-5]xx", item.strip().lower()):
            base = int(item.strip()[0]) * 100
            codes.extend(range(base, base + 100))
        elif isinstance(item, str) and item.strip().isdigit():
            codes.append(int(item))
        else:
            raise ValueError(f'invalid status {item!r} (use 200, [200, 301] or "2xx")')
    return tuple(sorted(set(codes)))


StatusList = Annotated[tuple[int, ...] | None, BeforeValidator(_expect_status)]


class SentinelSection(StrictSection):
    listen: str | None = None
    state_dir: str | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    user_agent: str | None = None
    batch_window: Duration | None = None
    precise_latency: bool | None = None
    # Deprecated: [status_page] public_url is the one (this one is still read: logged once).
    status_url: str | None = None
    # IANA name of the status page's times (checked by sentinel.history.settings; UTC if unset)
    timezone: str | None = None
    group_wait: Duration | None = None  # outage grouping (sentinel.notify.grouping); 0 = off
    group_min: int | None = Field(default=None, ge=2, le=10_000)
    canaries: list[str] | None = None  # network canaries (sentinel.canary)

    @field_validator("group_wait")
    @classmethod
    def _check_group_wait(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= MAX_GROUP_WAIT:
            raise ValueError(f"must be between 0s (off) and {MAX_GROUP_WAIT:g}s")
        return value

    @field_validator("canaries")
    @classmethod
    def _check_canaries(cls, value: list[str] | None) -> list[str] | None:
        for url in value or ():
            try:  # the same URLs a site takes (http, https, tcp)
                SiteSection(name="canary", url=url)
            except ValidationError as exc:
                first = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(first) from None
        return value

    # TLS and basic auth of the web server: an exporter-toolkit web config (sentinel.webauth,
    # read at start and at each reload)
    web_config: str | None = None

    @field_validator("web_config")
    @classmethod
    def _check_web_config(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise ValueError("must be an absolute path")
        return value

    # "k/n": probe only this shard's sites (sentinel.shard); written back as "k/n"
    shard: Annotated[str, BeforeValidator(lambda v: str(parse_shard(v)))] | None = None

    @field_validator("batch_window")
    @classmethod
    def _check_batch_window(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1.0:
            raise ValueError("must be between 0s and 1s")
        return value

    @field_validator("status_url")
    @classmethod
    def _check_status_url(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith(("http://", "https://")) or has_control(value)
        ):
            raise ValueError(f"invalid URL {value!r} (must start with http:// or https://)")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value:
            split_host_port(value, what="listen")
        return value


class SiteOptions(StrictSection):
    """Everything a site may set and `[defaults]` may provide. None = not set here."""

    interval: Duration | None = None
    timeout: Duration | None = None
    failure_threshold: int | None = Field(default=None, ge=1, le=1000)
    success_threshold: int | None = Field(default=None, ge=1, le=1000)
    remind_every: Duration | None = None
    retry_interval: Duration | None = None
    flap_changes: int | None = Field(default=None, ge=0, le=100)
    flap_window: Duration | None = None
    flap_quiet: Duration | None = None
    expect_status: StatusList = None
    max_response_time: Duration | None = None
    tls_expiry_warning: Duration | None = None
    tls_verify: bool | None = None
    max_body_bytes: Size | None = None
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE"] | None = None
    headers: dict[str, str] | None = None
    follow_redirects: bool | None = None
    max_redirects: int | None = Field(default=None, ge=0, le=100)
    latency_drift: bool | None = None
    # TLS and connection options (checked by sentinel.tlsfiles / sentinel.hostnames).
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    connect_to: str | None = None

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        return None if value is None else check_ca_file(value)

    @field_validator("client_cert", "client_key")
    @classmethod
    def _check_client_file(cls, value: str | None) -> str | None:
        return None if value is None else check_readable(value)

    @field_validator("connect_to")
    @classmethod
    def _check_connect_to(cls, value: str | None) -> str | None:
        if value is not None:
            parse_connect_to(value)
        return value

    # Alert routing (checked against the channels by sentinel.notify.channel_config).
    notify: list[str] | None = None
    fallback: str | None = None
    escalate_after: Duration | None = None

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, val in (value or {}).items():
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", key):
                raise ValueError(f"invalid header name {key!r}")
            if has_control(val):
                raise ValueError(f"header {key!r} contains a control character")
        return value


class SiteSection(SiteOptions):
    name: str
    url: str | None = None
    tcp: str | None = None
    body_contains: str | None = None
    body_regex: str | None = None
    # Local services the site depends on: names of [[watch]] entries (checked in parse_config);
    # its DOWN email then tells their restarts, OOM kills and memory trend.
    watch: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if has_control(value) or " " in value:
            raise ValueError(f"invalid URL {value!r} (spaces or control characters)")
        parts = urlsplit(value)
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(f"invalid URL {value!r} (must start with http://, https:// or tcp://)")
        if URL_SCHEMES[parts.scheme] == "tcp":
            if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
                raise ValueError(f"invalid URL {value!r} (use tcp://HOST:PORT)")
            split_host_port(parts.netloc, what="tcp URL")
            return value
        if not parts.hostname:
            raise ValueError(f"invalid URL {value!r} (no host)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid URL {value!r} (bad port)") from exc
        if port == 0:
            raise ValueError(f"invalid URL {value!r} (bad port)")
        ascii_host(parts.hostname)  # a non-ASCII host must be valid IDNA 2008
        return value

    @field_validator("tcp")
    @classmethod
    def _check_tcp(cls, value: str | None) -> str | None:
        if value is not None:
            ascii_host(split_host_port(value, what="tcp")[0])
        return value

    @field_validator("body_regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _url_xor_tcp(self) -> SiteSection:
        if (self.url is None) == (self.tcp is None):
            raise ValueError("set exactly one of url (an HTTP check) or tcp (a TCP connect check)")
        is_tcp = self.tcp is not None or _url_kind(self.url) == "tcp"
        if is_tcp and (self.body_contains or self.body_regex):
            raise ValueError("body_contains/body_regex need an HTTP check (url), not tcp")
        return self


class EmailSection(StrictSection):
    from_: str = Field(alias="from")
    to: list[str]
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] | None = None
    username: str | None = None
    password_file: str | None = None
    timeout: Duration | None = None
    outbox_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    tls_verify: bool | None = None
    ca_file: str | None = None
    helo_name: str | None = None

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", value):
            raise ValueError(f"invalid host name {value!r} (e.g. mail.example.org)")
        return value

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one recipient is needed")
        for address in value:
            _check_address(address)
        return value

    @field_validator("from_")
    @classmethod
    def _check_from(cls, value: str) -> str:
        _check_address(value)
        return value


def _check_address(value: str) -> None:
    if has_control(value) or "@" not in value:
        raise ValueError(f"invalid email address {value!r}")


class FileSection(StrictSection):
    """The file's sections but [[sites]], which `parse_config` validates entry by entry (so
    each error names its site)."""

    sentinel: SentinelSection = SentinelSection()
    defaults: SiteOptions = SiteOptions()
    email: EmailSection | None = None
    # Early-warning sections, validated by sentinel.early.config (keeps the core small).
    watch: list[dict[str, Any]] = Field(default_factory=list)
    host: dict[str, Any] | None = None
    # Validated by sentinel.maintenance (it needs the site names).
    maintenance: list[dict[str, Any]] = Field(default_factory=list)
    # [[channels]], validated by sentinel.notify.channel_config.
    channels: list[dict[str, Any]] = Field(default_factory=list)
    # [[heartbeats]], validated by sentinel.heartbeats.config.
    heartbeats: list[dict[str, Any]] = Field(default_factory=list)
    # History and status page, validated by sentinel.history.settings.
    history: dict[str, Any] | None = None
    status_page: dict[str, Any] | None = None
    deadman: DeadmanSection | None = None  # an outside dead man's switch (sentinel.deadman)


def site_label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    if isinstance(name, str) and name:
        return f"sites[{index}] {quote(name)}"
    return f"sites[{index}]"


def parse_config(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem found."""
    errors: list[str] = []
    raw_sites = data.get("sites", [])
    top = {k: v for k, v in data.items() if k != "sites"}
    try:
        file_section = FileSection.model_validate(top)
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc, ""))
        file_section = None

    if not isinstance(raw_sites, list) or not all(isinstance(s, dict) for s in raw_sites):
        errors.append("sites: must be an array of tables ([[sites]] entries)")
        raw_sites = []

    defaults = file_section.defaults if file_section else SiteOptions()
    default_values = defaults.model_dump(exclude_none=True)
    sites: list[SiteConfig] = []
    seen: dict[str, int] = {}
    policies: dict[Policy, Policy] = {}
    for index, raw in enumerate(raw_sites):
        label = site_label(index, raw)
        try:
            section = SiteSection.model_validate(raw)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, label))
            continue
        merged = {**default_values, **section.model_dump(exclude_none=True)}
        site, site_errors = _resolve_site(merged, label, policies)
        errors.extend(site_errors)
        if site is None:
            continue
        if site.name in seen:
            errors.append(f"{label}: name: duplicate site name (also sites[{seen[site.name]}])")
            continue
        seen[site.name] = index
        sites.append(site)

    early = None
    history: HistoryConfig | None = None
    status_page: StatusPageConfig | None = None
    if file_section is not None:
        try:
            early = parse_early(file_section.watch, file_section.host)
        except ConfigError as exc:
            errors.extend(exc.errors)
        from sentinel.parse.history import parse_history

        try:
            history, status_page = parse_history(
                file_section.history,
                file_section.status_page,
                file_section.sentinel.timezone or "UTC",
            )
        except ConfigError as exc:
            errors.extend(exc.errors)

    watch_names = {w.name for w in early.watches} if early is not None else set()
    for index, site in enumerate(sites):
        for name in site.watch:
            if name not in watch_names:
                known = ", ".join(sorted(watch_names)) or "none"
                errors.append(
                    f"sites[{seen.get(site.name, index)}] {quote(site.name)}: watch: "
                    f"{quote(name)} is not a [[watch]] name (known: {known})"
                )

    heartbeats: tuple[HeartbeatConfig, ...] = ()
    if file_section is not None:
        try:
            listen = file_section.sentinel.listen
            heartbeats = parse_heartbeats(
                file_section.heartbeats, listen=DEFAULT_LISTEN if listen is None else listen
            )
        except ConfigError as exc:
            errors.extend(exc.errors)

    maintenance: tuple[MaintenanceWindow, ...] = ()
    if file_section is not None and file_section.maintenance:
        # `sites = [...]` names sites and heartbeats alike (a name both have covers both).
        names = {*seen, *(beat.name for beat in heartbeats)}
        try:
            maintenance = parse_maintenance(file_section.maintenance, names)
        except ConfigError as exc:
            errors.extend(exc.errors)

    channels: tuple[ChannelConfig, ...] = ()
    if file_section is not None:
        from sentinel.parse.channels import check_routes, parse_channels

        try:
            channels = parse_channels(file_section.channels)
            check_routes(channels, file_section.email is not None, defaults, raw_sites, sites)
        except ConfigError as exc:
            errors.extend(exc.errors)

    if errors or file_section is None:
        raise ConfigError(errors or ["invalid configuration"])

    status_url = file_section.sentinel.status_url
    if status_url is not None:
        deprecated_once(
            "[sentinel] status_url is deprecated: set [status_page] public_url instead"
            + (" (public_url is set and wins)" if status_page and status_page.public_url else "")
        )
        if status_page is not None and not status_page.public_url:
            status_page = replace(status_page, public_url=status_url)
    if status_page is not None and status_page.public_url:
        status_url = status_page.public_url

    email = None
    if file_section.email is not None:
        e = file_section.email
        email = EmailConfig(
            sender=e.from_,
            recipients=tuple(e.to),
            **e.model_dump(exclude_none=True, exclude={"from_", "to"}),
        )
    return Config(
        sites=tuple(sites),
        email=email,
        source=source,
        early=early,
        maintenance=maintenance,
        heartbeats=heartbeats,
        **file_section.sentinel.model_dump(
            exclude_none=True, exclude={"timezone", "shard", "canaries", "status_url"}
        ),
        status_url=status_url,
        canaries=tuple(file_section.sentinel.canaries or ()),
        shard=None if (shard := file_section.sentinel.shard) is None else parse_shard(shard),
        deadman=None if file_section.deadman is None else file_section.deadman.resolve(),
        channels=channels,
        notify=None if defaults.notify is None else tuple(defaults.notify),
        fallback=defaults.fallback,
        escalate_after=defaults.escalate_after,
        history=history,
        status_page=status_page,
    )


def _resolve_site(
    values: dict[str, Any], label: str, policies: dict[Policy, Policy]
) -> tuple[SiteConfig | None, list[str]]:
    errors = []
    interval = values.get("interval", DEFAULT_INTERVAL)
    timeout = values.get("timeout", min(DEFAULT_TIMEOUT, interval / 2))
    if interval < 1.0:
        errors.append(f"{label}: interval: must be at least 1s")
    if timeout <= 0:
        errors.append(f"{label}: timeout: must be above 0s")
    elif timeout >= interval:
        errors.append(
            f"{label}: timeout: must be below interval ({format_duration(timeout)} >= "
            f"{format_duration(interval)})"
        )
    retry = values.get("retry_interval", min(DEFAULT_RETRY_INTERVAL, interval))
    if retry < 1.0:
        errors.append(f"{label}: retry_interval: must be at least 1s")
    flap_changes = values.get("flap_changes", 4)
    if flap_changes == 1:
        errors.append(f"{label}: flap_changes: must be 0 (off) or at least 2")
    for key in ("flap_window", "flap_quiet"):
        if values.get(key, 1.0) <= 0:
            errors.append(f"{label}: {key}: must be above 0s")
    max_rt = values.get("max_response_time")
    if max_rt is not None and max_rt <= 0:
        errors.append(f"{label}: max_response_time: must be above 0s")
    pair_error = check_client_pair(values.get("client_cert"), values.get("client_key"))
    if pair_error is not None:
        errors.append(f"{label}: {pair_error}")
    if errors:
        return None, errors
    # Only what the file sets is passed: the defaults are those of Policy and SiteConfig. A
    # field of SiteOptions that SiteConfig (or Policy) has by the same name needs no line here.
    policy = Policy(**{k: values[k] for k in _POLICY_FIELDS if k in values})
    # Retries never come less often than regular probes; the default is 10s or the interval.
    policy = replace(policy, retry_interval=min(retry, interval))
    # Sites with equal policies share one object (pickling keeps it shared for the daemon): a
    # policy each is ~0.2 KiB a site the daemon keeps for nothing.
    policy = policies.setdefault(policy, policy)
    url = values.get("url")
    kind = "tcp" if url is None else _url_kind(url)
    target = values["tcp"] if url is None else url
    if url is not None and kind == "tcp":
        target = urlsplit(url).netloc  # the tcp probe takes "host:port"
    site = SiteConfig(
        **{k: values[k] for k in _SITE_FIELDS if k in values},
        kind=kind,
        target=target,
        interval=interval,
        timeout=timeout,
        policy=policy,
        headers=tuple(sorted((values.get("headers") or {}).items())),
        notify=None if values.get("notify") is None else tuple(values["notify"]),
        watch=tuple(values.get("watch") or ()),
    )
    return site, []


_POLICY_FIELDS = frozenset(f.name for f in fields(Policy))


_SITE_FIELDS = frozenset(f.name for f in fields(SiteConfig)) - {
    "kind",
    "target",
    "interval",
    "timeout",
    "policy",
    "headers",
    "notify",  # a tuple, from the file's list
    "watch",  # a tuple, from the file's list
}


def _url_kind(url: str | None) -> Literal["http", "tcp"]:
    """The probe kind of a (validated) URL; "http" for None."""
    scheme = urlsplit(url).scheme if url else "http"
    return "tcp" if URL_SCHEMES.get(scheme) == "tcp" else "http"


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError (never a traceback for user mistakes)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{p}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{p}: permission denied"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read ({exc.strerror})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already reads "... (at line L, column C)".
        raise ConfigError([f"{p}: TOML syntax error: {exc}"]) from None
    try:
        return parse_config(data, source=str(p))
    except ConfigError as exc:
        raise ConfigError([f"{p}: {line}" for line in exc.errors]) from None
