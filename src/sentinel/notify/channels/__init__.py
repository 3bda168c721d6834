"""Delivery channels: one module per type (email, webhook, apprise, alertmanager), each behind the
`Channel` interface of `base`. `build_channels` makes them from the config, importing a type's
libraries only when a channel of that type is configured."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sentinel.config import Config
from sentinel.notify.channel_config import EMAIL
from sentinel.notify.channels.base import Channel, SetupError
from sentinel.notify.payload import Alert

__all__ = ["Channel", "SetupError", "build_channels"]


def _firing_of(
    firing: Callable[[str], Sequence[Alert]] | None, name: str
) -> Callable[[], Sequence[Alert]]:
    return (lambda: firing(name)) if firing is not None else (lambda: ())


def build_channels(
    config: Config,
    environ: Mapping[str, str],
    firing: Callable[[str], Sequence[Alert]] | None = None,
) -> dict[str, Channel]:
    """name -> Channel for every configured channel ("email" first when [email] is set).
    Raises SetupError (one line) when a channel cannot be set up (unreadable secret_file,
    ca_file, password_file). `firing(channel)` lists the alerts an Alertmanager resends."""
    channels: dict[str, Channel] = {}
    if config.email is not None:
        from sentinel.notify.channels.email import EmailChannel

        channels[EMAIL] = EmailChannel.from_config(config.email, environ)
    for cfg in config.channels:
        if cfg.type == "webhook":
            from sentinel.notify.channels.webhook import WebhookChannel

            channels[cfg.name] = WebhookChannel.from_config(cfg)
        elif cfg.type == "apprise":
            from sentinel.notify.channels.apprise import AppriseChannel

            channels[cfg.name] = AppriseChannel(cfg)
        else:
            from sentinel.notify.channels.alertmanager import AlertmanagerChannel

            channels[cfg.name] = AlertmanagerChannel(cfg, _firing_of(firing, cfg.name))
    return channels
