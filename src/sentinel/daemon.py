"""The running daemon: wires config, scheduler, probes, monitor, store, outbox, metrics and web,
and handles the signals (TERM/INT stop, HUP reload).

Every probe result flows one way:
probe -> monitor.observe -> (store + outbox, in one transaction) -> metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy as email_policy
import fcntl
import logging
import os
import signal
import time
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sentinel import drift_history
from sentinel.config import Config, ConfigError, EmailConfig, SiteConfig, load_config
from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded
from sentinel.early.messages import build_early_message, early_message_kind
from sentinel.early.service import EarlyWarnings
from sentinel.eventloop import running_loop_name
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.settings import StatusPageConfig
from sentinel.logsetup import kv
from sentinel.metrics import Metrics
from sentinel.monitor import (
    CertExpiring,
    Event,
    Recovered,
    SiteState,
    Status,
    StillDown,
    WentDown,
    observe,
)
from sentinel.notify.errors import SendError
from sentinel.notify.message import build_message, message_kind
from sentinel.notify.outbox import OutboxSender
from sentinel.notify.smtp import PasswordError, SmtpChannel, resolve_password
from sentinel.probes.prober import Prober
from sentinel.probes.result import ProbeResult
from sentinel.scheduler import Scheduler
from sentinel.store import Outgoing, Store, StoreError
from sentinel.systemd import Notifier, WatchdogFeeder
from sentinel.web import _iso, make_routes, start_server
from sentinel.webviews.pages import StatusPages

log = logging.getLogger("sentinel")

EXIT_OK = 0
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop


def resolve_state_dir(config: Config, environ: Mapping[str, str] = os.environ) -> Path:
    """config state_dir, else systemd's $STATE_DIRECTORY, else ./.sentinel."""
    if config.state_dir:
        return Path(config.state_dir)
    systemd_dirs = environ.get("STATE_DIRECTORY", "")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    return Path(".sentinel")


def summary_line(states: Mapping[str, SiteState]) -> str:
    down = sum(1 for s in states.values() if s.status is Status.DOWN)
    return f"{len(states)} sites, {down} down"


class Daemon:
    def __init__(
        self, config_path: str, config: Config, *, environ: Mapping[str, str] = os.environ
    ):
        self.config_path = config_path
        self.config = config
        self.environ = environ
        self.sites: dict[str, SiteConfig] = {s.name: s for s in config.sites}
        self.states: dict[str, SiteState] = {}
        self.metrics = Metrics()
        self.store: Store | None = None
        self.prober = Prober(user_agent=config.user_agent, precise_latency=config.precise_latency)
        self.notifier = Notifier.from_env(environ)
        watchdog = self.notifier.watchdog_interval()
        self.scheduler = Scheduler(
            self._probe_site,
            max_concurrency=config.max_concurrency,
            on_lag=self.metrics.schedule_lag.observe,
            on_skip=self._on_skip,
            # The loop must prove progress more often than the watchdog is fed.
            heartbeat=min(1.0, watchdog / 2) if watchdog else 1.0,
            batch=config.batch_window,
        )
        self.channel: SmtpChannel | None = None
        self.outbox: OutboxSender | None = None
        self.early: EarlyWarnings | None = None
        if config.early is not None:
            self.early = EarlyWarnings(config.early, self.metrics.registry, self._on_early_event)
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.port: int | None = None
        self._dropped_seen = 0
        self._lock_fd: int | None = None
        self.history: HistoryRecorder | None = None
        self.pages: StatusPages | None = None

    # ------------------------------------------------------------------ start and stop

    def open_store(self) -> None:
        """Open the state store; raises StoreError with a clear message (the caller exits)."""
        state_dir = resolve_state_dir(self.config, self.environ)
        limit = self.config.email.outbox_limit if self.config.email else 1000
        self.store = Store.open(state_dir, outbox_limit=limit)
        self._lock_state_dir(state_dir)
        if self.config.history is not None and self.config.history.enabled:
            self.history = HistoryRecorder(self.store, self.config.history, self._store_failed)

    def _lock_state_dir(self, state_dir: Path) -> None:
        """Two daemons on one state_dir would both deliver the outbox: refuse the second one.
        The lock dies with the process (also after kill -9)."""
        path = state_dir / "sentinel.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(
                f"{state_dir}: another sentinel is already running with this state_dir"
            ) from None
        self._lock_fd = fd

    def _restore_states(self) -> None:
        saved: dict[str, SiteState] = {}
        if self.store is not None:
            try:
                saved = self.store.load_states()
            except StoreError as exc:
                log.error("cannot read saved states, starting fresh: %s", exc)
        for name in self.sites:
            self.states[name] = saved.get(name) or SiteState(site=name)
            self.metrics.add_site(self.states[name])
            if self.states[name].status is Status.DOWN:
                log.info("restored open incident %s", kv(site=name, since=self.states[name].since))
        for name in saved.keys() - self.sites.keys():
            # A site removed from the config while sentinel was stopped: close its incident quietly.
            self._forget_site(name)
        self.metrics.sites.set(len(self.sites))

    def _setup_email(self, email: EmailConfig | None) -> None:
        if email is None:
            self.channel = None
            return
        password = resolve_password(email, self.environ)
        self.channel = SmtpChannel(email, password)

    async def _send(self, message: EmailMessage) -> None:
        channel = self.channel
        if channel is None:
            raise SendError("email is not configured", permanent=False)
        await channel.send(message)

    def _on_email_sent(self, kind: str) -> None:
        self.metrics.emails_sent.labels(kind).inc()

    def _on_email_failure(self, kind: str, error: SendError) -> None:
        # The one line per failed attempt (the outbox's own retry detail is at debug level).
        self.metrics.email_failures.inc()
        level = logging.ERROR if error.permanent else logging.WARNING
        log.log(level, "email not sent %s", kv(kind=kind, error=error.detail))

    def _on_pending(self, count: int) -> None:
        self.metrics.outbox_pending.set(count)
        if self.store is not None:
            with contextlib.suppress(StoreError):
                dropped = self.store.outbox_dropped_total()
                if dropped > self._dropped_seen:
                    self.metrics.outbox_dropped.inc(dropped - self._dropped_seen)
                self._dropped_seen = dropped

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        server = None
        try:
            self._setup_email(self.config.email)
            self._restore_states()
            if self.store is not None and self.early is not None:
                drift_sites = [n for n, site in self.sites.items() if site.latency_drift]
                drift_history.restore(self.store, self.early, drift_sites)
            await self.prober.start()
            if self.config.listen:
                routes = make_routes(
                    render_metrics=self.metrics.render_chunks,
                    site_status=self.site_status,
                    healthy=self.healthy,
                )
                self.pages = self._status_pages()
                routes.update(self.pages.routes())
                server, self.port = await start_server(
                    routes, self.config.listen, self.pages.prefixes()
                )
                log.info("serving metrics %s", kv(listen=self.config.listen, port=self.port))
            if self.store is not None:
                self.outbox = OutboxSender(
                    self.store,
                    self._send,
                    on_sent=self._on_email_sent,
                    on_failure=self._on_email_failure,
                    on_pending=self._on_pending,
                )
                self._tasks.append(loop.create_task(self.outbox.run(), name="outbox"))
            self.scheduler.set_sites(self.sites.values())
            self._tasks.append(loop.create_task(self.scheduler.run(), name="scheduler"))
            if self.history is not None:
                self._tasks.append(loop.create_task(self.history.run(), name="history"))
            if self.early is not None:
                self._tasks.append(loop.create_task(self.early.run(), name="early-warnings"))
                if self.store is not None:
                    saver = drift_history.save_periodically(
                        self.store, self.early, self._drift_tracked, self._store_failed
                    )
                    self._tasks.append(loop.create_task(saver, name="drift-history"))
            feeder = WatchdogFeeder(self.notifier, lambda: self.scheduler.loops)
            if feeder.interval is not None:
                self._tasks.append(loop.create_task(feeder.run(), name="watchdog"))
            self.metrics.reload_ok.set(1)
            self.metrics.reload_time.set(time.time())
            self.notifier.ready(summary_line(self.states))
            log.info(
                "sentinel started %s",
                kv(
                    sites=len(self.sites),
                    config=self.config_path,
                    email=bool(self.channel),
                    loop=running_loop_name(),
                ),
            )
            await self._main_loop()
            return EXIT_OK
        finally:
            self.notifier.stopping()
            log.info("stopping")
            if self.outbox is not None:
                # Give an alert enqueued just before SIGTERM a moment to go out now; anything
                # left stays in the outbox for the next start (at-least-once).
                with contextlib.suppress(Exception):
                    await self.outbox.flush(5.0)
                    await self.outbox.stop()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.prober.close()
            if server is not None:
                await server.close()
            if self.store is not None:
                if self.history is not None:
                    with contextlib.suppress(Exception):
                        await self.history.flush()
                if self.early is not None:
                    with contextlib.suppress(Exception):
                        await drift_history.save(
                            self.store, self.early, self._drift_tracked, self._store_failed
                        )
                self.store.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()

    async def _main_loop(self) -> None:
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                reload_wait = asyncio.ensure_future(self._reload_requested.wait())
                done, _ = await asyncio.wait(
                    {stop_wait, reload_wait, *self._tasks}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in self._tasks:
                    if task in done:
                        # A core task died: say why loudly and stop, so systemd restarts us.
                        exc = task.exception() if not task.cancelled() else None
                        log.error("internal task %s ended: %r", task.get_name(), exc)
                        raise RuntimeError(f"task {task.get_name()} ended") from exc
                if reload_wait in done:
                    self._reload_requested.clear()
                    self.reload()
                else:
                    reload_wait.cancel()
        finally:
            stop_wait.cancel()

    def _drift_tracked(self, name: str) -> bool:
        site = self.sites.get(name)
        return site is not None and site.latency_drift

    def healthy(self) -> bool:
        return any(t.get_name() == "scheduler" and not t.done() for t in self._tasks)

    def _on_skip(self, site: str, count: int) -> None:
        self.metrics.skipped(site, count)

    # ------------------------------------------------------------------ reload

    def reload(self) -> bool:
        """SIGHUP: read the file again; apply it if valid, else keep the old config running."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            if new.email is not None:
                resolve_password(new.email, self.environ)
        except (ConfigError, PasswordError) as exc:
            lines = exc.errors if isinstance(exc, ConfigError) else [str(exc)]
            for line in lines:
                log.error("reload rejected, keeping the running config: %s", line)
            self.metrics.reload_ok.set(0)
            self.notifier.ready(summary_line(self.states))
            return False
        old_names = set(self.sites)
        self.config = new
        self.sites = {s.name: s for s in new.sites}
        for name in old_names - self.sites.keys():
            self._forget_site(name)
        for name in self.sites.keys() - old_names:
            self.states[name] = SiteState(site=name)
            self.metrics.add_site(self.states[name])
        self._setup_email(new.email)
        if self.history is not None and new.history is not None:
            self.history.config = new.history
        if self.early is not None and new.early is not None:
            self.early.update(new.early)
            for name, site in self.sites.items():
                if not site.latency_drift:
                    self.early.remove_site(name)
        self.scheduler.set_max_concurrency(new.max_concurrency)
        self.scheduler.set_batch(new.batch_window)
        self.prober.set_precise_latency(new.precise_latency)
        self.scheduler.set_sites(new.sites)
        self.metrics.sites.set(len(self.sites))
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        added, removed = self.sites.keys() - old_names, old_names - self.sites.keys()
        log.info(
            "config reloaded %s", kv(sites=len(self.sites), added=len(added), removed=len(removed))
        )
        self.notifier.ready(summary_line(self.states))
        return True

    def _forget_site(self, name: str) -> None:
        state = self.states.pop(name, None)
        self.metrics.remove_site(name)
        if self.history is not None:
            self.history.forget(name)
        if self.early is not None:
            self.early.remove_site(name)
        if state is not None and state.status is Status.DOWN:
            log.info("site removed while down; incident closed without email %s", kv(site=name))
        if self.store is not None:
            try:
                self.store.delete_site(name)
            except StoreError as exc:
                self._store_failed(exc)

    # ------------------------------------------------------------------ the probe path

    async def _probe_site(self, site: SiteConfig) -> None:
        result = await self.prober.probe(site)
        if site.name not in self.sites:
            return  # removed while the probe was in flight
        self.handle_result(site, result)

    def handle_result(self, site: SiteConfig, result: ProbeResult) -> None:
        state = self.states.get(site.name) or SiteState(site=site.name)
        now = time.time()
        obs = observe(state, result, site.policy, now)
        self.states[site.name] = obs.state
        if obs.events or obs.state.persistent_key() != state.persistent_key():
            self._persist(site, obs.state, obs.events)
        self.metrics.observe(site.name, result, obs.state, obs.downtime_added)
        if self.history is not None:
            self.history.record(site, result, state, obs.state, obs.events, now)
        if result.ok and site.latency_drift and self.early is not None:
            self.early.observe_latency(site.name, result.total, now)
        for event in obs.events:
            self._log_event(site, event)
        if obs.state.status != state.status and self.notifier.enabled:
            # Walks every site: only on a state change, and only when systemd is listening.
            self.notifier.status(summary_line(self.states))

    def _persist(self, site: SiteConfig, state: SiteState, events: tuple[Event, ...]) -> None:
        outgoing: list[Outgoing] = []
        email = self.config.email
        if email is not None:
            for event in events:
                message = build_message(event, email=email, target=site.target)
                outgoing.append(
                    Outgoing(
                        kind=message_kind(event),
                        site=site.name,
                        message=message.as_bytes(policy=email_policy.SMTP),
                        created_at=time.time(),
                    )
                )
        if self.store is None:
            return
        try:
            self.store.save_state(state, outgoing)
        except StoreError as exc:
            self._store_failed(exc)
            # A full disk must not swallow the alert: hold it in memory and send it anyway.
            if outgoing and self.outbox is not None:
                self.outbox.enqueue_unstored(outgoing)
            return
        if outgoing and self.outbox is not None:
            self.outbox.wake()

    def _on_early_event(self, event: EarlyEvent) -> None:
        """An early warning (memory creep, disk filling, slower site, OOM): log, then email."""
        name = event.watch if isinstance(event, OomEvent) else event.subject
        level = logging.INFO if isinstance(event, TrendEnded) else logging.WARNING
        kind = early_message_kind(event)
        email = self.config.email
        message = None
        if email is not None:
            message = build_early_message(event, sender=email.sender, recipients=email.recipients)
        subject = str(message["Subject"]) if message is not None else kind
        log.log(level, "early warning %s", kv(kind=kind, subject=name, msg=subject))
        if message is None or self.store is None:
            return
        outgoing = Outgoing(
            kind=kind,
            site=name,
            message=message.as_bytes(policy=email_policy.SMTP),
            created_at=time.time(),
        )
        try:
            self.store.save_state(None, [outgoing])
        except StoreError as exc:
            self._store_failed(exc)
            if self.outbox is not None:
                self.outbox.enqueue_unstored([outgoing])
            return
        if self.outbox is not None:
            self.outbox.wake()

    def _store_failed(self, exc: StoreError) -> None:
        self.metrics.store_errors.inc()
        log.error("state store write failed (monitoring continues): %s", exc)

    def _log_event(self, site: SiteConfig, event: Event) -> None:
        if isinstance(event, WentDown):
            log.warning("DOWN %s", kv(site=site.name, reason=event.reason, msg=event.message))
        elif isinstance(event, StillDown):
            log.warning(
                "STILL DOWN %s", kv(site=site.name, since=event.since, reminder=event.reminder)
            )
        elif isinstance(event, Recovered):
            log.warning("RECOVERED %s", kv(site=site.name, downtime=round(event.downtime, 1)))
        elif isinstance(event, CertExpiring):
            log.warning("CERTIFICATE %s", kv(site=site.name, days_left=event.days_left))

    # ------------------------------------------------------------------ status views

    def site_status(self) -> list[dict[str, Any]]:
        out = [status_dict(self.sites.get(name), state) for name, state in self.states.items()]
        if self.pages is not None:
            self.pages.annotate(out)
        return out

    def _status_pages(self) -> StatusPages:
        history = self.history
        return StatusPages(
            sites=lambda: self.sites,
            states=lambda: self.states,
            settings=lambda: self.config.status_page or StatusPageConfig(),
            recorder=history,
            reader=None if history is None else HistoryReader(history.store, history),
        )


def status_dict(site: SiteConfig | None, state: SiteState) -> dict[str, Any]:

    last = state.last
    return {
        "site": state.site,
        "target": site.target if site else None,
        "status": state.status.value,
        "since": _iso(state.since),
        "consecutive_failures": state.consecutive_failures,
        "incident_since": _iso(state.incident_started),
        "last": None
        if last is None
        else {
            "at": _iso(last.at),
            "ok": last.ok,
            "status": last.status,
            "total": round(last.total, 6),
            "reason": last.reason,
            "message": last.message,
        },
    }


async def run_daemon(config_path: str, config: Config) -> int:
    daemon = Daemon(config_path, config)
    try:
        daemon.open_store()
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        return await daemon.run()
    except PasswordError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
