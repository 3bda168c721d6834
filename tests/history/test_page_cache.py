"""The all-sites page from the reader's kept figures and the block cache: what it shows equals
what a fresh render from the store shows, as probes come in, writes happen and the hour and
the day move on; muted downtime is shown apart and left out of uptime."""

from __future__ import annotations

import asyncio
import re
import tempfile
import zlib
from collections.abc import Callable
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.config import Policy, SiteConfig
from sentinel.history import db, query
from sentinel.history.query import LATENCY_EVERY_MS, HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, Rollup
from sentinel.history.settings import HistoryConfig
from sentinel.monitor import SiteState, observe
from sentinel.probes.result import ProbeResult
from sentinel.store import Store, StoreError
from sentinel.webviews.status_page import (
    DAYS_KEPT,
    BlockCache,
    PageContext,
    SiteView,
    page_pieces,
    render_page,
)

T0 = 1_767_225_600.0 - 2 * 3600 - 100  # a little before 22:00 UTC, two hours before a new day
UTC = ZoneInfo("UTC")
POLICY = Policy(failure_threshold=2, success_threshold=1, remind_every=300.0)
SITES = [
    SiteConfig(
        name=f"s{i}", kind="http", target="http://127.0.0.1:1/", interval=60.0, policy=POLICY
    )
    for i in range(3)
]


def errors(exc: StoreError) -> None:
    raise exc


def page(
    reader: HistoryReader, states: dict[str, SiteState], now: float, cache: BlockCache | None
) -> str:
    ctx = PageContext("S", now, UTC)
    views = []
    for s in SITES:
        state = states[s.name]
        last = state.last
        views.append(
            SiteView(
                name=s.name,
                status=state.status.value,
                since=state.since,
                last_at=None if last is None else last.at,
                last_reason="" if last is None else last.reason,
                last_message="" if last is None else last.message,
                incident_started=state.incident_started,
            )
        )

    def fill(chunk: list[SiteView]) -> list[SiteView]:
        histories = reader.overview([v.name for v in chunk], now)
        for v in chunk:
            v.history = histories.get(v.name)
        return chunk

    # compressed first (the blocks that changed are drawn and kept while compressing), then
    # as it is: the same page
    deflated = b"".join(page_pieces(views, ctx, fill=fill, cache=cache, encoding="deflate"))  # type: ignore[arg-type]
    html = "".join(render_page(views, ctx, fill=fill, cache=cache))  # type: ignore[arg-type]
    assert zlib.decompress(deflated).decode() == html
    return re.sub(r"Updated [^<]*", "", html)


def _no_chart(html: str) -> str:
    return re.sub(
        r'<figure class="latency">.*?</figure>|<p class="muted latency">.*?</p>', "", html
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # site
            st.sampled_from([0.4, 1.0, 5.0, 30.0, 60.0, 900.0, 3600.0]),  # seconds on
            st.booleans(),  # ok
            st.booleans(),  # muted
            st.integers(0, 3),  # 0: flush, 1: render, else nothing
        ),
        max_size=60,
    )
)
def test_the_kept_figures_and_reused_blocks_equal_a_fresh_render(
    steps: list[tuple[int, float, bool, bool, int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        now = [T0]
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=lambda: now[0])
        kept = HistoryReader(store, recorder, clock=lambda: now[0])
        cache = BlockCache()
        states = {s.name: SiteState(site=s.name) for s in SITES}
        loop = asyncio.new_event_loop()
        try:
            page(kept, states, now[0], cache)  # every site kept from the start
            for site_i, gap, ok, muted, action in steps:
                now[0] += gap
                site = SITES[site_i]
                result = (
                    ProbeResult(ok=True, reason="ok", message="", started_at=now[0], total=0.05)
                    if ok
                    else ProbeResult.failure("timeout", "timed out", now[0], 0.05)
                )
                before = states[site.name]
                obs = observe(before, result, site.policy, now[0], muted=muted)
                states[site.name] = obs.state
                recorder.record(site, result, before, obs.state, obs.events, now[0], muted)
                if action == 0:
                    loop.run_until_complete(recorder.flush())
                elif action == 1:
                    # the blocks reused are those the same figures draw afresh; but the
                    # latency chart, whose latest
                    # hour the cached page works out once every LATENCY_EVERY_MS by design
                    # (checked against a fresh reader at the end)
                    cached = page(kept, states, now[0], cache)
                    assert _no_chart(cached) == _no_chart(page(kept, states, now[0], None))
            loop.run_until_complete(recorder.flush())
            # The latest hour's latency is worked out every LATENCY_EVERY_MS: a turn later,
            # a fresh reader (everything from the store; no pending deltas now) says the same.
            now[0] += LATENCY_EVERY_MS / 1000
            fresh = HistoryReader(store, recorder, clock=lambda: now[0])
            assert page(kept, states, now[0], cache) == page(fresh, states, now[0], None)
        finally:
            loop.close()


def test_a_day_with_muted_downtime_is_shown_apart_and_not_counted() -> None:
    now = T0 + 3 * 86400
    day = int(now * 1000) // DAY_MS
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        # yesterday: 2 h down, all of it in a maintenance window; the day before: 1 h really down
        db.write_hours(
            store,
            {
                ("s0", (day - 1) * 24 + 3): Rollup(
                    probes=60, covered_ms=3_600_000, down_ms=3_600_000, excused_ms=3_600_000
                ),
                ("s0", (day - 1) * 24 + 4): Rollup(
                    probes=60, covered_ms=3_600_000, down_ms=3_600_000, excused_ms=3_600_000
                ),
                ("s0", (day - 1) * 24 + 5): Rollup(probes=60, covered_ms=3_600_000),
                ("s0", (day - 2) * 24 + 3): Rollup(
                    probes=60, covered_ms=3_600_000, down_ms=1_800_000
                ),
                ("s0", (day - 2) * 24 + 4): Rollup(probes=60, covered_ms=3_600_000),
            },
        )
        reader = HistoryReader(store, None, clock=lambda: now)
        states = {s.name: SiteState(site=s.name) for s in SITES}
        html = page(reader, states, now, BlockCache())
        figures = reader.uptimes(["s0"])["s0"]
    # 7 days: 3 h judged (the 2 excused hours are neither up nor down), 30 min down
    assert figures["7d"] == 1 - 1_800_000 / (5 * 3_600_000 - 2 * 3_600_000)
    assert 'class="b-maint"' in html
    assert "2 h down in maintenance or silenced" in html
    assert "blue had downtime in a maintenance window or a silence" in html


def test_a_site_going_down_and_back_leaves_the_other_sites_blocks_cached() -> None:
    # DOWN sites are listed first, so one going down moves every other site down the page: the
    # ids in a site's block name its place in the configured list, not on the page, so the
    # other sites' blocks are reused as they are (and the page equals a fresh render).
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=lambda: T0)
        reader = HistoryReader(store, recorder, clock=lambda: T0)
        cache = BlockCache()
        up = [
            ProbeResult(ok=True, reason="ok", message="", started_at=T0 - 10, total=0.05),
        ]
        states = {}
        for s in SITES:
            states[s.name] = observe(SiteState(site=s.name), up[0], s.policy, T0 - 10).state
        page(reader, states, T0, cache)
        last = SITES[-1]  # last by name: going down moves it above both others
        down = states[last.name]
        for _ in range(2):
            failed = ProbeResult.failure("timeout", "timed out", T0 - 5, 0.05)
            down = observe(down, failed, last.policy, T0 - 5).state
        assert down.status.value == "down"
        hits = cache.hits
        page(reader, {**states, last.name: down}, T0, cache)
        # two renders a page (deflate and identity): both other sites hit each time
        assert cache.hits - hits == 2 * (len(SITES) - 1)
        fresh = HistoryReader(store, recorder, clock=lambda: T0)
        assert page(reader, {**states, last.name: down}, T0, cache) == page(
            fresh, {**states, last.name: down}, T0, None
        )


def _fields(widths: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """Fields for a key whose first field is unbounded and the others `widths` bits wide:
    anything, and the neighbours of each width's limit (the values that could alias)."""
    top = st.integers(min_value=-2, max_value=2**45)

    def field(width: int) -> st.SearchStrategy[int]:
        edge = st.sampled_from([0, 1, (1 << width) - 1, 1 << width, (1 << width) + 1, -1])
        return edge | st.integers(min_value=-2, max_value=2 ** (width + 1))

    return st.tuples(top, *map(field, widths))


_KEYS: dict[Callable[..., object], tuple[int, ...]] = {
    query.uptime_key: (14, 14, 14),
    query.days_key: (32, 14, 24, 24),
    query.hours_key: (32, 40, 40),
    query.incidents_key: (40,),
}


@given(st.data())
def test_a_history_key_part_is_equal_exactly_when_its_fields_are(data: st.DataObject) -> None:
    for key, widths in _KEYS.items():
        a = data.draw(_fields(widths))
        b = data.draw(st.just(a) | _fields(widths))
        assert (key(*a) == key(*b)) == (a == b), (key.__name__, a, b)


def test_a_down_sites_days_are_drawn_from_its_past_days_kept_drawn() -> None:
    # A DOWN site's today changes with every poll: its 89 past days are kept drawn (from the
    # second drawing on) and today's bar added; the page is the one drawn afresh.
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        now = [T0 - 600.0]
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=lambda: now[0])
        reader = HistoryReader(store, recorder, clock=lambda: now[0])
        cache = BlockCache()
        site = SITES[0]
        states = {s.name: SiteState(site=s.name) for s in SITES}
        loop = asyncio.new_event_loop()
        try:
            for step in range(12):
                now[0] += 30
                result = ProbeResult.failure("timeout", "timed out", now[0], 0.05)
                before = states[site.name]
                obs = observe(before, result, site.policy, now[0])
                states[site.name] = obs.state
                recorder.record(site, result, before, obs.state, obs.events, now[0])
                if step % 4 == 3:
                    loop.run_until_complete(recorder.flush())
                cached = page(reader, states, now[0], cache)
                assert _no_chart(cached) == _no_chart(page(reader, states, now[0], None)), step
        finally:
            loop.close()
        assert states[site.name].status.value == "down"
        assert site.name in cache._days_drawn  # (drawn from the kept past days)
        assert "down 5 min" in cached


def test_the_past_days_kept_drawn_are_bounded_and_follow_the_configured_sites() -> None:
    day = int(T0 * 1000) // DAY_MS
    days = tuple(
        query.Period((day - 89 + i) * DAY_MS, Rollup(covered_ms=DAY_MS, down_ms=i * 1000))
        for i in range(90)
    )
    history = query.SiteHistory(uptime={}, days=days, hours=(), incidents=())

    def lazy(on: int) -> query.LazyHistory:
        return query.LazyHistory(
            query.HistoryKey(0, 0, 0, 0), {}, lambda part: history, (on, 1), (DAY_MS, 5000, 0)
        )

    ctx = PageContext("S", T0, UTC)
    cache = BlockCache()
    names = [f"n{i}" for i in range(3 * DAYS_KEPT)]
    for _ in range(2):  # more DOWN sites than kept, in turn: the first kept stay
        texts = [cache.days_text(name, lazy(day), ctx) for name in names]
    assert len(cache._days_drawn) == DAYS_KEPT and "n0" in cache._days_drawn
    assert texts[0] is not None and texts[-1] is None  # (the others drawn as usual)
    assert "99.99 % up, down 5 s" in texts[0]  # (today, from `today`)
    # a new day: those of the day before go to make room
    assert cache.days_text(names[-1], lazy(day + 1), ctx) is not None
    assert len(cache._days_drawn) == 1
    cache.days_text("n1", lazy(day + 1), ctx)
    cache.forget_days("n1")  # (back UP)
    cache.keep(["n0"])
    assert not cache._days_drawn
