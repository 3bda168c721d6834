"""EarlyWarnings running for real: child processes that leak or churn memory, sentinel's own
memory, a cgroup tree and a /proc written by the test, latency fed like the daemon feeds it, the
metrics, and reloads. Windows are seconds long so the whole file runs in about 15 s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mmap
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sentinel.early.config import EarlyConfig, HostConfig, WatchConfig
from sentinel.early.events import EarlyEvent, OomEvent, TrendEnded, TrendStarted
from sentinel.early.latency import DriftSettings, LatencyTracker
from sentinel.early.service import EarlyWarnings
from sentinel.early.warnings import WarningState
from sentinel.parse.early import parse_early
from sentinel.promtext import Registry
from sentinel.store import decode_dataclass, encode_dataclass

from .children import LEAK, MIB, SAWTOOTH, Children, children
from .test_sources import write_unit

LEAK_RATE = 5 * MIB  # bytes per second
METRICS = (
    "sentinel_watch_memory_bytes",
    "sentinel_watch_memory_growth_bytes_per_second",
    "sentinel_watch_seconds_to_limit",
    "sentinel_host_disk_seconds_to_full",
    "sentinel_host_cpu_steal_ratio",
    "sentinel_site_latency_baseline_seconds",
    "sentinel_self_memory_growth_bytes_per_second",
    "sentinel_watch_readable",
    "sentinel_host_disk_readable",
)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition with a deadline (polling; there is nothing to await on directly).
    The deadline bounds a hung test, it measures no speed: at least 30 s, so that a loaded
    machine's slow samples cannot overrun it (the wait ends as soon as the condition holds)."""
    timeout = max(timeout, 30.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Harness:
    def __init__(self, config: EarlyConfig, proc_root: str = "/proc") -> None:
        self.registry = Registry()
        self.events: list[EarlyEvent] = []
        self.service = EarlyWarnings(config, self.registry, self.events.append, proc_root)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def of(self, kind: type, subject: str | None = None) -> list[EarlyEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (subject is None or getattr(e, "subject", None) == subject)
        ]


@contextlib.asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[Harness]:
    task = asyncio.create_task(harness.service.run())
    try:
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def kids() -> Iterator[Children]:
    with children() as k:
        yield k


def promtool_check(text: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_a_leaking_process_gets_one_creeping_warning_and_a_sawtooth_none(
    kids: Children, tmp_path: Path
) -> None:
    tag = "leaky-service-under-test"
    leaker, _ = kids.start(LEAK, LEAK_RATE, 100 * MIB, 256 * 1024, tag)
    churner, _ = kids.start(SAWTOOTH, 40 * MIB, 0.15, 0.15)
    pid_file = tmp_path / "churner.pid"
    pid_file.write_text(f"{churner.pid}\n")
    short = {"sample_every": "100ms", "window": "6s", "warn_within": "1h", "limit": "1GiB"}
    config = parse_early(
        [
            {"name": "leaky", "process": tag, **short},
            {"name": "churner", "pid_file": str(pid_file), **short},
        ],
        None,
    )
    h = Harness(config)
    async with running(h):
        await until(lambda: h.of(TrendStarted, "leaky") != [], 12, "a CREEPING warning")
        (started,) = h.of(TrendStarted)
        assert isinstance(started, TrendStarted)
        assert started.kind == "creeping"
        assert started.rate_per_s == pytest.approx(LEAK_RATE, rel=0.2)
        assert started.limit == 1024 * MIB and started.limit_source == "limit"
        assert started.seconds_to_limit is not None and 0 < started.seconds_to_limit < 3600
        assert started.source.startswith("process matching")
        growth = h.value("sentinel_watch_memory_growth_bytes_per_second", watch="leaky")
        assert growth == pytest.approx(LEAK_RATE, rel=0.2)
        assert h.value("sentinel_watch_seconds_to_limit", watch="leaky") == pytest.approx(
            started.seconds_to_limit, rel=0.5
        )
        assert h.value("sentinel_watch_seconds_to_limit", watch="churner") == math.inf
        assert (h.value("sentinel_watch_memory_bytes", watch="churner") or 0) > 0

        # Watch both for a few more evaluations (an observation period, not synchronisation).
        await asyncio.sleep(1.2)
        assert [e for e in h.events if isinstance(e, TrendStarted)] == [started]
        promtool_check(h.registry.render())

        # The service is restarted (a new process with the same command line): RESOLVED.
        leaker.kill()
        leaker.wait()
        kids.start(LEAK, LEAK_RATE, 20 * MIB, 256 * 1024, tag)
        await until(lambda: h.of(TrendEnded) != [], 5, "RESOLVED after the restart")
    (ended,) = h.of(TrendEnded)
    assert isinstance(ended, TrendEnded)
    assert ended.warning == started and ended.reason == "restarted"
    assert len(h.of(TrendStarted)) == 1
    assert not h.of(OomEvent)


async def test_sentinels_own_growing_memory_is_an_error_a_metric_and_one_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    self_watch = WatchConfig(name="sentinel", source="self", target="", sample_every=0.1, window=6)
    h = Harness(EarlyConfig(self_watch=self_watch))
    held: list[mmap.mmap] = []
    chunk = 256 * 1024

    async def leak() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while len(held) * chunk < 60 * MIB:
            await asyncio.sleep(max(0.0, start + len(held) * chunk / LEAK_RATE - loop.time()))
            m = mmap.mmap(-1, chunk, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            m[:: mmap.PAGESIZE] = b"\x01" * (chunk // mmap.PAGESIZE)
            held.append(m)

    leaking = asyncio.create_task(leak())
    try:
        with caplog.at_level(logging.ERROR, logger="sentinel.early"):
            async with running(h):
                await until(lambda: h.of(TrendStarted) != [], 12, "the self warning")
    finally:
        leaking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaking
        for m in held:
            m.close()
    (started,) = h.of(TrendStarted)
    assert isinstance(started, TrendStarted)
    assert started.kind == "self" and started.subject == "sentinel"
    assert started.rate_per_s == pytest.approx(LEAK_RATE, rel=0.3)
    assert (h.value("sentinel_self_memory_growth_bytes_per_second") or 0) > LEAK_RATE / 2
    assert any("own memory is growing" in r.getMessage() for r in caplog.records)


async def test_an_oom_kill_in_the_units_memory_events_is_reported_at_once(tmp_path: Path) -> None:
    path = write_unit(tmp_path, limit=str(512 * MIB))
    watch = WatchConfig(
        name="web",
        source="unit",
        target="web.service",
        sample_every=0.1,
        window=6,
        cgroup_root=str(tmp_path),
    )
    h = Harness(EarlyConfig(watches=(watch,), self_watch=None))
    async with running(h):
        await until(
            lambda: h.value("sentinel_watch_memory_bytes", watch="web") == 200 * MIB,
            5,
            "the first sample",
        )
        (path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
        await until(lambda: h.of(OomEvent) != [], 5, "the OOM event")
    (event,) = h.of(OomEvent)
    assert isinstance(event, OomEvent)
    assert (event.watch, event.oom_kills, event.high_events) == ("web", 1, 0)
    assert (event.limit, event.limit_source) == (512 * MIB, "memory.max")
    assert event.level == 300 * MIB  # memory.current at the time
    assert event.source == "unit web.service"


async def test_cpu_steal_is_a_metric_and_a_warning_over_the_threshold(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    (tmp_path / "meminfo").write_text("MemTotal: 1024 kB\n")
    stat.write_text("cpu  0 0 0 0 0 0 0 0 0 0\n")
    host = HostConfig(cpu_steal_warning=0.2, cpu_steal_sample_every=0.1)
    h = Harness(EarlyConfig(host=host, self_watch=None), proc_root=str(tmp_path))
    async with running(h):
        # The first sample is the baseline the first ratio is measured from.
        await until(lambda: h.service._steal.previous is not None, 5, "the first /proc/stat read")
        total, steal = 0, 0
        for step in range(6):
            ratio_percent = 30 + step  # 30 %, 31 %, ...: each sample visibly different
            total, steal = total + 100, steal + ratio_percent
            stat.write_text(f"cpu  {total - steal} 0 0 0 0 0 0 {steal} 0 0\n")
            expected = ratio_percent / 100

            def reached(e: float = expected) -> bool:
                return h.value("sentinel_host_cpu_steal_ratio") == pytest.approx(e)

            await until(reached, 5, f"steal ratio {expected}")
    (started,) = h.of(TrendStarted)
    assert isinstance(started, TrendStarted)
    assert started.kind == "steal" and started.limit == 0.2
    assert started.level == pytest.approx(0.32)


FAST_DRIFT = DriftSettings(
    recent_bucket=1.0,
    recent_span=10.0,
    baseline_bucket=10.0,
    baseline_span=200.0,
    min_baseline_buckets=5,
)


def test_observed_latency_sets_the_baseline_metric_and_warns_when_slower() -> None:
    h = Harness(EarlyConfig(self_watch=None, drift=FAST_DRIFT))
    now = 1_700_000_000.0
    for _ in range(400):  # 100 "hours"... of seconds, at 0.31 s
        h.service.observe_latency("shop", 0.31, now)
        now += 0.25
    # (the baseline is kept to 0.036 %: 16 bits on a log scale)
    assert h.value("sentinel_site_latency_baseline_seconds", site="shop") == pytest.approx(
        0.31, rel=4e-4
    )
    for _ in range(80):
        h.service.observe_latency("shop", 0.82, now)
        now += 0.25
    (started,) = h.of(TrendStarted, "shop")
    assert isinstance(started, TrendStarted)
    assert started.kind == "slower" and started.level == pytest.approx(0.82)
    assert h.service.active_warnings() == (started,)
    h.service.remove_site("shop")
    assert h.value("sentinel_site_latency_baseline_seconds", site="shop") is None
    assert h.service.active_warnings() == ()


def test_a_restart_keeps_the_history_and_the_warning_so_resolved_still_comes() -> None:
    """Saved (as the daemon does, through the store's JSON) and restored in a new service: the
    baseline is there at once, and the SLOWER warning sent before the restart gets its RESOLVED,
    threaded to it by the same trend id, instead of being forgotten."""
    h = Harness(EarlyConfig(self_watch=None, drift=FAST_DRIFT))
    now = 1_700_000_000.0
    for _ in range(400):
        h.service.observe_latency("shop", 0.31, now)
        now += 0.25
    for _ in range(80):
        h.service.observe_latency("shop", 0.82, now)
        now += 0.25
    (started,) = h.of(TrendStarted, "shop")
    saved = [
        (name, history, None if w is None else encode_dataclass(w))
        for name, history, w in h.service.drift_histories()
    ]
    assert [name for name, _, _ in saved] == ["shop"]

    restarted = Harness(EarlyConfig(self_watch=None, drift=FAST_DRIFT))
    for name, history, text in saved:
        warning = None if text is None else decode_dataclass(WarningState, text)
        assert restarted.service.restore_site(name, history, warning)
    assert restarted.value("sentinel_site_latency_baseline_seconds", site="shop") == (
        pytest.approx(0.31, rel=4e-4)
    )
    assert restarted.service.active_warnings() == (started,)
    for _ in range(80):
        restarted.service.observe_latency("shop", 0.31, now)
        now += 0.25
    (ended,) = restarted.of(TrendEnded, "shop")
    assert isinstance(ended, TrendEnded)
    assert ended.warning.trend_id == started.trend_id and ended.reason == "back to usual"
    assert restarted.of(TrendStarted) == []  # no second SLOWER for the same trend


def test_a_history_that_cannot_be_used_starts_the_site_afresh() -> None:
    h = Harness(EarlyConfig(self_watch=None, drift=FAST_DRIFT))
    assert not h.service.restore_site("shop", b"not a history", None)
    other_buckets = LatencyTracker().dump()  # the default geometry, not FAST_DRIFT's
    assert not h.service.restore_site("shop", other_buckets, None)
    assert h.value("sentinel_site_latency_baseline_seconds", site="shop") is None
    assert list(h.service.drift_histories()) == []


def test_a_reload_keeps_unchanged_watches_and_drops_removed_ones_with_their_series(
    tmp_path: Path,
) -> None:
    a = WatchConfig(name="a", source="pid_file", target="/run/a.pid", sample_every=1, window=60)
    b = WatchConfig(name="b", source="pid_file", target="/run/b.pid", sample_every=1, window=60)
    config = EarlyConfig(watches=(a, b), host=HostConfig(disks=(str(tmp_path),)), self_watch=None)
    h = Harness(config)
    service = h.service
    series_a = service._watches["a"].series
    for name in ("a", "b"):  # not read yet: no value, rather than a healthy-looking +Inf
        assert math.isnan(h.value("sentinel_watch_seconds_to_limit", watch=name) or 0)
    assert math.isnan(h.value("sentinel_host_disk_seconds_to_full", mount=str(tmp_path)) or 0)

    service.update(replace(config, watches=(replace(a, warn_within=60.0),), host=HostConfig()))
    assert service._watches["a"].series is series_a  # same source and window: history kept
    assert service._watches["a"].config.warn_within == 60.0
    assert "b" not in service._watches
    assert h.value("sentinel_watch_seconds_to_limit", watch="b") is None
    assert h.value("sentinel_watch_memory_growth_bytes_per_second", watch="b") is None
    assert h.value("sentinel_host_disk_seconds_to_full", mount=str(tmp_path)) is None

    service.update(replace(config, watches=(replace(a, window=120.0),)))
    assert service._watches["a"].series is not series_a  # a different window: a new series


def _warned(state: WarningState, at: float = 5.0) -> WarningState:
    """`state` with an active warning, as if its trend had been confirmed and emailed."""
    started = TrendStarted(
        kind=state.kind,
        subject=state.subject,
        trend_id=f"t-{state.subject}",
        at=at,
        since=1.0,
        level=1.0,
    )
    return replace(state, active=started)


def test_an_active_warning_is_resolved_when_its_watch_is_removed_or_changed(
    tmp_path: Path,
) -> None:
    """Otherwise a WARNING already emailed would never get its RESOLVED."""
    a = WatchConfig(name="a", source="pid_file", target="/run/a.pid", sample_every=1, window=60)
    b = WatchConfig(name="b", source="pid_file", target="/run/b.pid", sample_every=1, window=60)
    quiet = WatchConfig(name="quiet", source="pid_file", target="/run/q.pid")
    disk = str(tmp_path)
    config = EarlyConfig(watches=(a, b, quiet), host=HostConfig(disks=(disk,)), self_watch=None)
    h = Harness(config)
    for name in ("a", "b"):
        h.service._watches[name].warning = _warned(h.service._watches[name].warning)
    h.service._disks[disk].warning = _warned(h.service._disks[disk].warning)

    h.service.update(replace(config, watches=(replace(a, window=120.0), quiet), host=HostConfig()))
    ended = {(e.warning.subject, e.reason) for e in h.of(TrendEnded) if isinstance(e, TrendEnded)}
    assert ended == {("a", "changed"), ("b", "removed"), (disk, "removed")}
    h.service.update(replace(config, watches=(), host=HostConfig()))
    assert len(h.of(TrendEnded)) == 3  # the new "a" and "quiet" had nothing to resolve


def test_an_active_slower_warning_is_resolved_when_its_site_goes() -> None:
    h = Harness(EarlyConfig(self_watch=None, drift=FAST_DRIFT))
    now = 1_700_000_000.0
    for latency, count in ((0.31, 400), (0.82, 80)):
        for _ in range(count):
            h.service.observe_latency("shop", latency, now)
            now += 0.25
    (started,) = h.of(TrendStarted, "shop")
    h.service.remove_site("shop")
    (ended,) = h.of(TrendEnded)
    assert isinstance(ended, TrendEnded)
    assert ended.warning == started and ended.reason == "removed"
    h.service.remove_site("shop")  # twice (a reload with latency_drift off): once is enough
    assert len(h.of(TrendEnded)) == 1


def test_every_metric_is_registered_with_help_and_passes_promtool(tmp_path: Path) -> None:
    watch = WatchConfig(name="w", source="unit", target="w.service", cgroup_root=str(tmp_path))
    h = Harness(EarlyConfig(watches=(watch,), host=HostConfig(disks=("/",))))
    h.service.observe_latency("s", 0.1, 0.0)
    h.service.g_baseline.labels("s").set(0.1)
    h.service.g_memory.labels("w").set(1)
    h.service.g_readable.labels("w").set(1)
    h.service.g_disk_readable.labels("/").set(1)
    text = h.registry.render()
    for name in METRICS:
        assert f"# HELP {name} ".encode() in text, name
        assert f"# TYPE {name} gauge".encode() in text, name
    promtool_check(text)


async def test_an_emit_callback_that_raises_does_not_stop_sampling(tmp_path: Path) -> None:
    path = write_unit(tmp_path)
    watch = WatchConfig(
        name="web",
        source="unit",
        target="web.service",
        sample_every=0.1,
        window=6,
        cgroup_root=str(tmp_path),
    )
    calls: list[EarlyEvent] = []

    def broken(event: EarlyEvent) -> None:
        calls.append(event)
        raise RuntimeError("outbox full")

    registry = Registry()
    service = EarlyWarnings(EarlyConfig(watches=(watch,), self_watch=None), registry, broken)

    def memory() -> float | None:
        return registry.get_sample_value("sentinel_watch_memory_bytes", {"watch": "web"})

    task = asyncio.create_task(service.run())
    try:
        await until(lambda: memory() == 200 * MIB, 5, "a sample")  # NaN until then
        (path / "memory.events").write_text("oom_kill 1\n")
        await until(lambda: len(calls) == 1, 5, "the OOM event")
        (path / "memory.stat").write_text(f"anon {123 * MIB}\n")
        await until(lambda: memory() == 123 * MIB, 5, "sampling to go on")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_watch_that_can_never_be_read_shows_as_unreadable_not_as_healthy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not growth 0 and +Inf to the limit: NaN, sentinel_watch_readable 0, one warning in the
    log however many samples fail, and the status view says "unreadable" with the reason."""
    watch = WatchConfig(
        name="ghost",
        source="pid_file",
        target=str(tmp_path / "ghost.pid"),  # never written
        sample_every=0.1,
        window=6,
    )
    missing_disk = str(tmp_path / "not-mounted")
    config = EarlyConfig(
        watches=(watch,),
        host=HostConfig(disks=(missing_disk,), disk_sample_every=0.1, disk_window=6),
        self_watch=None,
    )
    h = Harness(config)
    caplog.set_level(logging.DEBUG, logger="sentinel.early")
    async with running(h):
        ghost = h.service._watches["ghost"]
        disk = h.service._disks[missing_disk]
        # Several bucket evaluations: each one used to set growth 0 and +Inf.
        seen: set[float] = set()

        def evaluated_three_times() -> bool:
            if ghost.verdict is not None:
                seen.add(ghost.verdict.at)
            return len(seen) >= 3 and disk.verdict is not None

        await until(evaluated_three_times, 20, "three evaluations of the unreadable watch")
    assert h.value("sentinel_watch_readable", watch="ghost") == 0
    assert h.value("sentinel_host_disk_readable", mount=missing_disk) == 0
    for name in (
        "sentinel_watch_memory_bytes",
        "sentinel_watch_memory_growth_bytes_per_second",
        "sentinel_watch_seconds_to_limit",
    ):
        assert math.isnan(h.value(name, watch="ghost") or 0), name
    assert math.isnan(h.value("sentinel_host_disk_seconds_to_full", mount=missing_disk) or 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split(" error=")[0] for r in warnings) == [
        "early warning: cannot sample mount=" + missing_disk,
        "early warning: cannot sample watch=ghost",
    ]
    view = h.service.status_view()
    (row,) = view["watches"]
    assert row["state"] == "unreadable" and "ghost.pid" in str(row["error"])
    assert row["memory_bytes"] is None and row["growth_bytes_per_second"] is None
    (disk_row,) = view["disks"]
    assert disk_row["state"] == "unreadable" and disk_row["seconds_to_full"] is None


def test_watch_facts_count_the_restarts_and_oom_kills_of_the_last_hour(tmp_path: Path) -> None:
    """The cgroup files as the kernel shows them, rewritten between samples: what a DOWN email of
    a site with `watch = ["web"]` tells (sampling driven by hand, with a fake clock)."""
    path = write_unit(tmp_path, limit=str(512 * MIB))
    watch = WatchConfig(
        name="web", source="unit", target="web.service", sample_every=60, cgroup_root=str(tmp_path)
    )
    disks = HostConfig(disks=(str(tmp_path),))
    h = Harness(EarlyConfig(watches=(watch,), host=disks, self_watch=None))
    svc = h.service
    t0 = 1_800_000_000.0

    def sample(at: float, events: str | None = None, procs: str | None = None) -> None:
        if events is not None:
            (path / "memory.events").write_text(events)
        if procs is not None:
            (path / "cgroup.procs").write_text(procs)
        svc._apply_batch(svc._read_batch(svc._runtimes()), at)

    sample(t0 - 7200, "oom_kill 5\n")  # kills before sentinel looked: not news
    sample(t0 - 5400, "oom_kill 6\n")  # 1 kill, 90 minutes ago
    sample(t0 - 1800, "oom_kill 8\n")  # 2 kills, 30 minutes ago
    sample(t0 - 600, "oom_kill 1\n", procs="5000\n")  # restarted (new cgroup): and killed once
    (facts,) = svc.watch_facts(["web", "unknown"], t0)
    assert (facts.name, facts.source) == ("web", "unit web.service")
    assert (facts.oom_kills, facts.restarts) == (3, 1)
    assert (facts.memory, facts.limit, facts.limit_source) == (200 * MIB, 512 * MIB, "memory.max")
    assert facts.error == ""
    (older,) = svc.watch_facts(["web"], t0, span=3 * 3600)
    assert older.oom_kills == 4
    host = svc.host_facts()
    assert [d.mount for d in host.disks] == [str(tmp_path)]
    assert host.disks[0].size > 0


async def test_the_daemons_alert_context_diagnoses_a_down_with_the_watch_facts(
    tmp_path: Path,
) -> None:
    from sentinel.config import parse_config
    from sentinel.monitor import ResultSummary, WentDown
    from sentinel.notify.alert_context import AlertContext
    from sentinel.probes.result import ProbeResult

    path = write_unit(tmp_path)
    watch = WatchConfig(
        name="blog-app",
        source="unit",
        target="web.service",
        sample_every=60,
        cgroup_root=str(tmp_path),
    )
    h = Harness(EarlyConfig(watches=(watch,), self_watch=None))
    svc = h.service
    t0 = 1_800_000_000.0
    svc._apply_batch(svc._read_batch(svc._runtimes()), t0 - 120)
    (path / "memory.events").write_text("oom_kill 3\n")
    svc._apply_batch(svc._read_batch(svc._runtimes()), t0 - 60)

    config = parse_config(
        {
            "sentinel": {"timezone": "Europe/Zurich"},
            "status_page": {"public_url": "https://status.example/"},
            "watch": [{"name": "blog-app", "unit": "web.service", "cgroup_root": str(tmp_path)}],
            "sites": [{"name": "blog", "url": "https://blog.example/", "watch": ["blog-app"]}],
        }
    )
    site = config.site("blog")
    context = AlertContext(lambda: svc, clock=lambda: t0)
    for i in range(5):
        good = ProbeResult(
            True, "ok", "HTTP 200", t0 - 600 + i, 0.045, 200, 0.003, 0.002, None, 0.04
        )
        context.observe("blog", good)
    bad = ProbeResult(False, "timeout", "no response within 10s", t0, 10.0, 0, 0.003, 0.002)
    context.observe("blog", bad)
    event = WentDown("blog", "i", t0, t0, "timeout", bad.message, (ResultSummary.of(bad),))
    got = context(event, site, config)
    assert got.site_page == "https://status.example/sites/blog"
    assert got.tz is not None and str(got.tz) == "Europe/Zurich"
    assert got.summary == "blog-app was OOM-killed 3 times in the last hour."
    assert "no answer within 10 s; the application usually answers in 40 ms" in got.diagnosis
    assert "connect 2 ms, as usual" in got.diagnosis
    assert (
        got.local[0]
        == "blog-app (unit web.service): OOM-killed 3 times and no restart in the last hour"
    )
    context.forget("blog")
    assert context.normal("blog") is None
