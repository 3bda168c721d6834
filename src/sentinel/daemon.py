"""The running daemon: wires config, scheduler, probes, monitor, store, outbox, metrics and web,
and handles the signals (TERM/INT stop, HUP reload).

Every probe result flows one way:
probe -> monitor.observe -> (store + outbox, in one transaction) -> metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sentinel import drift_history, reconcile, status_views, trend_history
from sentinel.canary import Canaries, canary_interval
from sentinel.config import Config, SiteConfig
from sentinel.deadman import DeadmanSwitch
from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded
from sentinel.early.messages import early_message_kind
from sentinel.early.service import EarlyWarnings
from sentinel.eventloop import running_loop_name
from sentinel.heartbeats.config import TokenError, read_tokens
from sentinel.heartbeats.service import HeartbeatService, alert_heartbeat
from sentinel.heartbeats.state import Event as HeartbeatEvent
from sentinel.heartbeats.state import HeartbeatState
from sentinel.history.recorder import HistoryRecorder
from sentinel.listen import ListenError, listen_error, status_page_url
from sentinel.logsetup import kv
from sentinel.maintenance import MaintenanceClock
from sentinel.metrics import Metrics
from sentinel.monitor import (
    CertExpiring,
    Event,
    Flapping,
    Recovered,
    SiteState,
    Stable,
    Status,
    StillDown,
    WentDown,
    observe,
)
from sentinel.notify.alert_context import AlertContext
from sentinel.notify.channels import SetupError
from sentinel.notify.dispatch import Dispatcher
from sentinel.notify.group_message import NetworkNews
from sentinel.notify.smtp import PasswordError
from sentinel.probes.prober import Prober, internal_error_text
from sentinel.probes.result import ProbeResult
from sentinel.scheduler import Scheduler
from sentinel.silences import Silence, active_for
from sentinel.site_states import SiteStates, summary_line
from sentinel.status_views import decode_summary
from sentinel.store import Outgoing, Store, StoreError
from sentinel.systemd import Notifier, WatchdogFeeder
from sentinel.web import WebServer, make_routes, start_server
from sentinel.webauth import WebAccess, WebConfigError, load_web_access
from sentinel.webviews.pages import StatusPages

log = logging.getLogger("sentinel")

EXIT_OK = 0
SILENCE_POLL = 1.0  # seconds: `sentinel silence` reaches the daemon within this (+ a probe)
INTERNAL_ERROR_LOG_EVERY = 3600.0  # seconds between tracebacks of one site's internal error
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the listen address cannot be used (README "Exit codes")
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop


def resolve_state_dir(config: Config, environ: Mapping[str, str] = os.environ) -> Path:
    """config state_dir, else systemd's $STATE_DIRECTORY, else ./.sentinel."""
    if config.state_dir:
        return Path(config.state_dir)
    systemd_dirs = environ.get("STATE_DIRECTORY", "")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    return Path(".sentinel")


class Daemon:
    def __init__(
        self, config_path: str, config: Config, *, environ: Mapping[str, str] = os.environ
    ):
        self.config_path = config_path
        self.config = config
        self.environ = environ
        self.sites: dict[str, SiteConfig] = reconcile.owned_sites(config)
        self.states = SiteStates()  # counts by status: the STATUS line costs O(1) a change
        self.metrics = Metrics()
        self.maintenance = MaintenanceClock(config.maintenance)
        self.metrics.watch_maintenance(lambda: self.maintenance)
        self.silences: list[Silence] = []
        self.metrics.watch_silences(lambda: self.silences)
        self.store: Store | None = None
        self.prober = Prober(
            user_agent=config.user_agent,
            precise_latency=config.precise_latency,
            resolver_threads=config.max_concurrency,  # lookups never wait for a thread
        )
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
        # Alerts: the channels ([email] and [[channels]]) and one outbox sender per channel.
        self.dispatch = Dispatcher(None, self.metrics, states=lambda: self.states, environ=environ)
        self.early: EarlyWarnings | None = None
        if config.early is not None:
            self.early = EarlyWarnings(config.early, self.metrics.registry, self._on_early_event)
        # What a DOWN email says beyond the event: phase times against the site's normal, and
        # the restarts / OOM kills / memory of the local services it names in `watch`.
        self.alert_context = AlertContext(lambda: self.early)
        self.dispatch.message_context = self.alert_context
        self.heartbeats = HeartbeatService(
            self.metrics.registry, self._persist_heartbeat, muted=self.is_muted
        )
        self.canaries = Canaries(
            config.canaries,
            self.prober.probe,
            self._on_network,
            lambda: any(s.consecutive_failures for s in self.states.values()),
            self.metrics.registry,
            interval=canary_interval(config.sites),
        )
        self.deadman = DeadmanSwitch(
            self.metrics.deadman_pings,
            progress=lambda: self.scheduler.loops,
            healthy=self.healthy,
            undeliverable=lambda: self.dispatch.health.undeliverable(time.time()),
            summary=lambda: summary_line(self.states),
        )
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.port: int | None = None
        self._lock_fd: int | None = None
        self._internal_error_logged: dict[str, float] = {}
        self.history: HistoryRecorder | None = None
        self.pages: StatusPages | None = None
        self.web: WebServer | None = None
        self._web_swaps: set[asyncio.Task[None]] = set()

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

    def _setup_channels(self) -> None:
        """Build the alert channels (raises SetupError or PasswordError: the caller exits)."""
        self.dispatch.attach_store(self.store)
        self.dispatch.configure(self.config, self.dispatch.build(self.config))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        server = None
        try:
            access = self.web_access(self.config)  # before anything starts: a bad file exits
            self._setup_channels()
            self._restore_states()
            if self.store is not None and self.early is not None:
                drift_sites = [n for n, site in self.sites.items() if site.latency_drift]
                drift_history.restore(self.store, self.early, drift_sites)
                trend_history.restore(self.store, self.early)
            heartbeats = reconcile.owned_heartbeats(self.config)
            hb_tokens = read_tokens(heartbeats)
            self.heartbeats.start(heartbeats, hb_tokens, self.store)
            await self.prober.start()
            if self.config.shard is not None:
                log.info(
                    "shard %s: %d of %d sites",
                    self.config.shard,
                    len(self.sites),
                    len(self.config.sites),
                )
            if self.config.listen:
                routes = make_routes(
                    render_metrics=self.metrics.render_chunks,
                    site_status=self.site_views,
                    healthy=self.healthy,
                    early_status=self.early.status_view if self.early is not None else None,
                    dead_letters=lambda: self.dispatch.dead_letters,
                    heartbeat_status=self.heartbeat_status,
                    extra_status=self.extra_status,
                )
                self.pages = self._status_pages()
                routes.update(self.pages.routes(routes))
                try:
                    server, self.port = await start_server(
                        routes,
                        self.config.listen,
                        {"/ping/": self.heartbeats.handle},
                        self.pages.prefixes(),
                        access,
                    )
                except OSError as exc:  # one line saying what to do, not a traceback
                    raise listen_error(self.config.listen, exc) from None
                self.web = server
                log.info("serving metrics %s", kv(listen=self.config.listen, port=self.port))
                tls = access.ssl_context is not None
                log.info("status page %s", status_page_url(self.config.listen, self.port, tls=tls))
            if self.store is not None:
                self._tasks.append(loop.create_task(self.dispatch.run(), name="outbox"))
            self.scheduler.set_sites(self.sites.values())
            self._tasks.append(loop.create_task(self.scheduler.run(), name="scheduler"))
            self._tasks.append(loop.create_task(self.heartbeats.run(), name="heartbeats"))
            self.canaries.restore(self.store)
            self._tasks.append(loop.create_task(self.canaries.run(), name="canaries"))
            self.deadman.configure(self.config.deadman)
            self._tasks.append(loop.create_task(self.deadman.run(), name="deadman"))
            if self.store is not None:
                self._load_silences()
                self._tasks.append(loop.create_task(self._watch_silences(), name="silences"))
            if self.history is not None:
                self._tasks.append(loop.create_task(self.history.run(), name="history"))
            if self.pages is not None:  # the page's figures and blocks, ahead of requests
                self._tasks.append(loop.create_task(self.pages.keep_warm(), name="status-page"))
            if self.early is not None:
                self._tasks.append(loop.create_task(self.early.run(), name="early-warnings"))
                if self.store is not None:
                    saver = drift_history.save_periodically(
                        self.store, self.early, self._drift_tracked, self._store_failed
                    )
                    self._tasks.append(loop.create_task(saver, name="drift-history"))
                    trends = trend_history.save_when_changed(
                        self.store, self.early, self._store_failed
                    )
                    self._tasks.append(loop.create_task(trends, name="trend-history"))
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
                    email=self.config.email is not None,
                    channels=",".join(self.dispatch.channels) or "none",
                    loop=running_loop_name(),
                ),
            )
            await self._main_loop()
            return EXIT_OK
        finally:
            self.notifier.stopping()
            log.info("stopping")
            if self.store is not None:
                # Give an alert enqueued just before SIGTERM a moment to go out now; anything
                # left stays in the outbox for the next start (at-least-once).
                with contextlib.suppress(Exception):
                    await self.dispatch.flush(5.0)
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
                    with contextlib.suppress(Exception):
                        trend_history.save(self.store, self.early, self._store_failed)
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
                    await self.reload()
                else:
                    reload_wait.cancel()
        finally:
            stop_wait.cancel()

    def _load_silences(self) -> None:
        if self.store is None:
            return
        try:
            # The baseline of "changed elsewhere" is taken before the read: a silence the CLI
            # commits from now on is seen by the next poll, also one right after start.
            self.store.changed_elsewhere()
            silences = self.store.active_silences(time.time())
        except StoreError as exc:
            self._store_failed(exc)
            return
        if [s.id for s in silences] != [s.id for s in self.silences]:
            log.info("silences %s", kv(active=len(silences)))
            self.heartbeats.poke()  # (after the assignment below) a held alert may be due now
        self.silences = silences

    def is_muted(self, name: str, now: float) -> bool:
        """A maintenance window or a silence covers the site or heartbeat `name` at `now`
        (a name in `sites = [...]` or `sentinel silence NAME` covers both kinds)."""
        return bool(self.maintenance.active_for(name, now)) or bool(
            active_for(self.silences, name, now)
        )

    async def _watch_silences(self) -> None:
        """`sentinel silence` writes the store; pick its changes up within SILENCE_POLL."""
        while True:
            await asyncio.sleep(SILENCE_POLL)
            if self.store is None:
                continue
            try:
                changed = self.store.changed_elsewhere()
            except StoreError as exc:
                self._store_failed(exc)
                continue
            now = time.time()
            if changed or any(s.until <= now for s in self.silences):
                self._load_silences()

    def _drift_tracked(self, name: str) -> bool:
        site = self.sites.get(name)
        return site is not None and site.latency_drift

    def healthy(self) -> bool:
        return any(t.get_name() == "scheduler" and not t.done() for t in self._tasks)

    def _on_skip(self, site: str, count: int) -> None:
        self.metrics.skipped(site, count)

    def _web_swapped(self, task: asyncio.Task[None]) -> None:
        self._web_swaps.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("web_config: cannot apply the new one: %r", task.exception())

    def web_access(self, config: Config) -> WebAccess:
        """TLS and basic auth from `[sentinel] web_config` (raises WebConfigError)."""
        if not config.web_config:
            return WebAccess()
        access = load_web_access(config.web_config)
        if access.auth is not None and access.ssl_context is None:
            log.warning("web_config: basic auth without TLS sends passwords in clear text")
        return access

    def swap_web_access(self, access: WebAccess) -> None:
        """Reload: TLS and basic auth for the next connections, TLS on or off included."""
        if self.web is None:
            return
        swap = asyncio.get_running_loop().create_task(self.web.set_access(access))
        self._web_swaps.add(swap)
        swap.add_done_callback(self._web_swapped)

    # ---------------------------------------------------------- reload (reconcile.py)

    async def reload(self) -> bool:
        """SIGHUP: read the file again (in a child process: sentinel.config_child); apply it if
        valid, else keep the old config running."""
        return await reconcile.reload(self)

    def _forget_site(self, name: str) -> None:
        reconcile.forget_site(self, name)

    def forget_internal_error(self, name: str) -> None:
        """Forget when a removed site's internal error was last logged (bounds the dict)."""
        self._internal_error_logged.pop(name, None)

    def store_failed(self, exc: StoreError) -> None:
        """Count and log a failed store write; monitoring continues."""
        self._store_failed(exc)

    # ------------------------------------------------------------------ the probe path

    async def _probe_site(self, site: SiteConfig) -> None:
        """Probe once and record the result, whatever happens: a probe that raises despite its
        contract is recorded as a failed probe (reason "error"), and a result that cannot be
        recorded is counted and logged (once per site per hour), never silently dropped."""
        started_at = time.time()
        try:
            result = await self.prober.probe(site)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._internal_error(site.name, "probe", exc)
            result = ProbeResult.failure("error", internal_error_text(exc), started_at, 0.0)
        if site.name not in self.sites:
            return  # removed while the probe was in flight
        try:
            self.handle_result(site, result)
        except Exception as exc:
            self._internal_error(site.name, "recording the result", exc)

    def _internal_error(self, site: str, during: str, exc: Exception) -> None:
        self.metrics.internal_errors.inc()
        now = time.monotonic()
        last = self._internal_error_logged.get(site)
        if last is not None and now - last < INTERNAL_ERROR_LOG_EVERY:
            return
        # Bounded by the configured sites (entries of removed sites go in _forget_site).
        self._internal_error_logged[site] = now
        log.error(
            "internal error %s for site=%s (a bug: please report it; logged once an hour)",
            during,
            site,
            exc_info=exc,
        )

    def handle_result(self, site: SiteConfig, result: ProbeResult) -> None:
        state = self.states.get(site.name) or SiteState(site=site.name)
        now = time.time()
        # (The lookups are skipped when there is nothing to look up: this runs every probe.)
        muted = (
            (bool(self.maintenance.windows) and bool(self.maintenance.active_for(site.name, now)))
            or (bool(self.silences) and bool(active_for(self.silences, site.name, now)))
            or self.canaries.holding  # sentinel's own network is down (sentinel.canary)
        )
        self.alert_context.observe(site.name, result)
        if not result.ok:
            self.canaries.poke()
        obs = observe(state, result, site.policy, now, muted=muted)
        new = obs.state
        if new.consecutive_failures and new.status is not Status.DOWN:  # "pending"
            # Confirm (or clear) the failure at retry_interval instead of whole intervals.
            self.scheduler.retry(site.name, site.policy.retry_interval)
        self.states[site.name] = new
        if obs.events or new.persistent_key() != state.persistent_key():
            self._persist(site, obs.state, obs.events)
        self.metrics.observe(site.name, result, obs.state, obs.downtime_added)
        if self.history is not None:
            self.history.record(site, result, state, obs.state, obs.events, now, muted)
        if result.ok and site.latency_drift and self.early is not None:
            self.early.observe_latency(site.name, result.total, now)
        for event in obs.events:
            self._log_event(site, event)
        if obs.state.status != state.status and self.notifier.enabled:
            self.notifier.status(summary_line(self.states))

    def _persist(self, site: SiteConfig, state: SiteState, events: tuple[Event, ...]) -> None:
        outgoing: list[Outgoing] = []
        for event in events:
            outgoing.extend(self.dispatch.outgoing_for_event(event, site))
        if self.store is None:
            return
        try:
            self.store.save_state(state, outgoing)
        except StoreError as exc:
            self._store_failed(exc)
            # A full disk must not swallow the alert: hold it in memory and send it anyway.
            if outgoing:
                self.dispatch.enqueue_unstored(outgoing)
            return
        if outgoing:
            self.dispatch.wake()

    def _on_network(self, news: NetworkNews) -> None:
        """The network canary's NETWORK alert or its RECOVERED: enqueue it on every channel."""
        outgoing = self.dispatch.outgoing_for_network(news)
        if not outgoing or self.store is None:
            return
        try:
            self.store.save_state(None, outgoing)
        except StoreError as exc:
            self._store_failed(exc)
            self.dispatch.enqueue_unstored(outgoing)
            return
        self.dispatch.wake()

    def _persist_heartbeat(self, state: HeartbeatState, events: Sequence[HeartbeatEvent]) -> None:
        alert_heartbeat(
            store=self.store,
            dispatch=self.dispatch,
            email=self.config.email,
            state=state,
            events=events,
            on_store_error=self._store_failed,
            now=time.time(),
        )

    def _on_early_event(self, event: EarlyEvent) -> None:
        """An early warning (memory creep, disk filling, slower site, OOM): log, then email."""
        name = event.watch if isinstance(event, OomEvent) else event.subject
        level = logging.INFO if isinstance(event, TrendEnded) else logging.WARNING
        kind = early_message_kind(event)
        outgoing = self.dispatch.outgoing_for_early(event)
        summary = outgoing[0].alert if outgoing else None
        subject = kind if summary is None else decode_summary(summary)
        log.log(level, "early warning %s", kv(kind=kind, subject=name, msg=subject))
        if not outgoing or self.store is None:
            return
        try:
            self.store.save_state(None, outgoing)
        except StoreError as exc:
            self._store_failed(exc)
            self.dispatch.enqueue_unstored(outgoing)
            return
        self.dispatch.wake()

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
        elif isinstance(event, Flapping):
            log.warning("FLAPPING %s", kv(site=site.name, changes=event.changes))
        elif isinstance(event, Stable):
            log.warning("STABLE %s", kv(site=site.name, status=event.status.value))

    # ---------------------------------------------------------- status views (status_views.py)

    def site_status(self) -> list[dict[str, Any]]:
        return status_views.site_status(self)

    def site_views(self) -> Iterator[dict[str, Any]]:
        return status_views.site_views(self)

    def heartbeat_status(self) -> list[dict[str, Any]]:
        return status_views.heartbeat_status(self)

    def extra_status(self) -> dict[str, Any]:
        return status_views.extra_status(self)

    def _status_pages(self) -> StatusPages:
        return status_views.status_pages(self)


async def run_daemon(config_path: str, config: Config) -> int:
    daemon = Daemon(config_path, config)
    try:
        daemon.open_store()
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        return await daemon.run()
    except (PasswordError, SetupError, TokenError, WebConfigError) as exc:
        log.error("%s: %s", config_path, exc)
        return EXIT_CONFIG
    except ListenError as exc:
        log.error("%s", exc)
        return EXIT_UNAVAILABLE
