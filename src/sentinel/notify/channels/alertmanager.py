"""The Alertmanager channel: API v2 (`POST /api/v2/alerts`) to every configured URL (the peers of
an HA pair each get every alert; their gossip sends one notification).

An incident is one alert with the labels `alertname`, `site` and `severity` only: two sentinels
watching the same site post identical labels, so Alertmanager deduplicates them. `startsAt` is the
incident's start, `endsAt` the recovery; while firing, `endsAt` lies 4 x resend_every ahead and a
resend loop posts every firing alert again each `resend_every`, so an alert neither expires while
the site is down nor outlives a sentinel that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sentinel.notify.channel_config import ChannelConfig
from sentinel.notify.channels.base import Delivery
from sentinel.notify.errors import SendError
from sentinel.notify.payload import Alert, encode_alert, iso

__all__ = ["AlertmanagerChannel", "alertmanager_body", "alertmanager_labels"]

log = logging.getLogger(__name__)

MAX_RESEND = 5000  # alerts in one resend POST


def alertmanager_labels(alert: Alert) -> dict[str, str]:
    """The identity of an alert in Alertmanager. Pure; the same on every sentinel."""
    if alert.kind in ("down", "still_down", "recovered"):
        return {"alertname": "SiteDown", "site": alert.site, "severity": "critical"}
    if alert.kind in ("flapping", "stable"):  # STABLE resolves it
        return {"alertname": "SiteFlapping", "site": alert.site, "severity": "warning"}
    if alert.kind == "certificate":
        return {"alertname": "CertificateExpiring", "site": alert.site, "severity": "warning"}
    # Early warnings: their kind is part of the name (a disk and a memory warning differ).
    kind = alert.kind if alert.kind != "resolved" else alert.reason
    return {"alertname": f"EarlyWarning_{kind}", "site": alert.site, "severity": "warning"}


def alertmanager_body(alerts: Sequence[Alert], *, now: float, resend_every: float) -> bytes:
    """The JSON list POSTed to /api/v2/alerts. Pure."""
    items: list[dict[str, Any]] = []
    for alert in alerts:
        item: dict[str, Any] = {
            "labels": alertmanager_labels(alert),
            "annotations": {"summary": alert.summary, "target": alert.url or ""},
            "startsAt": iso(alert.since),
            "endsAt": iso(alert.at if not alert.firing else now + 4 * resend_every),
        }
        if alert.status_page:
            item["generatorURL"] = alert.status_page
        items.append(item)
    return json.dumps(items, ensure_ascii=False).encode()


class AlertmanagerChannel:
    def __init__(self, cfg: ChannelConfig, firing: Callable[[], Sequence[Alert]]) -> None:
        from sentinel.notify.channels.http import HttpPoster

        self.name = cfg.name
        self.urls = tuple(u.rstrip("/") + "/api/v2/alerts" for u in cfg.urls)
        self.resend_every = cfg.resend_every
        self._firing = firing
        self._http = HttpPoster()
        self._task: asyncio.Task[None] | None = None
        self.clock: Callable[[], float] = time.time

    def render(self, alert: Alert) -> bytes:
        return encode_alert(alert).encode()

    async def post(self, alerts: Sequence[Alert]) -> None:
        """POST to every URL at once; delivered when at least one accepted (the peers share
        what they get). Raises SendError (permanent only if every peer refused permanently)."""
        body = alertmanager_body(alerts, now=self.clock(), resend_every=self.resend_every)
        headers = {"Content-Type": "application/json"}
        results = await asyncio.gather(
            *(self._http.post(url, body, headers, f"alertmanager {url}") for url in self.urls),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, SendError):
                raise error
        if len(errors) == len(results):
            send_errors = [e for e in errors if isinstance(e, SendError)]
            raise SendError(
                "; ".join(e.detail for e in send_errors)[:300],
                permanent=all(e.permanent for e in send_errors),
            )
        for error in errors:
            log.warning("alertmanager peer did not take the alert: %s", error)

    async def send(self, delivery: Delivery) -> None:
        if delivery.alert is None:
            raise SendError(f"alertmanager {self.name}: the item holds no alert", permanent=True)
        await self.post([delivery.alert])

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(self.resend_every)
            try:
                alerts = [a for a in self._firing() if a.firing][:MAX_RESEND]
                if alerts:
                    await self.post(alerts)
            except SendError as exc:
                log.warning("alertmanager %s: resend failed: %s", self.name, exc.detail)
            except Exception:
                log.exception("alertmanager %s: resend failed", self.name)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._resend(), name=f"alertmanager-{self.name}"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._http.close()
