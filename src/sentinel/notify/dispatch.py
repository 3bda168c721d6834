"""Alert dispatch: events in, one outbox item per channel out; one sender per channel; fallback.

Owns the configured channels (built by `build_channels`), turns a monitor or early-warning event
into the outbox items of the channels it is routed to (`outgoing_for_event`, `outgoing_for_early`),
runs one `OutboxSender` per channel (so one channel's outage holds back no other), hands an item
that failed permanently or waited `escalate_after` to the fallback channel, lists the firing
alerts an Alertmanager channel resends, and keeps the channel metrics: sentinel_notifications_sent
{channel,kind}, sentinel_notification_failures{channel}, sentinel_fallbacks{channel} and the
sentinel_dead_letters gauge. The decisions themselves are pure, in `sentinel.notify.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy as email_policy
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sentinel.config import Config, SiteConfig
from sentinel.early.events import EarlyEvent
from sentinel.early.messages import build_early_message, early_message_kind
from sentinel.logsetup import kv
from sentinel.metrics import Metrics
from sentinel.monitor import Event, SiteState, Status
from sentinel.notify.alert_context import basic_context
from sentinel.notify.channel_config import EMAIL
from sentinel.notify.channels import Channel, build_channels
from sentinel.notify.channels.base import Delivery
from sentinel.notify.errors import SendError
from sentinel.notify.group_message import (
    NETWORK_SITE,
    NetworkNews,
    group_alert,
    group_email,
    group_message_id,
    network_alert,
    network_email,
    rethread,
)
from sentinel.notify.grouping import GROUPED_KINDS, Held, decide, host_key
from sentinel.notify.health import ChannelHealth
from sentinel.notify.message import (
    MessageContext,
    build_message,
    incident_message_id,
    message_domain,
    message_kind,
)
from sentinel.notify.outbox import OutboxSender
from sentinel.notify.payload import (
    Alert,
    alert_from_early,
    alert_from_event,
    decode_alert,
    encode_alert,
)
from sentinel.notify.policy import PERMANENT_DELAYS, recipients, should_escalate
from sentinel.promtext import Counter, Gauge
from sentinel.store import OutboxItem, Outgoing, Store, StoreError

__all__ = ["PERMANENT_DELAYS_ENV", "Dispatcher", "permanent_delays_from"]

log = logging.getLogger("sentinel")  # the daemon's own lines (grep "email not sent")

# For tests and drills: the permanent-failure retry schedule, e.g. "1s,1s" (default 1m,5m,15m).
PERMANENT_DELAYS_ENV = "SENTINEL_PERMANENT_RETRY_DELAYS"


def _basic(event: Event, site: SiteConfig, config: Config) -> MessageContext:
    return basic_context(config, site.name)


MessageContextFor = Callable[[Event, SiteConfig, Config], MessageContext]


def permanent_delays_from(environ: Mapping[str, str]) -> tuple[float, ...]:
    """The schedule from $SENTINEL_PERMANENT_RETRY_DELAYS, else the default. Raises ValueError."""
    from sentinel.config import parse_duration

    text = environ.get(PERMANENT_DELAYS_ENV, "").strip()
    if not text:
        return PERMANENT_DELAYS
    try:
        return tuple(parse_duration(part.strip()) for part in text.split(","))
    except ValueError as exc:
        raise ValueError(f"{PERMANENT_DELAYS_ENV}: {exc}") from None


class Dispatcher:
    def __init__(
        self,
        store: Store | None,
        metrics: Metrics,
        *,
        states: Callable[[], Mapping[str, SiteState]],
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._states = states
        self._environ = environ
        self._clock = clock
        self.permanent_delays = permanent_delays_from(environ)
        self.config: Config | None = None
        self.channels: dict[str, Channel] = {}
        self._types: list[tuple[str, str]] = []
        self._sites: dict[str, SiteConfig] = {}
        self._senders: dict[str, OutboxSender] = {}
        self._changed = asyncio.Event()
        self.dead_letters = 0
        self._dropped_seen = 0
        self._retired: list[Channel] = []  # replaced by a reload; closed by run()
        # What a site's email says beyond its event (time zone, page link, DOWN diagnosis):
        # set by the daemon to its AlertContext; without it, just the time zone and the link.
        self.message_context: MessageContextFor = _basic
        self.health = ChannelHealth()  # can alerts still go out? (the dead man's switch asks)
        r = metrics.registry
        self.sent = Counter(
            "sentinel_notifications_sent",
            "Alerts delivered, by channel and kind",
            ["channel", "kind"],
            registry=r,
        )
        self.failures = Counter(
            "sentinel_notification_failures",
            "Failed delivery attempts, by channel",
            ["channel"],
            registry=r,
        )
        self.fallbacks = Counter(
            "sentinel_fallbacks",
            "Alerts handed to a fallback channel, by that channel",
            ["channel"],
            registry=r,
        )
        self.dead_gauge = Gauge(
            "sentinel_dead_letters",
            "Alerts given up on (see `sentinel outbox list`)",
            registry=r,
        )

    # ------------------------------------------------------------------ configuration

    def attach_store(self, store: Store | None) -> None:
        """The store opened after construction (the daemon opens it before it runs)."""
        self._store = store

    def build(self, config: Config) -> dict[str, Channel]:
        """The channels for `config`; raises SetupError (one line). Used to validate a reload."""
        return build_channels(config, self._environ, self.firing)

    def configure(self, config: Config, channels: dict[str, Channel]) -> None:
        """Use `config` and its `channels` (from `build`); running senders are replaced."""
        self.config = config
        self._sites = {s.name: s for s in config.sites}
        old = self.channels
        self.channels = channels
        self._types = [(EMAIL, "email")] if config.email is not None else []
        self._types += [(c.name, c.type) for c in config.channels]
        settings: dict[str, object] = {c.name: c for c in config.channels}
        if config.email is not None:
            settings = {EMAIL: config.email, **settings}
        self.health.configure(settings)
        self._retired.extend(c for name, c in old.items() if channels.get(name) is not c)
        self._changed.set()

    # ------------------------------------------------------------------ events -> outbox items

    def _route(self, site: str) -> tuple[tuple[str, ...] | None, str | None, float | None]:
        cfg = self._sites.get(site)
        if cfg is not None:
            return cfg.notify, cfg.fallback, cfg.escalate_after
        config = self.config
        if config is None:
            return None, None, None
        return config.notify, config.fallback, config.escalate_after

    def _items(
        self, alert: Alert, notify: Sequence[str] | None, email_bytes: Callable[[], bytes]
    ) -> list[Outgoing]:
        encoded = encode_alert(alert)
        now = self._clock()
        wait = self.config.group_wait if self.config is not None else 0.0
        types = dict(self._types)
        items = []
        for name in recipients(alert.kind, notify, self._types):
            channel = self.channels.get(name)
            if channel is None:
                continue
            message = email_bytes() if name == EMAIL else channel.render(alert)
            # Outage grouping: a DOWN or RECOVERED waits group_wait for others to join it. Not
            # on an Alertmanager channel (Alertmanager groups alerts itself).
            hold = (
                wait > 0
                and alert.kind in GROUPED_KINDS
                and alert.site != NETWORK_SITE
                and types.get(name) != "alertmanager"
            )
            items.append(
                Outgoing(
                    kind=alert.kind,
                    site=alert.site,
                    message=message,
                    created_at=now,
                    channel=name,
                    incident=alert.incident_id,
                    alert=encoded,
                    hold_until=now + wait if hold else None,
                    hold=host_key(alert.url) if hold else None,
                )
            )
        return items

    def outgoing_for_event(self, event: Event, site: SiteConfig) -> list[Outgoing]:
        config = self.config
        if config is None:
            return []
        alert = alert_from_event(event, target=site.target, status_page=config.status_url)
        alert = _with_kind(alert, message_kind(event))
        email = config.email

        def email_bytes() -> bytes:
            assert email is not None
            context = self.message_context(event, site, config)
            message = build_message(event, email=email, target=site.target, context=context)
            return message.as_bytes(policy=email_policy.SMTP)

        return self._items(alert, site.notify, email_bytes)

    def outgoing_for_early(self, event: EarlyEvent) -> list[Outgoing]:
        config = self.config
        if config is None:
            return []
        alert = alert_from_early(event, status_page=config.status_url)
        alert = _with_kind(alert, early_message_kind(event))
        email = config.email

        def email_bytes() -> bytes:
            assert email is not None
            tz = basic_context(config, "").tz  # ([sentinel] timezone)
            message = build_early_message(
                event, sender=email.sender, recipients=email.recipients, tz=tz
            )
            return message.as_bytes(policy=email_policy.SMTP)

        return self._items(alert, config.notify, email_bytes)

    def outgoing_for_network(self, news: NetworkNews) -> list[Outgoing]:
        """The network canary's NETWORK alert or its RECOVERED, routed like [defaults] notify."""
        config = self.config
        if config is None:
            return []
        alert = network_alert(news, status_page=config.status_url)
        email = config.email

        def email_bytes() -> bytes:
            assert email is not None
            return network_email(news, email_config=email)

        return self._items(alert, config.notify, email_bytes)

    @property
    def status_page(self) -> str | None:
        return self.config.status_url if self.config is not None else None

    def outgoing_for_alert(self, alert: Alert, email_bytes: Callable[[], bytes]) -> list[Outgoing]:
        """Any other alert (a heartbeat's): routed like an alert not tied to a site ([defaults]
        notify); `email_bytes` renders its email when the email channel takes it."""
        config = self.config
        if config is None:
            return []
        return self._items(alert, config.notify, email_bytes)

    # ------------------------------------------------------------------ Alertmanager resends

    def firing(self, channel: str) -> list[Alert]:
        """The open incidents routed to `channel` whose last probe still failed."""
        config = self.config
        if config is None:
            return []
        now = self._clock()
        alerts = []
        for name, state in self._states().items():
            site = self._sites.get(name)
            if site is None or state.status is not Status.DOWN or state.incident_id is None:
                continue
            if state.last is not None and state.last.ok:
                continue  # recovering: do not assert it again
            if channel not in recipients("down", site.notify, self._types):
                continue
            last = state.last
            alerts.append(
                Alert(
                    kind="down",
                    site=name,
                    url=site.target,
                    summary=f"DOWN: {name}",
                    reason=last.reason if last else "",
                    message=last.message if last else "",
                    since=state.incident_started or state.since or now,
                    at=now,
                    incident_id=state.incident_id,
                    status_page=config.status_url,
                )
            )
        return alerts

    # ------------------------------------------------------------------ fallback

    def _escalate(self, item: OutboxItem, permanent: bool) -> None:
        store = self._store
        if store is None:
            return
        _, fallback, escalate_after = self._route(item.site)
        if fallback is None or fallback == item.channel or fallback not in self.channels:
            return
        now = self._clock()
        candidates = {item.id: item} if permanent else {}
        if escalate_after is not None:
            for older in store.outbox_unescalated(item.channel, item.site, now - escalate_after):
                candidates.setdefault(older.id, older)
        for candidate in candidates.values():
            if not should_escalate(
                channel=candidate.channel,
                fallback=fallback,
                escalated=candidate.escalated,
                permanent=permanent and candidate.id == item.id,
                created_at=candidate.created_at,
                escalate_after=escalate_after,
                now=now,
            ):
                continue
            copies = self._fallback_copies(candidate, fallback)
            store.outbox_escalate(candidate.id, copies)
            if copies:
                self.fallbacks.labels(fallback).inc()
                log.warning(
                    "alert handed to the fallback channel %s",
                    kv(
                        channel=candidate.channel,
                        fallback=fallback,
                        kind=candidate.kind,
                        site=candidate.site,
                        reason="failed permanently" if permanent else "undelivered",
                    ),
                )
                sender = self._senders.get(fallback)
                if sender is not None:
                    sender.wake()

    def _fallback_copies(self, item: OutboxItem, fallback: str) -> list[Outgoing]:
        channel = self.channels[fallback]
        if item.alert is None:
            log.warning(
                "an item from before channels has no alert to hand over %s", kv(site=item.site)
            )
            return []
        try:
            alert = decode_alert(item.alert)
        except ValueError as exc:
            log.warning("cannot hand over an alert %s", kv(site=item.site, error=exc))
            return []
        return [
            Outgoing(
                kind=item.kind,
                site=item.site,
                message=channel.render(alert),
                created_at=item.created_at,
                channel=fallback,
                incident=item.incident,
                alert=item.alert,
            )
        ]

    # ------------------------------------------------------------------ outage grouping

    def _regroup(self, name: str, now: float) -> float | None:
        """Release the held alerts of channel `name` that are due (sentinel.notify.grouping):
        a group becomes one item (an email listing every site) in one store transaction; on the
        other channels each site's alert is released as it is, at the same time. Returns the
        seconds until the wait of the alerts still held ends under the *current* group_wait
        (None when none is held): a wait shortened by a reload or a restart is then kept, though
        the held items' next_attempt_at still says the end of the longer one."""
        store, config = self._store, self.config
        if store is None or config is None:
            return None
        held = store.outbox_held(name)
        if not held:
            return None
        by_id = {item.id: item for item in held}
        releases = decide(
            (Held(i.id, i.kind, i.hold or "", i.created_at) for i in held),
            now,
            wait=config.group_wait,
            min_size=config.group_min,
        )
        for release in releases:
            alerts = _alerts([by_id[i] for i in release.ids])
            merged = None
            if release.grouped and alerts is not None:
                merged = self._merge(store, name, release.kind, alerts)
            if merged is None:
                store.outbox_release(release.ids, now=now)
                continue
            message, summary, group_id, roots = merged
            store.outbox_release(
                release.ids, merged=(message, summary, group_id), roots=roots, now=now
            )
            log.info(
                "alerts grouped %s",
                kv(channel=name, kind=release.kind, sites=",".join(a.site for a in alerts or ())),
            )
        released = {i for release in releases for i in release.ids}
        still = [item.created_at for item in held if item.id not in released]
        if not still:
            return None
        return max(0.05, min(still) + config.group_wait - now)  # never a busy loop

    def _merge(
        self, store: Store, name: str, kind: str, alerts: Sequence[Alert]
    ) -> tuple[bytes, str, str, dict[str, str] | None] | None:
        """(message, alert JSON, group id, incident -> thread root) of a group on channel
        `name`, or None where alerts are not merged: webhooks keep the one-site payload they
        parse, so each site's alert is released as it is."""
        config = self.config
        assert config is not None
        if name == EMAIL and config.email is not None:
            domain = message_domain(config.email.sender)
            group_id = group_message_id(kind, alerts, domain=domain)
            roots: list[str] = []
            if kind == "recovered":
                known = store.outbox_thread_roots(name, [_thread_key(a) for a in alerts])
                roots = [
                    known.get(_thread_key(a))
                    or incident_message_id(a.site, a.incident_id, domain=domain)
                    for a in alerts
                ]
            message = group_email(kind, alerts, email_config=config.email, roots=roots)
            summary = encode_alert(group_alert(kind, alerts, group_id=group_id))
            threads = {_thread_key(a): group_id for a in alerts} if kind == "down" else None
            return message, summary, group_id, threads
        channel = self.channels.get(name)
        if channel is not None and dict(self._types).get(name) == "apprise":
            # A push notification or a chat message: one for the group, naming every site.
            group_id = group_message_id(kind, alerts, domain="apprise")
            alert = group_alert(kind, alerts, group_id=group_id)
            return channel.render(alert), encode_alert(alert), group_id, None
        return None

    def _threaded(self, name: str, item: OutboxItem) -> bytes:
        """An email of an incident whose DOWN went out in a grouped email replies to that one."""
        store = self._store
        if store is None or name != EMAIL or item.incident is None or item.kind == "down":
            return item.message
        key = f"{item.site}\n{item.incident}"
        try:
            root = store.outbox_thread_roots(name, [key]).get(key)
        except StoreError:
            return item.message
        return item.message if root is None else rethread(item.message, root)

    # ------------------------------------------------------------------ senders

    def _sender(self, name: str, channel: Channel) -> OutboxSender:
        assert self._store is not None

        async def deliver(item: OutboxItem) -> None:
            alert = None
            if item.alert is not None:
                with contextlib.suppress(ValueError):
                    alert = decode_alert(item.alert)
            await channel.send(
                Delivery(
                    channel=name,
                    kind=item.kind,
                    site=item.site,
                    created_at=item.created_at,
                    message=self._threaded(name, item),
                    alert=alert,
                    now=self._clock(),
                )
            )

        return OutboxSender(
            self._store,
            None,
            channel=name,
            deliver=deliver,
            permanent_delays=self.permanent_delays,
            escalate=self._escalate,
            on_sent=lambda kind: self._on_sent(name, kind),
            on_failure=lambda kind, error: self._on_failure(name, kind, error),
            on_pending=self._on_pending,
            on_dead=self._on_dead,
            clock=self._clock,
            regroup=lambda now: self._regroup(name, now),
        )

    def _on_sent(self, channel: str, kind: str) -> None:
        self.sent.labels(channel, kind).inc()
        self.health.sent(channel)
        if channel == EMAIL:
            self._metrics.emails_sent.labels(kind).inc()

    def _on_failure(self, channel: str, kind: str, error: SendError) -> None:
        self.failures.labels(channel).inc()
        self.health.failed(
            channel, permanent=error.permanent, detail=error.detail, now=self._clock()
        )
        if channel == EMAIL:
            self._metrics.email_failures.inc()
        level = logging.ERROR if error.permanent else logging.WARNING
        what = "email" if channel == EMAIL else f"alert on {channel}"
        # The one line per failed attempt (the outbox's own retry detail is at debug level).
        log.log(level, "%s not sent %s", what, kv(kind=kind, error=error.detail))

    def _on_pending(self, count: int) -> None:
        self._metrics.outbox_pending.set(count)
        if self._store is not None:
            with contextlib.suppress(StoreError):
                dropped = self._store.outbox_dropped_total()
                if dropped > self._dropped_seen:
                    self._metrics.outbox_dropped.inc(dropped - self._dropped_seen)
                self._dropped_seen = dropped

    def _on_dead(self, count: int) -> None:
        self.dead_letters = count
        self.dead_gauge.set(count)

    def refresh_dead_letters(self) -> None:
        if self._store is not None:
            with contextlib.suppress(StoreError):
                self._on_dead(self._store.dead_letter_count())

    def wake(self) -> None:
        for sender in self._senders.values():
            sender.wake()

    def enqueue_unstored(self, outgoing: Sequence[Outgoing]) -> None:
        for item in outgoing:
            sender = self._senders.get(item.channel)
            if sender is not None:
                sender.enqueue_unstored([item])

    def _orphans_to_dead_letters(self) -> None:
        """Items of a channel no longer configured can never go out: make them visible."""
        store = self._store
        if store is None:
            return
        known = set(self.channels)
        for item in store.outbox_items():
            if item.channel not in known:
                store.outbox_give_up(
                    item.id, f"channel {item.channel!r} is not configured", now=self._clock()
                )

    async def run(self) -> None:
        """One sender task per channel; rebuilt when `configure` changes the channels."""
        loop = asyncio.get_running_loop()
        tasks: dict[str, asyncio.Task[Any]] = {}
        try:
            while True:
                self._changed.clear()
                retired, self._retired = self._retired, []
                for old in retired:
                    with contextlib.suppress(Exception):
                        await old.close()
                try:
                    self._orphans_to_dead_letters()
                except StoreError as exc:
                    log.error("outbox: %s", exc)
                self.refresh_dead_letters()
                for name, channel in self.channels.items():
                    if name in self._senders:
                        continue
                    await channel.start()
                    sender = self._sender(name, channel)
                    self._senders[name] = sender
                    tasks[name] = loop.create_task(sender.run(), name=f"outbox-{name}")
                await self._changed.wait()
                for name in list(self._senders):
                    await self._senders.pop(name).stop()
                    tasks.pop(name, None)
        finally:
            for sender in self._senders.values():
                with contextlib.suppress(Exception):
                    await sender.stop()
            for task in tasks.values():
                task.cancel()
            for channel in self.channels.values():
                with contextlib.suppress(Exception):
                    await channel.close()

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 (the agreed shutdown API)
        await asyncio.gather(
            *(sender.flush(timeout) for sender in self._senders.values()),
            return_exceptions=True,
        )


def _thread_key(alert: Alert) -> str:
    """Incident ids are unique per site only: the thread table keys on both."""
    return f"{alert.site}\n{alert.incident_id}"


def _alerts(items: Sequence[OutboxItem]) -> list[Alert] | None:
    """The stored alerts of `items`, or None when one has none (then nothing is merged)."""
    alerts = []
    for item in items:
        if item.alert is None:
            return None
        try:
            alerts.append(decode_alert(item.alert))
        except ValueError:
            return None
    return alerts


def _with_kind(alert: Alert, kind: str) -> Alert:
    from dataclasses import replace

    return alert if alert.kind == kind else replace(alert, kind=kind)
