"""The early warnings at run time: samples the watched services, the host's disks and CPU steal
and sentinel's own memory on their periods, folds probe latencies into drift trackers, mirrors all
of it into Prometheus gauges and hands every event to `emit`.

A thin shell around the pure parts (trend, warnings, latency): the file reads run in a worker
thread, one batch per wake-up; state is only touched on the event loop. Everything is bounded by the
config: one series per watch and mount (bucket minimums of one window), one tracker per site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sentinel.early.config import EarlyConfig, HostConfig, WatchConfig
from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded, TrendKind, TrendStarted
from sentinel.early.facts import EVENT_LOG_SIZE, DiskFacts, HostFacts, WatchFacts, count_since
from sentinel.early.latency import LatencyTracker
from sentinel.early.sources import (
    CpuTimes,
    DiskUsage,
    MemoryReading,
    Read,
    cpu_times,
    disk_usage,
    mem_total,
    own_cgroup_limit,
    read_pid,
    read_pid_file,
    read_process,
    read_unit,
    steal_ratio,
)
from sentinel.early.trend import SeriesSnapshot, TrendSeries, Verdict
from sentinel.early.warnings import (
    OomState,
    WarningState,
    WarnSettings,
    step,
    step_drift,
    step_oom,
    step_steal,
)
from sentinel.logsetup import kv
from sentinel.promtext import Gauge, Registry

log = logging.getLogger("sentinel.early")

Emit = Callable[[EarlyEvent], None]
INF = math.inf
NAN = math.nan  # a gauge of a watch that cannot be read: "no value", never a healthy-looking 0


@dataclass(slots=True)
class _Watch:
    config: WatchConfig
    series: TrendSeries
    warning: WarningState
    pattern: re.Pattern[str] | None
    next_due: float = 0.0
    oom: OomState = field(default_factory=OomState)
    last_bucket: int | None = None
    last_error: str = ""
    limit: tuple[float | None, str] = (None, "")
    last: MemoryReading | None = None
    verdict: Verdict | None = None  # the latest evaluation, for the status view
    # (time, "restart" | "oom_kill", count), newest last: what a DOWN email of a site that runs
    # on this service tells. A ring: bounded whatever happens.
    events: deque[tuple[float, str, int]] = field(
        default_factory=lambda: deque(maxlen=EVENT_LOG_SIZE)
    )

    @property
    def period(self) -> float:
        return self.config.sample_every


@dataclass(slots=True)
class _Disk:
    mount: str
    series: TrendSeries
    warning: WarningState
    period: float
    next_due: float = 0.0
    last_bucket: int | None = None
    last_error: str = ""
    size: float | None = None
    used: float | None = None
    verdict: Verdict | None = None


@dataclass(slots=True)
class _Steal:
    period: float
    warning: WarningState = field(default_factory=lambda: WarningState("steal", "cpu"))
    next_due: float = 0.0
    previous: CpuTimes | None = None
    ratio: float | None = None  # between the last two samples


@dataclass(slots=True)
class _Site:
    tracker: LatencyTracker
    warning: WarningState


_Runtime = _Watch | _Disk | _Steal


@dataclass(frozen=True, slots=True)
class TrendRecord:
    """A watch's, a disk's or the CPU's trend state as saved across a restart of sentinel: the
    series (bucket minimums, segment, identity) and the warning state, so a continuing trend is
    not warned about again and a warning already sent still gets its RESOLVED."""

    what: str  # what was sampled: if the config changed it meanwhile, the record is not reused
    warning: WarningState
    series: SeriesSnapshot | None = None  # None for CPU steal (no series)


def _watch_what(config: WatchConfig) -> str:
    return f"{config.source} {config.target} {config.cgroup_root}"


@dataclass(slots=True)
class _Batch:
    """What one worker-thread trip read, applied afterwards on the loop."""

    watches: list[tuple[_Watch, Read[MemoryReading]]] = field(default_factory=list)
    disks: list[tuple[_Disk, Read[DiskUsage]]] = field(default_factory=list)
    steal: list[tuple[_Steal, Read[CpuTimes]]] = field(default_factory=list)


def _same_series(a: WatchConfig, b: WatchConfig) -> bool:
    """A reload keeps a watch's history when it still samples the same thing the same way."""
    return (a.source, a.target, a.sample_every, a.window, a.cgroup_root) == (
        b.source,
        b.target,
        b.sample_every,
        b.window,
        b.cgroup_root,
    )


class EarlyWarnings:
    """Construct once per daemon; `run()` as a task; `update()` on reload."""

    def __init__(
        self,
        config: EarlyConfig,
        registry: Registry,
        emit: Emit,
        proc_root: str = "/proc",
        *,
        clock: Callable[[], float] = time.time,
        self_pid: int | None = None,
    ) -> None:
        self.config = config
        self._emit_cb = emit
        self.proc_root = proc_root
        self._clock = clock
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self._mem_total: int | None = None
        self._wake: asyncio.Event | None = None
        r = registry
        self.g_memory = Gauge(
            "sentinel_watch_memory_bytes",
            "Memory of a watched service: anon memory of its cgroup, or RssAnon of its process",
            ["watch"],
            registry=r,
        )
        self.g_growth = Gauge(
            "sentinel_watch_memory_growth_bytes_per_second",
            "Fitted growth of a watched service's memory floor over the window (Theil-Sen)",
            ["watch"],
            registry=r,
        )
        self.g_to_limit = Gauge(
            "sentinel_watch_seconds_to_limit",
            "Forecast seconds until a watched service's memory reaches its limit; +Inf: no trend",
            ["watch"],
            registry=r,
        )
        self.g_disk = Gauge(
            "sentinel_host_disk_seconds_to_full",
            "Forecast seconds until a watched filesystem is full; +Inf if not filling",
            ["mount"],
            registry=r,
        )
        self.g_steal = Gauge(
            "sentinel_host_cpu_steal_ratio",
            "Share of CPU time stolen by the hypervisor between the last two samples",
            registry=r,
        )
        self.g_baseline = Gauge(
            "sentinel_site_latency_baseline_seconds",
            "A site's usual median probe time (median of hourly medians over the baseline span)",
            ["site"],
            registry=r,
        )
        self.g_self_growth = Gauge(
            "sentinel_self_memory_growth_bytes_per_second",
            "Fitted growth of sentinel's own memory floor over the window (Theil-Sen)",
            registry=r,
        )
        self.g_readable = Gauge(
            "sentinel_watch_readable",
            "1 if the latest memory sample of a watched service could be read, else 0",
            ["watch"],
            registry=r,
        )
        self.g_disk_readable = Gauge(
            "sentinel_host_disk_readable",
            "1 if the latest usage sample of a watched filesystem could be read, else 0",
            ["mount"],
            registry=r,
        )
        self._watches: dict[str, _Watch] = {}
        self._self: _Watch | None = None
        self._disks: dict[str, _Disk] = {}
        self._steal = _Steal(period=config.host.cpu_steal_sample_every)
        self._sites: dict[str, _Site] = {}
        # Set when a trend's saved state would differ (a bucket evaluated, a warning changed):
        # sentinel.trend_history waits on it to write the store.
        self.trends_changed = asyncio.Event()
        self._apply_config(config)

    # ------------------------------------------------------------------ config

    def _new_watch(self, config: WatchConfig) -> _Watch:
        kind: TrendKind = "self" if config.source == "self" else "creeping"
        return _Watch(
            config=config,
            series=TrendSeries(config.window, config.sample_every),
            warning=WarningState(kind, config.name, source=config.describe()),
            pattern=re.compile(config.target) if config.source == "process" else None,
        )

    def end_warning(self, warning: WarningState, reason: str) -> None:
        """A warning whose subject is no longer watched (or watched afresh) gets its RESOLVED
        now: otherwise the thread of a WARNING already emailed would never be closed."""
        if warning.active is not None:
            self._emit(TrendEnded(warning=warning.active, at=self._clock(), reason=reason))
            self.trends_changed.set()

    def _apply_config(self, config: EarlyConfig) -> None:
        old_watches = self._watches
        watches: dict[str, _Watch] = {}
        for wc in config.watches:
            old = old_watches.get(wc.name)
            if old is not None and _same_series(old.config, wc):
                old.config = wc
                watches[wc.name] = old
            else:
                if old is not None:
                    self.end_warning(old.warning, "changed")
                watches[wc.name] = self._new_watch(wc)
                # No value until the first sample is read: never "growth 0, +Inf to the limit"
                # for a watch that may never be readable.
                for gauge in (self.g_memory, self.g_growth, self.g_to_limit):
                    gauge.labels(wc.name).set(NAN)
        for name in old_watches.keys() - watches.keys():
            self.end_warning(old_watches[name].warning, "removed")
            for gauge in (self.g_memory, self.g_growth, self.g_to_limit, self.g_readable):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)
        self._watches = watches

        if config.self_watch is None:
            if self._self is not None:
                self.end_warning(self._self.warning, "removed")
            self._self = None
        elif self._self is None or not _same_series(self._self.config, config.self_watch):
            if self._self is not None:
                self.end_warning(self._self.warning, "changed")
            self._self = self._new_watch(config.self_watch)
        else:
            self._self.config = config.self_watch

        host = config.host
        disks: dict[str, _Disk] = {}
        for mount in host.disks:
            old_disk = self._disks.get(mount)
            if old_disk is not None and self._same_disk(old_disk, host):
                disks[mount] = old_disk
            else:
                if old_disk is not None:
                    self.end_warning(old_disk.warning, "changed")
                disks[mount] = _Disk(
                    mount=mount,
                    series=TrendSeries(host.disk_window, host.disk_sample_every),
                    warning=WarningState("disk", mount, source=f"filesystem {mount}"),
                    period=host.disk_sample_every,
                )
                self.g_disk.labels(mount).set(NAN)
        for mount in self._disks.keys() - disks.keys():
            self.end_warning(self._disks[mount].warning, "removed")
            for gauge in (self.g_disk, self.g_disk_readable):
                with contextlib.suppress(KeyError):
                    gauge.remove(mount)
        self._disks = disks
        self._steal.period = host.cpu_steal_sample_every

        if config.drift != self.config.drift:
            for site in self._sites.values():
                site.tracker = LatencyTracker(config.drift)  # (its warning stays, and resolves)
        self.config = config

    def _same_disk(self, disk: _Disk, host: HostConfig) -> bool:
        return (disk.series.window, disk.series.sample_every) == (
            host.disk_window,
            host.disk_sample_every,
        )

    def update(self, config: EarlyConfig) -> None:
        """Apply a reloaded config. Watches and mounts that still sample the same thing keep their
        history and warnings; removed or changed ones lose their series, metrics and state, and
        an active warning of theirs is resolved ("removed", "changed")."""
        self._apply_config(config)
        self.trends_changed.set()  # the saved trends follow the config (removed ones dropped)
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ trends across restarts

    def _trend_runtimes(self) -> dict[str, tuple[_Watch | _Disk | _Steal, str]]:
        runtimes: dict[str, tuple[_Watch | _Disk | _Steal, str]] = {
            f"watch:{w.config.name}": (w, _watch_what(w.config)) for w in self._all_watches()
        }
        runtimes.update({f"disk:{d.mount}": (d, d.mount) for d in self._disks.values()})
        if self.config.host.cpu_steal_warning > 0:
            runtimes["steal:cpu"] = (self._steal, "cpu")
        return runtimes

    def trend_records(self) -> dict[str, TrendRecord]:
        """Every watch's, disk's and the CPU's trend state, by a key naming it, for the store."""
        return {
            key: TrendRecord(
                what,
                runtime.warning,
                None if isinstance(runtime, _Steal) else runtime.series.snapshot(),
            )
            for key, (runtime, what) in self._trend_runtimes().items()
        }

    def restore_trends(self, saved: Mapping[str, TrendRecord]) -> int:
        """Take back the trend states saved before a restart. A record whose watch, disk or
        steal threshold is gone, or now samples something else, resolves its active warning
        ("removed", "changed"). Returns how many were restored."""
        current = self._trend_runtimes()
        restored = 0
        for key, record in saved.items():
            entry = current.get(key)
            if entry is None:
                self.end_warning(record.warning, "removed")
                continue
            runtime, what = entry
            if (record.what, record.warning.kind, record.warning.subject) != (
                what,
                runtime.warning.kind,
                runtime.warning.subject,
            ):
                self.end_warning(record.warning, "changed")
                continue
            if not isinstance(runtime, _Steal):
                try:
                    if record.series is None:
                        raise ValueError("no series saved")
                    runtime.series = TrendSeries.restore(
                        record.series, runtime.series.window, runtime.series.sample_every
                    )
                except ValueError as exc:
                    log.warning("early warning: trend not restored %s", kv(key=key, why=exc))
                    self.end_warning(record.warning, "changed")
                    continue
            runtime.warning = record.warning
            restored += 1
        return restored

    # ------------------------------------------------------------------ latency (hot path)

    def observe_latency(self, site: str, total: float, now: float) -> None:
        """One successful probe's total time. O(1) amortised: a median and an evaluation happen
        once per closed bucket (every `recent_bucket`, 5 minutes by default)."""
        entry = self._sites.get(site)
        if entry is None:
            entry = _Site(LatencyTracker(self.config.drift), WarningState("slower", site))
            self._sites[site] = entry
        verdict = entry.tracker.observe(total, now)
        if verdict is None:
            return
        if verdict.baseline is not None:
            baseline = entry.tracker.baseline_seconds(now)
            if baseline is not None:
                self.g_baseline.labels(site).set(baseline)
        entry.warning, events = step_drift(
            entry.warning, verdict, self.config.drift.consecutive, now
        )
        for event in events:
            self._emit(event)

    def drift_histories(self) -> Iterator[tuple[str, bytes, WarningState | None]]:
        """Every tracked site's latency history (`LatencyTracker.dump`) and its warning state
        when it is worth keeping (a streak or an active warning), for the store."""
        for name, entry in list(self._sites.items()):
            w = entry.warning
            keep = w.active is not None or w.streak > 0
            yield name, entry.tracker.dump(), w if keep else None

    def restore_site(self, name: str, history: bytes, warning: WarningState | None) -> bool:
        """Take back a site's history saved before a restart. False (and a fresh start for the
        site) when it cannot be used, e.g. saved with other bucket sizes."""
        try:
            tracker = LatencyTracker.load(history, self.config.drift)
        except ValueError as exc:
            log.warning("early warning: latency history not restored %s", kv(site=name, why=exc))
            return False
        if warning is None or (warning.kind, warning.subject) != ("slower", name):
            warning = WarningState("slower", name)
        self._sites[name] = _Site(tracker, warning)
        baseline = tracker.baseline_seconds()
        if baseline is not None:
            self.g_baseline.labels(name).set(baseline)
        return True

    def remove_site(self, name: str) -> None:
        """Forget a site (removed from the config, or latency_drift turned off); an active
        SLOWER warning of it is resolved ("removed")."""
        entry = self._sites.pop(name, None)
        if entry is not None:
            self.end_warning(entry.warning, "removed")
        with contextlib.suppress(KeyError):
            self.g_baseline.remove(name)

    def latency_baseline(self, site: str) -> tuple[float, float] | None:
        """A site's usual median probe time and the seconds of history behind it, or None
        before there is enough history (a day by default)."""
        entry = self._sites.get(site)
        if entry is None:
            return None
        baseline = entry.tracker.baseline_seconds()
        if baseline is None:
            return None
        return baseline, entry.tracker.settings.baseline_span

    def watch_facts(
        self, names: Sequence[str], now: float, span: float = 3600.0
    ) -> list[WatchFacts]:
        """What is known of the named watches (unknown names are skipped): restarts and OOM kills
        within `span` seconds before `now`, the latest memory sample, limit and trend."""
        out: list[WatchFacts] = []
        for name in names:
            w = self._watches.get(name)
            if w is None:
                continue
            verdict = w.verdict
            rate = None if verdict is None or w.last_error else verdict.rate_per_s
            out.append(
                WatchFacts(
                    name=name,
                    source=w.config.describe(),
                    span=span,
                    restarts=count_since(w.events, "restart", now - span),
                    oom_kills=count_since(w.events, "oom_kill", now - span),
                    memory=None if w.last is None or w.last_error else float(w.last.bytes),
                    limit=w.limit[0],
                    limit_source=w.limit[1],
                    growth_per_s=rate,
                    growth_over=verdict.covered if verdict is not None else 0.0,
                    error=w.last_error,
                )
            )
        return out

    def host_facts(self) -> HostFacts:
        """The latest CPU steal ratio and disk usage."""
        disks = tuple(
            DiskFacts(d.mount, d.used, d.size)
            for d in self._disks.values()
            if d.used is not None and d.size is not None and not d.last_error
        )
        return HostFacts(steal=self._steal.ratio, disks=disks)

    def active_warnings(self) -> tuple[TrendStarted, ...]:
        """The trends currently warned about (for a status view)."""
        states = [w.warning for w in self._all_watches()]
        states += [d.warning for d in self._disks.values()]
        states += [s.warning for s in self._sites.values()]
        states.append(self._steal.warning)
        return tuple(s.active for s in states if s.active is not None)

    def status_view(self) -> dict[str, list[dict[str, object]]]:
        """What the status page and /api/status show of the watches and disks: each one's state
        ("starting", "unreadable" with the error, "collecting", "ok", "warning") and latest
        figures; None where a figure is not known (JSON has no +Inf)."""
        watches: list[dict[str, object]] = []
        for w in self._all_watches():
            verdict = w.verdict
            watches.append(
                {
                    "watch": w.config.name,
                    "source": w.config.describe(),
                    "state": _state(w.last_error, w.last is not None, verdict, w.warning),
                    "error": w.last_error or None,
                    "memory_bytes": None if w.last is None or w.last_error else w.last.bytes,
                    "growth_bytes_per_second": _rate(w.last_error, verdict),
                    "seconds_to_limit": _finite(_forecast(verdict)) if verdict else None,
                    "limit_bytes": w.limit[0],
                }
            )
        disks: list[dict[str, object]] = []
        for d in self._disks.values():
            verdict = d.verdict
            disks.append(
                {
                    "mount": d.mount,
                    "state": _state(d.last_error, d.used is not None, verdict, d.warning),
                    "error": d.last_error or None,
                    "used_bytes": None if d.last_error else d.used,
                    "size_bytes": d.size,
                    "growth_bytes_per_second": _rate(d.last_error, verdict),
                    "seconds_to_full": _finite(_forecast(verdict)) if verdict else None,
                }
            )
        return {"watches": watches, "disks": disks}

    # ------------------------------------------------------------------ sampling loop

    def _all_watches(self) -> list[_Watch]:
        watches = list(self._watches.values())
        if self._self is not None:
            watches.append(self._self)
        return watches

    def _runtimes(self) -> list[_Runtime]:
        return [*self._all_watches(), *self._disks.values(), self._steal]

    async def run(self) -> None:
        """Sample everything on its period until cancelled."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            # New runtimes (at start, or added by a reload) have next_due 0: due at once.
            due = [r for r in self._runtimes() if r.next_due <= loop.time()]
            if due:
                batch = await asyncio.to_thread(self._read_batch, due)
                self._apply_batch(batch, self._clock())
                after = loop.time()
                for runtime in due:
                    runtime.next_due = (runtime.next_due or after) + runtime.period
                    if runtime.next_due <= after:  # fell behind: skip, do not burst
                        runtime.next_due = after + runtime.period
            pending = [r.next_due for r in self._runtimes()]
            delay = max(0.0, min(pending) - loop.time()) if pending else 3600.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    # -- in the worker thread: file reads only, no state changes

    def _read_batch(self, due: list[_Runtime]) -> _Batch:
        if self._mem_total is None:
            self._mem_total = mem_total(self.proc_root).value
        batch = _Batch()
        for runtime in due:
            if isinstance(runtime, _Watch):
                batch.watches.append((runtime, self._read_watch(runtime)))
            elif isinstance(runtime, _Disk):
                batch.disks.append((runtime, disk_usage(runtime.mount)))
            else:
                batch.steal.append((runtime, cpu_times(self.proc_root)))
        return batch

    def _read_watch(self, watch: _Watch) -> Read[MemoryReading]:
        c = watch.config
        if c.source == "unit":
            return read_unit(c.cgroup_path())
        if c.source == "pid_file":
            return read_pid_file(c.target, self.proc_root)
        if c.source == "process" and watch.pattern is not None:
            return read_process(self.proc_root, watch.pattern, exclude=(self.self_pid,))
        reading = read_pid(self.proc_root, self.self_pid)
        own = own_cgroup_limit(self.proc_root, self.self_pid, c.cgroup_root)
        if reading.value is not None and own.value is not None:
            limit, source = own.value
            return Read(replace(reading.value, limit=limit, limit_source=source))
        return reading

    # -- on the loop

    def _apply_batch(self, batch: _Batch, now: float) -> None:
        # A reload during the read may have dropped a runtime: apply only to current ones.
        for watch, reading in batch.watches:
            if self._watches.get(watch.config.name) is watch or watch is self._self:
                self._apply_watch(watch, reading, now)
        for disk, disk_reading in batch.disks:
            if self._disks.get(disk.mount) is disk:
                self._apply_disk(disk, disk_reading, now)
        for steal, cpu_reading in batch.steal:
            self._apply_steal(steal, cpu_reading, now)

    def _note_error(self, what: str, name: str, previous: str, error: str) -> str:
        """Log a watch or mount becoming unreadable once (not at every sample, nor when only the
        wording changes, e.g. a new pid), and its recovery. Sets `sentinel_watch_readable`."""
        if error and not previous:
            log.warning("early warning: cannot sample %s", kv(**{what: name}, error=error))
        elif error and error != previous:
            log.debug("early warning: still cannot sample %s", kv(**{what: name}, error=error))
        elif not error and previous:
            log.info("early warning: sampling again %s", kv(**{what: name}))
        gauge = self.g_readable if what == "watch" else self.g_disk_readable
        gauge.labels(name).set(0 if error else 1)
        return error

    def _limit_for(self, config: WatchConfig, reading: MemoryReading) -> tuple[float | None, str]:
        if config.limit is not None:
            return float(config.limit), "limit"
        if reading.limit is not None:
            return float(reading.limit), reading.limit_source
        if self._mem_total is not None:
            return float(self._mem_total), "MemTotal"
        return None, ""

    def _apply_watch(self, watch: _Watch, reading: Read[MemoryReading], now: float) -> None:
        c = watch.config
        is_self = c.source == "self"
        watch.last_error = self._note_error("watch", c.name, watch.last_error, reading.error)
        m = reading.value
        if m is None and not is_self:
            self.g_memory.labels(c.name).set(NAN)
        if m is not None:
            restart = watch.series.add(now, float(m.bytes), m.identity)
            if restart is not None:
                log.info("early warning: new trend segment %s", kv(watch=c.name, why=restart))
            if restart == "restarted":
                watch.events.append((now, "restart", 1))
            before = watch.last.events if watch.last is not None else None
            if m.events is not None and before is not None:
                # A restarted unit has a new cgroup whose counters start again from zero.
                base = 0 if restart == "restarted" else before.oom_kill
                kills = m.events.oom_kill - base
                if kills > 0:
                    watch.events.append((now, "oom_kill", kills))
            watch.limit = self._limit_for(c, m)
            watch.last = m
            if not is_self:
                self.g_memory.labels(c.name).set(m.bytes)
            if m.events is not None:
                watch.oom, oom_events = step_oom(
                    watch.oom,
                    m.events,
                    watch=c.name,
                    now=now,
                    level=float(m.current if m.current is not None else m.bytes),
                    limit=watch.limit[0],
                    limit_source=watch.limit[1],
                    source=c.describe(),
                )
                for oom in oom_events:
                    self._emit(oom)
        index = watch.series.bucket_index(now)
        if watch.last_bucket is None or index <= watch.last_bucket:
            if watch.last_bucket is None:
                watch.last_bucket = index
            return
        watch.last_bucket = index
        verdict = watch.verdict = watch.series.detect(now, watch.limit[0])
        settings = WarnSettings(
            warn_within=c.warn_within, min_growth=c.min_growth, require_forecast=not is_self
        )
        watch.warning, events = step(
            watch.warning, verdict, settings, now, limit_source=watch.limit[1]
        )
        self.trends_changed.set()
        rate = verdict.rate_per_s if verdict.rate_per_s is not None else 0.0
        forecast = _forecast(verdict)
        if watch.last_error:  # the trend of an unreadable watch is not known
            rate = forecast = NAN
        if is_self:
            self.g_self_growth.set(rate)
        else:
            self.g_growth.labels(c.name).set(rate)
            self.g_to_limit.labels(c.name).set(forecast)
        for event in events:
            self._emit(event)

    def _apply_disk(self, disk: _Disk, reading: Read[DiskUsage], now: float) -> None:
        disk.last_error = self._note_error("mount", disk.mount, disk.last_error, reading.error)
        if reading.value is not None:
            disk.series.add(now, float(reading.value.used))
            disk.size = float(reading.value.size)
            disk.used = float(reading.value.used)
        else:
            self.g_disk.labels(disk.mount).set(NAN)
        index = disk.series.bucket_index(now)
        if disk.last_bucket is None or index <= disk.last_bucket:
            if disk.last_bucket is None:
                disk.last_bucket = index
            return
        disk.last_bucket = index
        verdict = disk.verdict = disk.series.detect(now, disk.size)
        host = self.config.host
        settings = WarnSettings(warn_within=host.disk_warn_within, min_growth=host.disk_min_growth)
        disk.warning, events = step(
            disk.warning, verdict, settings, now, limit_source="filesystem size"
        )
        self.trends_changed.set()
        self.g_disk.labels(disk.mount).set(NAN if disk.last_error else _forecast(verdict))
        for event in events:
            self._emit(event)

    def _apply_steal(self, steal: _Steal, reading: Read[CpuTimes], now: float) -> None:
        if reading.value is None:
            return
        previous, steal.previous = steal.previous, reading.value
        if previous is None:
            return
        ratio = steal_ratio(previous, reading.value)
        if ratio is None:
            return
        self.g_steal.set(ratio)
        steal.ratio = ratio
        before = steal.warning
        steal.warning, events = step_steal(
            steal.warning, ratio, self.config.host.cpu_steal_warning, now
        )
        if steal.warning != before:
            self.trends_changed.set()
        for event in events:
            self._emit(event)

    def _emit(self, event: EarlyEvent) -> None:
        if isinstance(event, TrendStarted) and event.kind == "self":
            log.error(
                "sentinel's own memory is growing %s",
                kv(rate_bytes_per_s=round(event.rate_per_s, 3), level=round(event.level)),
            )
        elif isinstance(event, TrendStarted):
            log.warning(
                "early warning %s",
                kv(kind=event.kind, subject=event.subject, rate=round(event.rate_per_s, 3)),
            )
        elif isinstance(event, TrendEnded):
            log.warning(
                "early warning resolved %s",
                kv(kind=event.kind, subject=event.subject, reason=event.reason),
            )
        elif isinstance(event, OomEvent):
            log.warning(
                "OOM %s", kv(watch=event.watch, kills=event.oom_kills, high=event.high_events)
            )
        try:
            self._emit_cb(event)
        except Exception:
            log.exception("early warning: emit failed %s", kv(event=type(event).__name__))


def _state(error: str, ever_read: bool, verdict: Verdict | None, warning: WarningState) -> str:
    if error:
        return "unreadable"
    if not ever_read:
        return "starting"
    if warning.active is not None:
        return "warning"
    if verdict is None or verdict.rate_per_s is None:
        return "collecting"
    return "ok"


def _rate(error: str, verdict: Verdict | None) -> float | None:
    if error or verdict is None:
        return None
    return verdict.rate_per_s


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _forecast(verdict: Verdict) -> float:
    if verdict.rising and verdict.seconds_to_limit is not None:
        return verdict.seconds_to_limit
    return INF
