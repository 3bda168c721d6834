"""The `[[channels]]` config and the alert routing keys (`notify`, `fallback`, `escalate_after`).

Pure apart from asking Python whether the optional `apprise` package is installed (no import).
`parse_channels` turns the raw tables into frozen `ChannelConfig`s; `check_routes` checks that
every channel named in `[defaults]` or a site exists. Errors are one line each, naming the place:
`channels[1] "chat": urls: at least one URL is needed`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_RESEND_EVERY",
    "EMAIL",
    "ChannelConfig",
]

EMAIL = "email"  # the [email] section is the channel of this name
DEFAULT_RESEND_EVERY = 60.0
MAX_CHANNELS = 50
MAX_URLS = 20

ChannelType = Literal["webhook", "apprise", "alertmanager"]


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One `[[channels]]` entry, resolved."""

    name: str
    type: ChannelType
    urls: tuple[str, ...]  # a webhook's one url, too
    secret_file: str | None = None
    resend_every: float = DEFAULT_RESEND_EVERY


def apprise_installed() -> bool:
    return importlib.util.find_spec("apprise") is not None
