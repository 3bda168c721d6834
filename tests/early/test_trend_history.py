"""Memory, disk and CPU-steal trends survive a restart of sentinel through a real store file: a
continuing trend is not warned about again, and a warning sent before the restart still gets
its RESOLVED (threaded to it), also when its watch was removed or changed meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel import trend_history
from sentinel.early.config import EarlyConfig, HostConfig, WatchConfig
from sentinel.early.events import TrendEnded, TrendStarted
from sentinel.early.service import TrendRecord
from sentinel.early.trend import TrendSeries
from sentinel.early.warnings import WarningState
from sentinel.parse.early import parse_early
from sentinel.store import Store, StoreError, decode_dataclass, encode_dataclass

from .children import LEAK, MIB, Children, children
from .test_service import Harness, running, until

LEAK_RATE = 5 * MIB


@pytest.fixture
def kids() -> Iterator[Children]:
    with children() as k:
        yield k


def warned(state: WarningState, trend_id: str) -> WarningState:
    started = TrendStarted(
        kind=state.kind, subject=state.subject, trend_id=trend_id, at=5.0, since=1.0, level=1.0
    )
    return replace(state, active=started)


def save_through_store(h: Harness, state_dir: Path) -> None:
    errors: list[StoreError] = []
    with Store.open(state_dir) as store:
        assert trend_history.save(store, h.service, errors.append) > 0
    assert errors == []


def restore_through_store(h: Harness, state_dir: Path) -> int:
    with Store.open(state_dir) as store:
        return trend_history.restore(store, h.service)


def test_a_record_round_trips_through_the_stores_json() -> None:
    series = TrendSeries(60.0, 1.0)
    for t in range(200):
        series.add(1_700_000_000.0 + t, 1000.0 + t, "pid:1:2")
    record = TrendRecord("pid_file /run/a.pid /sys/fs/cgroup", WarningState("creeping", "a"))
    record = replace(record, series=series.snapshot())
    back = decode_dataclass(TrendRecord, encode_dataclass(record))
    assert back == record
    assert back.series is not None
    again = TrendSeries.restore(back.series, 60.0, 1.0)
    assert again.buckets() == series.buckets() and again.identity == "pid:1:2"
    with pytest.raises(ValueError, match="another window"):
        TrendSeries.restore(back.series, 120.0, 1.0)


def test_warnings_of_watches_removed_or_changed_while_stopped_are_resolved(
    tmp_path: Path,
) -> None:
    a = WatchConfig(name="a", source="pid_file", target="/run/a.pid", sample_every=1, window=60)
    b = WatchConfig(name="b", source="pid_file", target="/run/b.pid", sample_every=1, window=60)
    kept = WatchConfig(name="kept", source="pid_file", target="/run/k.pid")
    disk = str(tmp_path)
    host = HostConfig(disks=(disk,), cpu_steal_warning=0.2)
    before = Harness(EarlyConfig(watches=(a, b, kept), host=host, self_watch=None))
    for name in ("a", "b", "kept"):
        w = before.service._watches[name]
        w.warning = warned(w.warning, f"t-{name}")
    before.service._disks[disk].warning = warned(before.service._disks[disk].warning, "t-disk")
    before.service._steal.warning = warned(before.service._steal.warning, "t-steal")
    save_through_store(before, tmp_path / "state")

    # While stopped: "a" now reads another pid file, "b" and the disk are gone, steal is off.
    changed = replace(a, target="/run/other.pid")
    after = Harness(
        EarlyConfig(watches=(changed, kept), host=HostConfig(cpu_steal_warning=0), self_watch=None)
    )
    assert restore_through_store(after, tmp_path / "state") == 1
    ended = {(e.trend_id, e.reason) for e in after.of(TrendEnded) if isinstance(e, TrendEnded)}
    assert ended == {
        ("t-a", "changed"),
        ("t-b", "removed"),
        ("t-disk", "removed"),
        ("t-steal", "removed"),
    }
    (active,) = after.service.active_warnings()
    assert active.trend_id == "t-kept"  # its RESOLVED can still come
    # The store now holds only what is watched: a second restart resolves nothing again.
    save_through_store(after, tmp_path / "state")
    again = Harness(EarlyConfig(watches=(changed, kept), self_watch=None))
    restore_through_store(again, tmp_path / "state")
    assert again.of(TrendEnded) == []


def test_an_unreadable_saved_trend_is_skipped(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.replace_trend_history({"watch:a": "{not json", "disk:/": "[]"}, 0.0)
    h = Harness(EarlyConfig(self_watch=None))
    assert restore_through_store(h, tmp_path) == 0
    assert h.events == []


async def test_a_continuing_leak_is_not_warned_again_after_a_restart_and_resolves_later(
    kids: Children, tmp_path: Path
) -> None:
    tag = "leaky-service-across-restarts"
    leaker, _ = kids.start(LEAK, LEAK_RATE, 160 * MIB, 256 * 1024, tag)
    short = {"sample_every": "100ms", "window": "6s", "warn_within": "1h", "limit": "1GiB"}
    config = parse_early([{"name": "leaky", "process": tag, **short}], None)
    before = Harness(config)
    async with running(before):
        await until(lambda: before.of(TrendStarted) != [], 20, "a CREEPING warning")
    (started,) = before.of(TrendStarted)
    save_through_store(before, tmp_path)

    after = Harness(config)  # sentinel restarted; the leaking service was not
    assert restore_through_store(after, tmp_path) == 3  # leaky, sentinel itself, CPU steal
    assert after.service.active_warnings() == (started,)
    async with running(after):
        watch = after.service._watches["leaky"]
        seen: set[float] = set()

        def evaluated(times: int) -> bool:
            if watch.verdict is not None and watch.verdict.rising:
                seen.add(watch.verdict.at)
            return len(seen) >= times

        # Several evaluations that see the trend still rising: none of them warns again.
        await until(lambda: evaluated(4), 20, "four rising evaluations after the restart")
        assert after.of(TrendStarted) == []

        # Now the service restarts: the warning from before sentinel's restart is resolved.
        leaker.kill()
        leaker.wait()
        kids.start(LEAK, LEAK_RATE, 20 * MIB, 256 * 1024, tag)
        await until(lambda: after.of(TrendEnded) != [], 20, "RESOLVED after the restart")
    (ended,) = after.of(TrendEnded)
    assert isinstance(ended, TrendEnded)
    assert ended.warning == started and ended.reason == "restarted"


SAMPLES = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=30.0),  # seconds since the previous sample
        st.floats(min_value=0.0, max_value=1e9),
        st.sampled_from(["a", "b"]),  # a changed identity is a restart of the watched process
    ),
    max_size=120,
)


@given(SAMPLES, SAMPLES)
def test_a_restored_series_continues_exactly_like_one_never_interrupted(
    before: list[tuple[float, float, str]], after: list[tuple[float, float, str]]
) -> None:
    """Pure: saving and restoring in between changes no verdict, whatever the samples."""
    window, every = 600.0, 5.0
    steady = TrendSeries(window, every)
    t = 1_700_000_000.0
    for gap, value, identity in before:
        t += gap
        steady.add(t, value, identity)
    snapshot = decode_dataclass(type(steady.snapshot()), encode_dataclass(steady.snapshot()))
    restored = TrendSeries.restore(snapshot, window, every)
    for gap, value, identity in after:
        t += gap
        assert restored.add(t, value, identity) == steady.add(t, value, identity)
        assert restored.detect(t, 2e9) == steady.detect(t, 2e9)
    assert restored.buckets() == steady.buckets()


def test_a_fresh_start_writes_nothing_and_a_dropped_trend_is_written_back_soon(
    tmp_path: Path,
) -> None:
    """A write at start would coincide with every site's first probe: only when a saved trend
    was dropped (so it does not come back after another restart) is the store written soon."""
    h = Harness(EarlyConfig(self_watch=None))
    assert restore_through_store(h, tmp_path) == 0
    assert not h.service.trends_changed.is_set()
    with Store.open(tmp_path) as store:
        record = TrendRecord("cpu", WarningState("steal", "cpu"))
        store.replace_trend_history({"steal:cpu": encode_dataclass(record)}, 0.0)
    h = Harness(EarlyConfig(self_watch=None, host=HostConfig(cpu_steal_warning=0)))
    assert restore_through_store(h, tmp_path) == 0  # steal warnings are off now
    assert h.service.trends_changed.is_set()
