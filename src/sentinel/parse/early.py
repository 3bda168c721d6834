"""`[[watch]]` and `[host]`: the early warnings sections, resolved to `sentinel.early.config`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from sentinel.config_units import ConfigError, check_name, format_duration
from sentinel.early.config import (
    DEFAULT_CGROUP_ROOT,
    DEFAULT_DISK_MIN_GROWTH,
    DEFAULT_MIN_GROWTH,
    DEFAULT_SAMPLE_EVERY,
    DEFAULT_STEAL_WARNING,
    DEFAULT_WARN_WITHIN,
    DEFAULT_WINDOW,
    MAX_WINDOW,
    MIN_SAMPLE_EVERY,
    SELF_WATCH_NAME,
    UNIT_RE,
    EarlyConfig,
    HostConfig,
    WatchConfig,
    default_self_watch,
    parse_rate,
    parse_ratio,
)
from sentinel.early.trend import MIN_BUCKETS, MIN_SAMPLES_PER_BUCKET
from sentinel.parse.units import Duration, Size, StrictSection, pydantic_errors
from sentinel.sanitize import has_control, quote

Rate = Annotated[float, BeforeValidator(parse_rate)]


Ratio = Annotated[float, BeforeValidator(parse_ratio)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be above 0s")
    return value


class WatchSection(StrictSection):
    name: str
    unit: str | None = None
    pid_file: str | None = None
    process: str | None = None
    sample_every: Duration = DEFAULT_SAMPLE_EVERY
    window: Duration = DEFAULT_WINDOW
    warn_within: Duration = DEFAULT_WARN_WITHIN
    min_growth: Rate = DEFAULT_MIN_GROWTH
    limit: Size | None = None
    cgroup_root: str = DEFAULT_CGROUP_ROOT

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)  # the same rule as site names

    @field_validator("unit")
    @classmethod
    def _check_unit(cls, value: str | None) -> str | None:
        if value is not None and (not UNIT_RE.match(value) or ".." in value.split("/")):
            raise ValueError(
                f'invalid unit {value!r} (use a systemd unit name such as "web.service")'
            )
        return value

    @field_validator("pid_file", "cgroup_root")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or has_control(value)):
            raise ValueError(f"invalid path {value!r} (must be absolute)")
        return value

    @field_validator("process")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("must not be empty")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @field_validator("sample_every")
    @classmethod
    def _check_sample_every(cls, value: float) -> float:
        if value < MIN_SAMPLE_EVERY:
            raise ValueError(f"must be at least {format_duration(MIN_SAMPLE_EVERY)}")
        return value

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: float) -> float:
        if value > MAX_WINDOW:
            raise ValueError(f"must be at most {format_duration(MAX_WINDOW)}")
        return _positive(value)

    @field_validator("warn_within")
    @classmethod
    def _check_warn_within(cls, value: float) -> float:
        return _positive(value)

    @field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be above 0 bytes")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> WatchSection:
        given = [k for k in ("unit", "pid_file", "process") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                'set exactly one of unit ("x.service"), pid_file ("/run/x.pid") or '
                "process (a regex on the command line)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        return self


class HostSection(StrictSection):
    disks: list[str] = Field(default_factory=list)
    disk_sample_every: Duration = DEFAULT_SAMPLE_EVERY
    disk_window: Duration = DEFAULT_WINDOW
    disk_warn_within: Duration = DEFAULT_WARN_WITHIN
    disk_min_growth: Rate = DEFAULT_DISK_MIN_GROWTH
    cpu_steal_warning: Ratio = DEFAULT_STEAL_WARNING
    cpu_steal_sample_every: Duration = DEFAULT_SAMPLE_EVERY
    self_watch: bool = True

    @field_validator("disks")
    @classmethod
    def _check_disks(cls, value: list[str]) -> list[str]:
        for mount in value:
            if not mount.startswith("/") or has_control(mount):
                raise ValueError(f"invalid mount point {mount!r} (must be an absolute path)")
        if len(set(value)) != len(value):
            raise ValueError("lists a mount point twice")
        return value

    @field_validator("disk_sample_every", "cpu_steal_sample_every")
    @classmethod
    def _check_sample_every(cls, value: float) -> float:
        if value < MIN_SAMPLE_EVERY:
            raise ValueError(f"must be at least {format_duration(MIN_SAMPLE_EVERY)}")
        return value

    @field_validator("disk_window")
    @classmethod
    def _check_window(cls, value: float) -> float:
        if value > MAX_WINDOW:
            raise ValueError(f"must be at most {format_duration(MAX_WINDOW)}")
        return _positive(value)

    @field_validator("disk_warn_within")
    @classmethod
    def _check_warn_within(cls, value: float) -> float:
        return _positive(value)


def _window_errors(label: str, field_name: str, window: float, sample_every: float) -> list[str]:
    """The detector needs MIN_BUCKETS buckets of MIN_SAMPLES_PER_BUCKET samples in a window."""
    needed = MIN_BUCKETS * MIN_SAMPLES_PER_BUCKET
    if window + 1e-9 < needed * sample_every:
        return [
            f"{label}: {field_name}: must cover at least {needed} samples "
            f"({needed} x sample_every = {format_duration(needed * sample_every)})"
        ]
    return []


def _watch_label(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if isinstance(name, str) and name:
        return f"watch[{index}] {quote(name)}"
    return f"watch[{index}]"


def parse_early(
    watch: Sequence[Mapping[str, Any]] | None, host: Mapping[str, Any] | None
) -> EarlyConfig:
    """Validate `[[watch]]` and `[host]`. Raises ConfigError listing every problem found."""
    errors: list[str] = []
    watches: list[WatchConfig] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(watch or ()):
        label = _watch_label(index, raw)
        if not isinstance(raw, Mapping):
            errors.append(f"{label}: must be a table ([[watch]] entry)")
            continue
        name = raw.get("name")
        if isinstance(name, str):
            if name in seen:
                errors.append(f"{label}: name: duplicate watch name (also watch[{seen[name]}])")
                continue
            seen[name] = index
            if name == SELF_WATCH_NAME:
                errors.append(
                    f"{label}: name: {SELF_WATCH_NAME!r} is reserved for sentinel's own memory"
                )
                continue
        try:
            section = WatchSection.model_validate(dict(raw))
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, label))
            continue
        window_errors = _window_errors(label, "window", section.window, section.sample_every)
        errors.extend(window_errors)
        if window_errors:
            continue
        if section.unit is not None:
            source: Literal["unit", "pid_file", "process"] = "unit"
            target = section.unit
        elif section.pid_file is not None:
            source, target = "pid_file", section.pid_file
        else:
            source, target = "process", section.process or ""
        watches.append(
            WatchConfig(
                name=section.name,
                source=source,
                target=target,
                sample_every=section.sample_every,
                window=section.window,
                warn_within=section.warn_within,
                min_growth=section.min_growth,
                limit=section.limit,
                cgroup_root=section.cgroup_root,
            )
        )

    host_config = HostConfig()
    if host is not None:
        if not isinstance(host, Mapping):
            errors.append("host: must be a table ([host])")
        else:
            try:
                h = HostSection.model_validate(dict(host))
            except ValidationError as exc:
                errors.extend(pydantic_errors(exc, "host"))
            else:
                errors.extend(
                    _window_errors("host", "disk_window", h.disk_window, h.disk_sample_every)
                )
                host_config = HostConfig(
                    disks=tuple(h.disks),
                    disk_sample_every=h.disk_sample_every,
                    disk_window=h.disk_window,
                    disk_warn_within=h.disk_warn_within,
                    disk_min_growth=h.disk_min_growth,
                    cpu_steal_warning=h.cpu_steal_warning,
                    cpu_steal_sample_every=h.cpu_steal_sample_every,
                    self_watch=h.self_watch,
                )
    if errors:
        raise ConfigError(errors)
    return EarlyConfig(
        watches=tuple(watches),
        host=host_config,
        self_watch=default_self_watch() if host_config.self_watch else None,
    )
