"""Saving and restoring the latency-drift histories through a real store file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sentinel import drift_history
from sentinel.early.config import EarlyConfig
from sentinel.early.events import EarlyEvent, TrendEnded, TrendStarted
from sentinel.early.service import EarlyWarnings
from sentinel.promtext import Registry
from sentinel.store import Store, StoreError

from .test_latency import FAST


def service(events: list[EarlyEvent]) -> EarlyWarnings:
    return EarlyWarnings(EarlyConfig(self_watch=None, drift=FAST), Registry(), events.append)


def warn(early: EarlyWarnings, site: str, now: float = 1_700_000_000.0) -> float:
    for latency, count in ((0.31, 400), (0.82, 80)):
        for _ in range(count):
            early.observe_latency(site, latency, now)
            now += 0.25
    return now


def test_many_sites_are_written_in_chunks_and_all_come_back(tmp_path: Path) -> None:
    events: list[EarlyEvent] = []
    before = service(events)
    for i in range(drift_history.SITES_PER_WRITE * 2 + 7):
        before.observe_latency(f"s{i}", 0.1, 1_700_000_000.0)
    names = {f"s{i}" for i in range(drift_history.SITES_PER_WRITE * 2 + 7)}
    errors: list[StoreError] = []
    with Store.open(tmp_path) as store:
        written = asyncio.run(drift_history.save(store, before, names.__contains__, errors.append))
        assert written == len(names) and errors == []
        # only still-configured sites are written (a reload may remove one mid-save)
        assert (
            asyncio.run(drift_history.save(store, before, {"s1"}.__contains__, errors.append)) == 1
        )
    with Store.open(tmp_path) as store:
        after = service([])
        assert drift_history.restore(store, after, names) == len(names)


def test_a_site_removed_while_stopped_loses_its_history_and_its_warning_resolves(
    tmp_path: Path,
) -> None:
    events: list[EarlyEvent] = []
    before = service(events)
    warn(before, "gone")
    warn(before, "kept")
    (started, _) = [e for e in events if isinstance(e, TrendStarted)]
    with Store.open(tmp_path) as store:
        asyncio.run(drift_history.save(store, before, lambda _: True, lambda e: None))

    restarted: list[EarlyEvent] = []
    after = service(restarted)
    with Store.open(tmp_path) as store:
        assert drift_history.restore(store, after, {"kept"}) == 1
        assert set(store.load_latency_history()) == {"kept"}
    (ended,) = restarted
    assert isinstance(ended, TrendEnded)
    assert ended.warning == started and ended.reason == "removed"
    assert [w.subject for w in after.active_warnings()] == ["kept"]
