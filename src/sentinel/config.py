"""The configuration: TOML in, a frozen, fully resolved `Config` out, or a list of one-line errors.

Pure apart from `load_config` reading the file. Every error names the place it concerns
(`sites[2] "blog": interval: ...`) so a user can fix a file without reading a traceback.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from sentinel.early.config import EarlyConfig
    from sentinel.history.settings import HistoryConfig, StatusPageConfig

DEFAULT_CONFIG_PATH = "/etc/sentinel/sites.toml"
DEFAULT_LISTEN = "127.0.0.1:9798"
# Probes due within this long of each other start in one wake-up: each wake-up of an idle
# process costs about as much CPU as a probe's own work (bench/README.md: 0.97 -> 0.43 ms per
# probe at 1,000 sites / 10 s), and a start up to 50 ms late changes nothing for uptime.
DEFAULT_BATCH_WINDOW = 0.05
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

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
# Control characters would break log lines, email headers and metric labels.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SITE_NAME_RE = re.compile("^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,100}$")


def check_name(value: str) -> str:
    """A site's or a watch's name: it goes into email subjects, log lines and metric labels, so
    no control characters (C0, C1) and no Unicode line breaks that could split them."""
    if not value.strip():
        raise ValueError("must not be empty")
    if not _SITE_NAME_RE.match(value):
        raise ValueError("must be 1-100 characters without control characters")
    return value


class ConfigError(Exception):
    """An invalid configuration; `errors` holds one human-readable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


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


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
StatusList = Annotated[tuple[int, ...] | None, BeforeValidator(_expect_status)]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo must never silently disable a check.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class SentinelSection(_Strict):
    listen: str = DEFAULT_LISTEN
    state_dir: str | None = None
    max_concurrency: int = Field(default=200, ge=1, le=100_000)
    user_agent: str = "sentinel-uptime/0.1"
    batch_window: Duration = DEFAULT_BATCH_WINDOW
    precise_latency: bool = False
    timezone: str = "UTC"  # the status page's (sentinel.history.settings checks it)

    @field_validator("batch_window")
    @classmethod
    def _check_batch_window(cls, value: float) -> float:
        if not 0 <= value <= 1.0:
            raise ValueError("must be between 0s and 1s")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value == "":
            return value
        split_host_port(value, what="listen")
        return value


class SiteOptions(_Strict):
    """Everything a site may set and `[defaults]` may provide. None = not set here."""

    interval: Duration | None = None
    timeout: Duration | None = None
    failure_threshold: int | None = Field(default=None, ge=1, le=1000)
    success_threshold: int | None = Field(default=None, ge=1, le=1000)
    remind_every: Duration | None = None
    expect_status: StatusList = None
    max_response_time: Duration | None = None
    tls_expiry_warning: Duration | None = None
    tls_verify: bool | None = None
    max_body_bytes: Size | None = None
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS", "PATCH", "DELETE"] | None = None
    headers: dict[str, str] | None = None
    follow_redirects: bool | None = None
    latency_drift: bool | None = None

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, val in (value or {}).items():
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", key):
                raise ValueError(f"invalid header name {key!r}")
            if _CONTROL_RE.search(val):
                raise ValueError(f"header {key!r} contains a control character")
        return value


class SiteSection(SiteOptions):
    name: str
    url: str | None = None
    tcp: str | None = None
    body_contains: str | None = None
    body_regex: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if _CONTROL_RE.search(value) or " " in value:
            raise ValueError(f"invalid URL {value!r} (spaces or control characters)")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"invalid URL {value!r} (must start with http:// or https://)")
        if not parts.hostname:
            raise ValueError(f"invalid URL {value!r} (no host)")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid URL {value!r} (bad port)") from exc
        if port == 0:
            raise ValueError(f"invalid URL {value!r} (bad port)")
        return value

    @field_validator("tcp")
    @classmethod
    def _check_tcp(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value, what="tcp")
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
        if self.tcp is not None and (self.body_contains or self.body_regex):
            raise ValueError("body_contains/body_regex need an HTTP check (url), not tcp")
        return self


class EmailSection(_Strict):
    from_: str = Field(alias="from")
    to: list[str]
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str = ""
    password_file: str = ""
    timeout: Duration = 30.0
    outbox_limit: int = Field(default=1000, ge=1, le=1_000_000)

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
    if _CONTROL_RE.search(value) or "@" not in value:
        raise ValueError(f"invalid email address {value!r}")


class FileSection(_Strict):
    sentinel: SentinelSection = SentinelSection()
    defaults: SiteOptions = SiteOptions()
    email: EmailSection | None = None
    sites: list[dict[str, Any]] = Field(default_factory=list)
    # Early-warning sections, validated by sentinel.early.config (keeps the core small).
    watch: list[dict[str, Any]] = Field(default_factory=list)
    host: dict[str, Any] | None = None
    # History and status page, validated by sentinel.history.settings.
    history: dict[str, Any] | None = None
    status_page: dict[str, Any] | None = None


# ---------------------------------------------------------------- resolved, immutable values


@dataclass(frozen=True, slots=True)
class Policy:
    """What the monitor needs to know about a site to decide on alerts."""

    failure_threshold: int = 3
    success_threshold: int = 1
    remind_every: float = 4 * 3600.0
    tls_expiry_warning: float = 14 * 86400.0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    kind: Literal["http", "tcp"]
    target: str  # the URL, or "host:port"
    interval: float = 60.0
    timeout: float = 10.0
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
    latency_drift: bool = True

    @property
    def status_ok(self) -> tuple[int, ...] | None:
        return self.expect_status

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


@dataclass(frozen=True, slots=True)
class Config:
    sites: tuple[SiteConfig, ...]
    listen: str = DEFAULT_LISTEN
    state_dir: str | None = None
    max_concurrency: int = 200
    user_agent: str = "sentinel-uptime/0.1"
    batch_window: float = DEFAULT_BATCH_WINDOW  # probes due this close together start together
    precise_latency: bool = False  # plain-HTTP responses timed by the kernel's receive stamp
    email: EmailConfig | None = None
    source: str = ""  # the file it came from, for messages
    early: EarlyConfig | None = None  # [[watch]] and [host]: the early warnings
    history: HistoryConfig | None = None  # [history]; None only for a Config built by hand
    status_page: StatusPageConfig | None = None  # [status_page] and [sentinel] timezone

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
    if _CONTROL_RE.search(host) or " " in host:
        raise ValueError(f"invalid host in {value!r}")
    return host, port


def _format_loc(loc: tuple[int | str, ...], *, top_level: bool) -> str:
    """('email', 'to', 0) -> 'email: to[0]'; inside a site ('interval',) -> 'interval'."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    if top_level and len(parts) > 1:
        return f"{parts[0]}: {_format_loc(tuple(parts[1:]), top_level=False)}"
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _pydantic_errors(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = _format_loc(err["loc"], top_level=not prefix)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "required"
        loc = _CONTROL_RE.sub("?", loc)  # a quoted TOML key may hold a newline
        where = f"{prefix}: {loc}" if prefix and loc else (prefix or loc)
        lines.append(f"{where}: {msg}" if where else msg)
    return lines


def _site_label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    if isinstance(name, str) and name:
        return f"sites[{index}] {_quote(name)}"
    return f"sites[{index}]"


def _quote(text: str) -> str:
    return '"' + _CONTROL_RE.sub("?", text).replace('"', '\\"') + '"'


def parse_config(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem found."""
    errors: list[str] = []
    raw_sites = data.get("sites", [])
    top = {k: v for k, v in data.items() if k != "sites"}
    try:
        file_section = FileSection.model_validate(top)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, ""))
        file_section = None

    if not isinstance(raw_sites, list) or not all(isinstance(s, dict) for s in raw_sites):
        errors.append("sites: must be an array of tables ([[sites]] entries)")
        raw_sites = []

    defaults = file_section.defaults if file_section else SiteOptions()
    default_values = defaults.model_dump(exclude_none=True)
    sites: list[SiteConfig] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_sites):
        label = _site_label(index, raw)
        try:
            section = SiteSection.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, label))
            continue
        merged = {**default_values, **section.model_dump(exclude_none=True)}
        site, site_errors = _resolve_site(merged, label)
        errors.extend(site_errors)
        if site is None:
            continue
        if site.name in seen:
            errors.append(f"{label}: name: duplicate site name (also sites[{seen[site.name]}])")
            continue
        seen[site.name] = index
        sites.append(site)

    early = None
    if file_section is not None:
        # Imported here: sentinel.early.config builds on this module's helpers.
        from sentinel.early.config import parse_early

        try:
            early = parse_early(file_section.watch, file_section.host)
        except ConfigError as exc:
            errors.extend(exc.errors)
        from sentinel.history.settings import parse_history

        try:
            history, status_page = parse_history(
                file_section.history, file_section.status_page, file_section.sentinel.timezone
            )
        except ConfigError as exc:
            errors.extend(exc.errors)

    if errors or file_section is None:
        raise ConfigError(errors or ["invalid configuration"])

    email = None
    if file_section.email is not None:
        e = file_section.email
        email = EmailConfig(
            sender=e.from_,
            recipients=tuple(e.to),
            smtp_host=e.smtp_host,
            smtp_port=e.smtp_port,
            security=e.security,
            username=e.username,
            password_file=e.password_file,
            timeout=e.timeout,
            outbox_limit=e.outbox_limit,
        )
    s = file_section.sentinel
    return Config(
        sites=tuple(sites),
        listen=s.listen,
        state_dir=s.state_dir,
        max_concurrency=s.max_concurrency,
        user_agent=s.user_agent,
        batch_window=s.batch_window,
        precise_latency=s.precise_latency,
        email=email,
        source=source,
        early=early,
        history=history,
        status_page=status_page,
    )


def _resolve_site(values: dict[str, Any], label: str) -> tuple[SiteConfig | None, list[str]]:
    errors = []
    interval = values.get("interval", 60.0)
    timeout = values.get("timeout", min(10.0, interval / 2))
    if interval < 1.0:
        errors.append(f"{label}: interval: must be at least 1s")
    if timeout <= 0:
        errors.append(f"{label}: timeout: must be above 0s")
    elif timeout >= interval:
        errors.append(
            f"{label}: timeout: must be below interval ({format_duration(timeout)} >= "
            f"{format_duration(interval)})"
        )
    max_rt = values.get("max_response_time")
    if max_rt is not None and max_rt <= 0:
        errors.append(f"{label}: max_response_time: must be above 0s")
    if errors:
        return None, errors
    policy = Policy(
        failure_threshold=values.get("failure_threshold", 3),
        success_threshold=values.get("success_threshold", 1),
        remind_every=values.get("remind_every", 4 * 3600.0),
        tls_expiry_warning=values.get("tls_expiry_warning", 14 * 86400.0),
    )
    is_http = values.get("url") is not None
    site = SiteConfig(
        name=values["name"],
        kind="http" if is_http else "tcp",
        target=values["url"] if is_http else values["tcp"],
        interval=interval,
        timeout=timeout,
        policy=policy,
        expect_status=values.get("expect_status"),
        body_contains=values.get("body_contains"),
        body_regex=values.get("body_regex"),
        max_response_time=max_rt,
        tls_verify=values.get("tls_verify", True),
        max_body_bytes=values.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        method=values.get("method", "GET"),
        headers=tuple(sorted((values.get("headers") or {}).items())),
        follow_redirects=values.get("follow_redirects", True),
        latency_drift=values.get("latency_drift", True),
    )
    return site, []


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
