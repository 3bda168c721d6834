"""The scheduler: drift-free ticks, spread first ticks, the concurrency bound, no self-overlap."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import defaultdict
from collections.abc import Callable

from sentinel.config import SiteConfig
from sentinel.scheduler import Scheduler
from timing import run_delay


def site(name: str, interval: float = 0.2, timeout: float = 0.1) -> SiteConfig:
    return SiteConfig(
        name=name, kind="tcp", target="127.0.0.1:9", interval=interval, timeout=timeout
    )


async def run_for(
    scheduler: Scheduler, seconds: float, until: Callable[[], bool] = lambda: True
) -> float:
    """Run the scheduler `seconds`, and on until `until()` holds (a loaded machine runs it late;
    at most 30 s more). Returns the seconds this process waited for a CPU meanwhile
    (timing.run_delay): how late a timer may have fired through no fault of the scheduler."""
    waited_before = run_delay()
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)  # the system under test is time itself: let it run a while
    for _ in range(3000):
        if until():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert until(), "the condition did not hold within 30 s"
    return max(0.0, run_delay() - waited_before)


async def test_ticks_do_not_drift_with_probe_duration() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def slowish_probe(_: SiteConfig) -> None:
        starts.append(loop.time())
        await asyncio.sleep(0.05)  # a probe that takes a quarter of the interval

    scheduler = Scheduler(slowish_probe, max_concurrency=10, rng=random.Random(1))
    scheduler.set_sites([site("a", interval=0.2)])
    waited = await run_for(scheduler, 1.5, until=lambda: len(starts) >= 6)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Sleep-after-probe would give gaps of 0.25 s; tick k at start + k * interval gives 0.2 s.
    # (The first and the last start may be late by at most the time the machine withheld.)
    average = (starts[-1] - starts[0]) / (len(starts) - 1)
    assert abs(average - 0.2) < 0.02 + waited / (len(starts) - 1), gaps


async def test_first_ticks_are_spread_over_the_interval() -> None:
    loop = asyncio.get_running_loop()
    first: dict[str, float] = {}
    t0 = loop.time()

    async def probe(s: SiteConfig) -> None:
        first.setdefault(s.name, loop.time() - t0)

    scheduler = Scheduler(probe, max_concurrency=100, rng=random.Random(7))
    scheduler.set_sites([site(f"s{i}", interval=1.0) for i in range(40)])
    await run_for(scheduler, 1.1, until=lambda: len(first) == 40)
    offsets = sorted(first.values())
    # Not a burst: the first probes spread over most of the interval.
    assert offsets[-1] - offsets[0] > 0.6
    assert sum(1 for o in offsets if o < 0.25) < 25


async def test_concurrency_bound_is_respected() -> None:
    in_flight = 0
    peak = 0

    async def probe(_: SiteConfig) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1

    scheduler = Scheduler(probe, max_concurrency=3, rng=random.Random(2))
    scheduler.set_sites([site(f"s{i}", interval=0.2, timeout=0.15) for i in range(20)])
    await run_for(scheduler, 0.8, until=lambda: peak == 3)
    assert peak == 3


async def test_a_probe_never_overlaps_its_previous_one_and_skips_are_counted() -> None:
    running: dict[str, int] = defaultdict(int)
    overlaps = 0
    skipped: dict[str, int] = defaultdict(int)

    async def stuck_probe(s: SiteConfig) -> None:
        nonlocal overlaps
        running[s.name] += 1
        overlaps += running[s.name] > 1
        await asyncio.sleep(0.5)  # longer than two intervals
        running[s.name] -= 1

    def on_skip(name: str, count: int) -> None:
        skipped[name] += count

    scheduler = Scheduler(stuck_probe, max_concurrency=10, on_skip=on_skip, rng=random.Random(3))
    scheduler.set_sites([site("slow", interval=0.2)])
    await run_for(scheduler, 1.3, until=lambda: skipped["slow"] >= 2)
    assert overlaps == 0


async def test_lag_is_reported_including_waiting_for_the_semaphore() -> None:
    lags: list[float] = []

    async def probe(_: SiteConfig) -> None:
        await asyncio.sleep(0.1)

    scheduler = Scheduler(probe, max_concurrency=1, on_lag=lags.append, rng=random.Random(4))
    scheduler.set_sites([site(f"s{i}", interval=1.0, timeout=0.5) for i in range(5)])
    # Until someone waited for a free slot.
    await run_for(scheduler, 1.2, until=lambda: len(lags) >= 4 and max(lags) >= 0.09)


async def test_set_sites_adds_removes_and_keeps_changed_sites() -> None:
    calls: dict[str, int] = defaultdict(int)

    async def probe(s: SiteConfig) -> None:
        calls[s.name] += 1

    scheduler = Scheduler(probe, max_concurrency=10, rng=random.Random(5))
    scheduler.set_sites(
        [site("keep", interval=0.1, timeout=0.05), site("gone", interval=0.1, timeout=0.05)]
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.35)
    gone_before = calls["gone"]
    scheduler.set_sites(
        [site("keep", interval=0.1, timeout=0.06), site("new", interval=0.1, timeout=0.05)]
    )
    await asyncio.sleep(0.35)
    for _ in range(3000):  # a loaded machine runs the ticks late: on until they came (<= 30 s)
        if calls["new"] >= 2 and calls["keep"] >= 5:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert calls["gone"] == gone_before
    assert calls["new"] >= 2
    assert calls["keep"] >= 5
    assert scheduler.site_count == 2


async def test_ticks_due_close_together_start_in_one_wake_up_at_most_the_window_late() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    lags: list[float] = []

    async def probe(_: SiteConfig) -> None:
        starts.append(loop.time())

    scheduler = Scheduler(
        probe, max_concurrency=100, on_lag=lags.append, rng=random.Random(3), batch=0.1
    )
    scheduler.set_sites([site(f"s{i}", interval=1.0) for i in range(40)])
    waited = await run_for(scheduler, 1.05, until=lambda: len(starts) >= 30)
    # 40 first ticks spread over 1 s, started in wake-ups at least 0.1 s apart: few distinct
    # start times, and no probe later than the window (plus scheduling noise).
    wake_ups = 1 + sum(1 for a, b in itertools.pairwise(starts) if b - a > 0.005)
    assert wake_ups <= 11, wake_ups
    assert max(lags) <= 0.1 + 0.05 + waited, max(lags)
    # Without a window every tick has its own wake-up.
    starts.clear()
    unbatched = Scheduler(probe, max_concurrency=100, rng=random.Random(3))
    unbatched.set_sites([site(f"s{i}", interval=1.0) for i in range(40)])
    await run_for(unbatched, 1.05)
    assert 1 + sum(1 for a, b in itertools.pairwise(starts) if b - a > 0.005) > 20


class _NoSpread(random.Random):
    def random(self) -> float:
        return 0.0


async def test_a_retry_probes_again_soon_without_moving_the_regular_ticks() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    fourth = asyncio.Event()
    scheduler: Scheduler

    async def pending_probe(s: SiteConfig) -> None:
        starts.append(loop.time())
        if len(starts) < 4:
            scheduler.retry(s.name, 0.05)  # still failing, not yet DOWN: confirm fast
        else:
            fourth.set()

    scheduler = Scheduler(pending_probe, max_concurrency=10, rng=_NoSpread())
    scheduler.set_sites([site("a", interval=30.0, timeout=1.0)])
    task = asyncio.create_task(scheduler.run())
    try:
        # Three retries then the fourth probe, long before the next regular tick (30 s).
        await asyncio.wait_for(fourth.wait(), timeout=20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(starts) == 4
    assert starts[-1] - starts[0] < 15


async def test_a_retry_later_than_the_next_tick_changes_nothing() -> None:
    calls: list[str] = []
    second = asyncio.Event()
    scheduler: Scheduler

    async def probe(s: SiteConfig) -> None:
        calls.append(s.name)
        scheduler.retry(s.name, 60.0)  # after the next regular tick: ignored
        if len(calls) >= 2:
            second.set()

    scheduler = Scheduler(probe, max_concurrency=10, rng=_NoSpread())
    scheduler.set_sites([site("a", interval=1.0, timeout=0.5)])
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(second.wait(), timeout=20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls[:2] == ["a", "a"]
