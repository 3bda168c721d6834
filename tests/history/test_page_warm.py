"""The page's work done ahead of requests (`StatusPages.warm`, `keep_warm`,
`HistoryReader.preload`) and `/api/status` reading the kept figures in slices: what they show is
the same as without them, they hand the loop back between slices, and they stay bounded."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator

import pytest

from sentinel.config import SiteConfig
from sentinel.history import db, query
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.probes.result import ProbeResult
from sentinel.store import Store, StoreError
from sentinel.web import Reply
from sentinel.webviews.pages import JSON, WARM_AFTER_HOUR_S, StatusPages

T0 = 1_767_225_600.0 + 1200.0  # 00:20 UTC
NAMES = [f"site-{i}" for i in range(7)]
SITES = {n: SiteConfig(name=n, kind="http", target=f"http://127.0.0.1:1/{n}") for n in NAMES}


def errors(exc: StoreError) -> None:
    raise exc


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as s:
        hour = int(T0 * 1000) // HOUR_MS
        rows = {}
        for i, name in enumerate(NAMES):
            for back in range(0, 30 * 24, 7):  # a month of scattered hours
                r = Rollup(covered_ms=3_000_000, down_ms=(back % 5) * 60_000 * (i % 2))
                for k in range(3):
                    r.add_probe(True, 40_000 + 9_000 * k + 1_000 * i)
                rows[name, hour - back] = r
            start = int((T0 - 86400 * (i + 1)) * 1000)
            db.incident_opened(s, name, start, "timeout", "timed out")
            db.incident_updated(s, name, start, alerts=1, ended_ms=start + 600_000)
        db.write_hours(s, rows)
        yield s


def states(now: float) -> dict[str, SiteState]:
    ok = ResultSummary(at=now - 5, ok=True, status=200, total=0.05, reason="ok", message="")
    return {n: SiteState(site=n, status=Status.UP, since=now - 86400, recent=(ok,)) for n in NAMES}


def make_pages(
    store: Store, clock: Clock, recorder: HistoryRecorder | None = None
) -> tuple[StatusPages, HistoryReader]:
    if recorder is None:
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=clock)
    reader = HistoryReader(store, recorder, clock=clock)
    live = states(T0)
    pages = StatusPages(
        sites=lambda: SITES,
        states=lambda: live,
        settings=lambda: StatusPageConfig(title="T"),
        recorder=recorder,
        reader=reader,
        clock=clock,
    )
    return pages, reader


def body(reply: Reply) -> bytes:
    return reply.body if reply.chunks is None else b"".join(reply.chunks())


def test_warm_reads_every_site_and_renders_the_blocks_a_request_then_reuses(
    store: Store,
) -> None:
    clock = Clock(T0)
    warmed, reader = make_pages(store, clock)
    assert reader.missing(NAMES) == NAMES
    asyncio.run(warmed.warm())
    assert reader.missing(NAMES) == []
    rendered = warmed._blocks.misses
    assert rendered > 0 and len(warmed._blocks) == len(NAMES)
    page = body(warmed.index())
    assert warmed._blocks.misses == rendered  # the request rendered no block
    fresh, _ = make_pages(store, clock)
    assert page == body(fresh.index())  # the same page as without the warm-up


def test_preload_hands_back_between_sites_and_ends_on_a_store_error(store: Store) -> None:
    clock = Clock(T0)
    _, reader = make_pages(store, clock)
    slices = sum(1 for _ in reader.preload(NAMES[:4], budget_s=0.0))
    assert slices == 4 and reader.missing(NAMES) == NAMES[4:]
    assert list(reader.preload(NAMES[:4])) == []  # nothing left to read
    store.close()
    assert list(reader.preload(NAMES, budget_s=0.0)) == []  # unreadable: ends, no error
    assert reader.missing(NAMES) == NAMES[4:]


def test_api_status_first_call_reads_the_figures_in_slices_with_the_same_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "PRELOAD_SECONDS", 0.0)  # a slice a site
    clock = Clock(T0)
    pages, reader = make_pages(store, clock)

    def api_status() -> Reply:
        entries = [{"site": n} for n in NAMES]
        pages.annotate(entries)  # type: ignore[arg-type]
        return Reply(200, JSON, json.dumps(entries).encode())

    route = pages.routes({"/api/status": api_status})["/api/status"]
    first = route()
    assert first.chunks is not None and first.status == 200 and first.content_type == JSON
    pieces = list(first.chunks())
    assert len(pieces) == len(NAMES) + 1 and not any(
        pieces[:-1]
    )  # slices first, nothing sent meanwhile
    assert reader.missing(NAMES) == []
    again = route()
    assert again.chunks is None  # every figure kept: answered at once
    assert json.loads(pieces[-1]) == json.loads(again.body) == json.loads(api_status().body)
    figures = json.loads(again.body)
    assert all(e["uptime"]["30d"] is not None for e in figures)


def test_keep_warm_freezes_at_start_then_warms_after_each_hour_if_served(
    store: Store,
) -> None:
    clock = Clock(T0)
    pages, _ = make_pages(store, clock)
    warms: list[float] = []
    freezes: list[float] = []
    waits: list[float] = []

    async def counting_warm() -> None:
        warms.append(clock.t)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.t += seconds
        if len(waits) == 1:
            pages.last_served = clock.t - 600  # the page was served 10 min before the hour
        if len(waits) == 4:
            raise asyncio.CancelledError  # (the daemon cancels it at stop)

    pages.warm = counting_warm  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(pages.keep_warm(sleep=sleep, freeze=lambda: freezes.append(clock.t)))
    # Nothing warmed at start (a page nobody opens costs no memory: the first request warms).
    assert freezes == [T0] and T0 not in warms
    # each wait ends WARM_AFTER_HOUR_S after an hour; served within 2 h: warmed at the first
    # two hours, not at the third (nor at the fourth: cancelled)
    assert [round((t - WARM_AFTER_HOUR_S) % 3600, 6) for t in warms] == [0.0, 0.0]
    assert len(warms) == 2 and warms[0] == T0 - 1200 + 3600 + WARM_AFTER_HOUR_S


def test_the_first_request_warms_in_slices_and_shows_the_same_page(store: Store) -> None:
    clock = Clock(T0)
    cold, reader = make_pages(store, clock)
    reply = cold.index()
    assert reply.chunks is not None
    chunks = list(reply.chunks())
    assert b"" in chunks  # the loop handed back (by time: slices of a few ms) before the page
    assert reader.missing(NAMES) == []  # kept for the next requests
    warmed, _ = make_pages(store, clock)
    asyncio.run(warmed.warm())
    assert b"".join(chunks) == body(warmed.index())
    rendered = cold._blocks.misses
    assert body(cold.index()) == b"".join(chunks)
    assert cold._blocks.misses == rendered  # the next request rendered no block


def test_keep_warm_survives_a_failing_warm_up(store: Store) -> None:
    clock = Clock(T0)
    pages, _ = make_pages(store, clock)
    calls = []

    async def failing() -> None:
        calls.append(clock.t)
        raise RuntimeError("boom")

    async def sleep(seconds: float) -> None:
        clock.t += seconds
        pages.last_served = clock.t
        if len(calls) >= 3:
            raise asyncio.CancelledError

    pages.warm = failing  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(pages.keep_warm(sleep=sleep, freeze=lambda: None))
    assert len(calls) == 3  # logged and carried on


def test_the_block_cache_stays_bounded_by_the_configured_sites(store: Store) -> None:
    clock = Clock(T0)
    names = list(NAMES)
    pages, reader = make_pages(store, clock)
    pages._sites = lambda: {n: SITES[n] for n in names}  # type: ignore[method-assign]
    body(pages.index())
    assert len(pages._blocks) == len(NAMES)
    for round_ in range(3):  # sites renamed: the old ones' blocks and figures go
        names = [f"{n}-{round_}" for n in NAMES]
        for n in names:
            SITES.setdefault(n, SiteConfig(name=n, kind="http", target="http://127.0.0.1:1/"))
        body(pages.index())
        assert len(pages._blocks) <= max(100, 2 * len(names))
        assert set(reader._sites) <= set(names)


def test_warm_with_history_off_renders_the_live_page() -> None:
    clock = Clock(T0)
    live = states(T0)
    pages = StatusPages(
        sites=lambda: SITES,
        states=lambda: live,
        settings=lambda: StatusPageConfig(title="T"),
        recorder=None,
        reader=None,
        clock=clock,
    )
    asyncio.run(pages.warm())
    assert b"site-6" in body(pages.index())


def test_a_probe_after_the_warm_up_shows_on_the_next_request(store: Store) -> None:
    clock = Clock(T0)
    pages, _ = make_pages(store, clock)
    asyncio.run(pages.warm())
    before = body(pages.index())
    clock.t += 30
    recorder = pages._recorder
    assert recorder is not None
    for name in NAMES[:3]:  # a slow probe and a failed one: latency and uptime move
        up = states(clock.t)[name]
        slow = ProbeResult(ok=True, reason="ok", message="", started_at=clock.t, total=9.0)
        recorder.record(SITES[name], slow, up, up, (), clock.t)
        failed = ProbeResult.failure("timeout", "timed out", clock.t + 1, 0.05)
        recorder.record(SITES[name], failed, up, up, (), clock.t + 1)
    clock.t += 400  # past the latest hour's latency turn
    after = body(pages.index())
    fresh, _ = make_pages(store, clock, recorder)
    assert after != before
    assert after == body(fresh.index())


def test_incidents_are_let_go_once_shown_and_read_again_for_a_new_block(store: Store) -> None:
    clock = Clock(T0)
    settings = [StatusPageConfig(title="T")]
    pages, reader = make_pages(store, clock)
    pages._settings = lambda: settings[0]  # type: ignore[method-assign]
    first = body(pages.index())
    assert all(s.incidents is None for s in reader._sites.values())  # only the blocks kept
    settings[0] = StatusPageConfig(title="T", show_targets=False)  # every block again
    hidden = body(pages.index())
    fresh, _ = make_pages(store, clock)
    fresh._settings = lambda: settings[0]  # type: ignore[method-assign]
    assert hidden == body(fresh.index()) != first
    assert b"timed out" in first and b"timed out" not in hidden


def test_an_ongoing_incident_stays_kept_and_shows_its_growing_duration(store: Store) -> None:
    clock = Clock(T0)
    name = NAMES[0]
    db.incident_opened(store, name, int((T0 - 120) * 1000), "status", "HTTP 500")
    pages, reader = make_pages(store, clock)
    page = body(pages.index())
    site = reader._sites[name]
    assert site.ongoing and site.incidents is not None
    assert b"ongoing 2 min" in page
    clock.t += 180
    assert b"ongoing 5 min" in body(pages.index())


def test_the_kept_figures_clamp_what_does_not_fit_32_bits() -> None:
    day = int(T0 * 1000) // DAY_MS
    huge = Rollup(covered_ms=2**40, down_ms=2**35)
    huge.add_probe(True, 2**40)
    site = query._Site(day, int(T0 * 1000) // HOUR_MS)
    site.set_day(day - 1, huge)
    site.set_hour(site.hour - 1, huge)
    assert max(query._opened(site.days)) == max(query._opened(site.hours)) == 2**31 - 1


def test_shared_incident_texts_stay_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "TEXTS", 5)
    clock = Clock(T0)
    pages, reader = make_pages(store, clock)
    body(pages.index())
    assert len(reader._texts) <= 5 + 5  # cleared once past TEXTS (5 texts an incident)


def test_uptimes_equal_the_page_figures(store: Store) -> None:
    clock = Clock(T0)
    pages, reader = make_pages(store, clock)
    recorder = pages._recorder
    assert recorder is not None
    for k, name in enumerate(NAMES):
        up = states(clock.t)[name]
        for j in range(k):
            t = clock.t + 30 * j
            failed = ProbeResult.failure("timeout", "timed out", t, 0.05)
            recorder.record(SITES[name], failed, up, up, (), t)
    clock.t += 300
    assert reader.uptimes(NAMES) == {n: h.uptime for n, h in reader.overview(NAMES).items()}
