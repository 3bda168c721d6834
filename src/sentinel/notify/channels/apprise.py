"""The apprise channel: 100+ services (Telegram, ntfy, Slack, ...) by URL through the optional
`apprise` package (`pip install 'sentinel[apprise]'`), imported only when such a channel exists.
Apprise reports only success or failure, so every failure is retried as transient."""

from __future__ import annotations

import asyncio
from typing import Any

from sentinel.notify.channel_config import ChannelConfig
from sentinel.notify.channels.base import Delivery, SetupError
from sentinel.notify.errors import SendError
from sentinel.notify.payload import Alert, encode_alert

__all__ = ["AppriseChannel", "apprise_text"]


def apprise_text(alert: Alert) -> tuple[str, str]:
    """(title, body) of the notification. Pure."""
    lines = [alert.summary]
    if alert.reason == "group":  # a grouped alert (sentinel.notify.grouping): every site
        lines.extend(part for part in alert.message.split("; ") if part)
    if alert.url:
        lines.append(f"Target: {alert.url}")
    if alert.status_page:
        lines.append(f"Status: {alert.status_page}")
    return f"[sentinel] {alert.summary}", "\n".join(lines)


class AppriseChannel:
    def __init__(self, cfg: ChannelConfig) -> None:
        try:
            import apprise
        except ImportError:
            raise SetupError(
                f'channel "{cfg.name}": apprise needs the optional extra: '
                "pip install 'sentinel[apprise]'"
            ) from None
        self.name = cfg.name
        self._apprise: Any = apprise.Apprise()
        for url in cfg.urls:
            if not self._apprise.add(url):
                raise SetupError(f'channel "{cfg.name}": urls: apprise does not accept {url!r}')
        self._types = {True: apprise.NotifyType.FAILURE, False: apprise.NotifyType.SUCCESS}

    def render(self, alert: Alert) -> bytes:
        return encode_alert(alert).encode()

    async def send(self, delivery: Delivery) -> None:
        if delivery.alert is None:
            raise SendError(f"apprise {self.name}: the item holds no alert", permanent=True)
        title, body = apprise_text(delivery.alert)
        kind = self._types[delivery.alert.firing]
        # Apprise's own async path still runs blocking plugins; a thread keeps the loop free.
        ok = await asyncio.to_thread(self._apprise.notify, body=body, title=title, notify_type=kind)
        if not ok:
            raise SendError(f"apprise {self.name}: a service did not accept it", permanent=False)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
