"""`[[channels]]` and the sites routing to them, resolved to
`sentinel.notify.channel_config.ChannelConfig`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator, model_validator

from sentinel.config import SiteConfig
from sentinel.config_units import ConfigError, check_name
from sentinel.notify.channel_config import (
    DEFAULT_RESEND_EVERY,
    EMAIL,
    MAX_CHANNELS,
    MAX_URLS,
    ChannelConfig,
    ChannelType,
    apprise_installed,
)
from sentinel.parse.file import SiteOptions, site_label
from sentinel.parse.units import Duration, StrictSection, pydantic_errors
from sentinel.sanitize import has_control, quote


def _http_url(value: str) -> str:
    if has_control(value) or " " in value:
        raise ValueError(f"invalid URL {value!r} (spaces or control characters)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {value!r} (use http://host/... or https://host/...)")
    return value


class ChannelSection(StrictSection):
    name: str
    type: ChannelType
    url: str | None = None
    urls: list[str] | None = None
    secret_file: str | None = None
    resend_every: Duration | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        check_name(value)
        if value == EMAIL:
            raise ValueError('"email" is the [email] section\'s channel; pick another name')
        return value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("at least one URL is needed")
            if len(value) > MAX_URLS:
                raise ValueError(f"at most {MAX_URLS} URLs")
            for url in value:
                if has_control(url):
                    raise ValueError("a URL contains a control character")
        return value

    @model_validator(mode="after")
    def _fields_fit_type(self) -> ChannelSection:
        kind = self.type
        if kind == "webhook":
            if self.url is None or self.urls is not None:
                raise ValueError('a webhook needs url = "https://..." (one URL, not urls)')
            _http_url(self.url)
        else:
            if self.urls is None or self.url is not None:
                raise ValueError(f'{kind} needs urls = ["..."] (a list, not url)')
            if kind == "alertmanager":
                for url in self.urls:
                    _http_url(url)
        if self.secret_file is not None and kind != "webhook":
            raise ValueError("secret_file: only a webhook signs its body")
        if self.resend_every is not None:
            if kind != "alertmanager":
                raise ValueError("resend_every: only alertmanager resends firing alerts")
            if not 1.0 <= self.resend_every <= 86400.0:
                raise ValueError("resend_every: must be between 1s and 1d")
        return self


def _channel_label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    if isinstance(name, str) and name:
        return f"channels[{index}] {quote(name)}"
    return f"channels[{index}]"


def parse_channels(raw: Sequence[Mapping[str, Any]]) -> tuple[ChannelConfig, ...]:
    """Validate the `[[channels]]` tables; raises ConfigError with one line per problem."""
    errors: list[str] = []
    channels: list[ChannelConfig] = []
    seen: dict[str, int] = {}
    if len(raw) > MAX_CHANNELS:
        raise ConfigError([f"channels: at most {MAX_CHANNELS} channels"])
    for index, entry in enumerate(raw):
        label = _channel_label(index, entry)
        try:
            section = ChannelSection.model_validate(entry)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, label))
            continue
        if section.name in seen:
            other = seen[section.name]
            errors.append(f"{label}: name: duplicate channel name (also channels[{other}])")
            continue
        if section.type == "apprise" and not apprise_installed():
            errors.append(
                f"{label}: type: apprise needs the optional extra: pip install 'sentinel[apprise]'"
            )
            continue
        seen[section.name] = index
        urls = (section.url,) if section.url is not None else tuple(section.urls or ())
        channels.append(
            ChannelConfig(
                name=section.name,
                type=section.type,
                urls=urls,
                secret_file=section.secret_file,
                resend_every=section.resend_every or DEFAULT_RESEND_EVERY,
            )
        )
    if errors:
        raise ConfigError(errors)
    return tuple(channels)


def _check_one(
    where: str, options: SiteOptions | SiteConfig, known: Sequence[str], errors: list[str]
) -> None:
    names = ", ".join(known) if known else "none configured"
    for name in options.notify or ():
        if name not in known:
            errors.append(f"{where}notify: unknown channel {quote(name)} (channels: {names})")
    if options.notify is not None and not options.notify:
        errors.append(f"{where}notify: name at least one channel")
    if options.fallback is not None and options.fallback not in known:
        errors.append(
            f"{where}fallback: unknown channel {quote(options.fallback)} (channels: {names})"
        )
    if options.escalate_after is not None and options.escalate_after < 1.0:
        errors.append(f"{where}escalate_after: must be at least 1s")


def check_routes(
    channels: Sequence[ChannelConfig],
    has_email: bool,
    defaults: SiteOptions,
    raw_sites: Sequence[Mapping[str, Any]],
    sites: Sequence[SiteConfig],
) -> None:
    """Every channel named in `notify`/`fallback` must exist; raises ConfigError otherwise."""
    known = ([EMAIL] if has_email else []) + [c.name for c in channels]
    errors: list[str] = []
    _check_one("defaults: ", defaults, known, errors)
    raw_by_name = {raw.get("name"): (index, raw) for index, raw in enumerate(raw_sites)}
    for site in sites:
        index, own = raw_by_name[site.name]
        if not any(key in own for key in ("notify", "fallback", "escalate_after")):
            continue  # inherited from [defaults], already checked
        _check_one(f"{site_label(index, own)}: ", site, known, errors)
    if errors:
        raise ConfigError(errors)
