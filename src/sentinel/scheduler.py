"""Drift-free per-site timers: when each site is probed, how many probes run at once, how late.

A site's k-th tick is due at `start + k * interval` (never "sleep after the probe", which drifts by
the probe's own duration); each site's first tick is spread randomly over its interval so a fleet
does not probe in bursts. One heap holds the next tick of every site; one loop sleeps until the
earliest. A probe never overlaps its own previous one: that tick is skipped and counted. A
semaphore bounds the probes in flight, and lateness (actual start - due time, waiting for the
semaphore included) is reported so a monitor that cannot keep up says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sentinel.config import SiteConfig

log = logging.getLogger("sentinel.scheduler")

HEARTBEAT = 1.0  # seconds; the longest the loop sleeps without proving it is alive
ProbeRunner = Callable[[SiteConfig], Awaitable[None]]


@dataclass(slots=True)
class _Entry:
    site: SiteConfig
    start: float  # loop time of tick 0
    tick: int  # index of the next tick
    task: asyncio.Task[None] | None = None
    retry_at: float | None = None  # an extra probe before the next tick (see Scheduler.retry)

    def due(self) -> float:
        return self.start + self.tick * self.site.interval

    def next_due(self) -> float:
        regular = self.due()
        return regular if self.retry_at is None else min(regular, self.retry_at)


class Scheduler:
    """Runs `run_probe(site)` for every site on its schedule until stopped."""

    def __init__(
        self,
        run_probe: ProbeRunner,
        *,
        max_concurrency: int,
        on_lag: Callable[[float], None] | None = None,
        on_skip: Callable[[str, int], None] | None = None,
        rng: random.Random | None = None,
        heartbeat: float = HEARTBEAT,
        batch: float = 0.0,
    ) -> None:
        self._run_probe = run_probe
        self._heartbeat = heartbeat
        # Every wake-up of an idle process costs ~0.2 ms of CPU (context switch, epoll, loop
        # turn), as much as the probe's own Python work: ticks due within `batch` seconds of each
        # other start together, each at most `batch` late (counted in the lag histogram).
        self._batch = batch
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._on_lag = on_lag
        self._on_skip = on_skip
        self._rng = rng or random.Random()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._waiter: asyncio.Future[None] | None = None
        self._running = False
        self.loops = 0  # grows while the loop makes progress; fed to the systemd watchdog
        self.dispatched = 0

    # ------------------------------------------------------------------ configuration

    def set_sites(self, sites: Iterable[SiteConfig]) -> None:
        """Apply a site list: new sites start, removed ones stop, changed ones keep their phase."""
        loop_time = asyncio.get_running_loop().time()
        wanted = {site.name: site for site in sites}
        for name in list(self._entries):
            if name not in wanted:
                removed = self._entries.pop(name)
                if removed.task is not None and not removed.task.done():
                    removed.task.cancel()
        for name, site in wanted.items():
            entry = self._entries.get(name)
            if entry is None:
                offset = self._rng.random() * site.interval
                self._entries[name] = _Entry(site=site, start=loop_time + offset, tick=0)
            elif entry.site != site:
                if entry.site.interval != site.interval:
                    # Keep the pending tick (no site probed twice in one tick), then the new pace.
                    entry.start, entry.tick = entry.due(), 0
                entry.site = site
        self._rebuild_heap()

    def retry(self, name: str, delay: float) -> None:
        """Probe `name` once more `delay` seconds from now, besides its regular ticks (a failed
        probe is confirmed or cleared fast). No-op when the next regular tick comes sooner."""
        entry = self._entries.get(name)
        if entry is None:
            return
        at = asyncio.get_running_loop().time() + delay
        if at >= entry.due() or (entry.retry_at is not None and entry.retry_at <= at):
            return
        entry.retry_at = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, name))
        self._wake()

    def set_batch(self, seconds: float) -> None:
        self._batch = seconds

    def set_max_concurrency(self, value: int) -> None:
        if value != self._max_concurrency:
            # Probes in flight keep the old semaphore; new ones take the new bound.
            self._semaphore = asyncio.Semaphore(value)
            self._max_concurrency = value

    def _rebuild_heap(self) -> None:
        self._heap = []
        for name, entry in self._entries.items():
            self._seq += 1
            self._heap.append((entry.next_due(), self._seq, name))
        heapq.heapify(self._heap)
        self._wake()

    @property
    def site_count(self) -> int:
        return len(self._entries)

    def in_flight(self) -> int:
        return sum(1 for e in self._entries.values() if e.task is not None and not e.task.done())

    # ------------------------------------------------------------------ the loop

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        handle = loop.call_at(when, self._wake)
        try:
            await self._waiter
        finally:
            handle.cancel()
            self._waiter = None

    async def run(self) -> None:
        """The scheduling loop; cancel it (or call stop) to end. Probes in flight are cancelled."""
        loop = asyncio.get_running_loop()
        self._running = True
        try:
            while True:
                self.loops += 1
                now = loop.time()
                if not self._heap or self._heap[0][0] > now:
                    # Wake at least every heartbeat even with nothing due, so the systemd
                    # watchdog (fed from `loops`) can tell an idle loop from a stuck one.
                    # With `batch`, wake that long after the earliest due tick, so the ticks due
                    # meanwhile start in the same wake-up (see __init__).
                    if self._heap:
                        next_due = self._heap[0][0] + self._batch
                    else:
                        next_due = now + self._heartbeat
                    await self._sleep_until(min(next_due, now + self._heartbeat))
                    continue
                due, _, name = self._heap[0]
                heapq.heappop(self._heap)
                entry = self._entries.get(name)
                if entry is None or entry.next_due() != due:
                    continue  # removed or rescheduled since this heap item was pushed
                if entry.retry_at is not None and entry.retry_at == due:
                    entry.retry_at = None
                    if entry.task is None or entry.task.done():
                        entry.task = loop.create_task(self._probe(entry, entry.site, due))
                        self.dispatched += 1
                    self._seq += 1
                    heapq.heappush(self._heap, (entry.due(), self._seq, name))
                    continue
                entry.retry_at = None  # this tick's probe serves as the retry
                if entry.task is not None and not entry.task.done():
                    self._count_skip(name, 1)
                else:
                    entry.task = loop.create_task(self._probe(entry, entry.site, due))
                    self.dispatched += 1
                entry.tick += 1
                next_due = entry.due()
                if next_due <= now:
                    # We fell more than a whole interval behind (suspend, overload): skip ahead.
                    missed = math.floor((now - next_due) / entry.site.interval) + 1
                    entry.tick += missed
                    self._count_skip(name, missed)
                    next_due = entry.due()
                self._seq += 1
                heapq.heappush(self._heap, (next_due, self._seq, name))
        finally:
            self._running = False
            await self._cancel_all()

    def _count_skip(self, name: str, count: int) -> None:
        if self._on_skip is not None:
            self._on_skip(name, count)

    async def _probe(self, entry: _Entry, site: SiteConfig, due: float) -> None:
        semaphore = self._semaphore
        try:
            async with semaphore:
                lag = asyncio.get_running_loop().time() - due
                if self._on_lag is not None:
                    self._on_lag(max(0.0, lag))
                try:
                    await self._run_probe(site)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a probe must never take the scheduler down
                    log.exception("probe of site=%s raised", site.name)
        finally:
            # A finished task is not kept until the site's next tick (with its coroutine,
            # ~0.4 KiB a site): "no task" means "not running" as a done one does.
            if entry.task is asyncio.current_task():
                entry.task = None

    async def _cancel_all(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None and not e.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
