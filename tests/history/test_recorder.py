"""The recorder on a real SQLite store: the stored rollups equal the raw probes they summarise,
whatever the batching, across restarts and kill -9; pruning keeps the retention."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sentinel.config import Policy, SiteConfig
from sentinel.history import db
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup
from sentinel.history.settings import HistoryConfig
from sentinel.monitor import SiteState, Status, observe
from sentinel.probes.result import ProbeResult
from sentinel.store import Store, StoreError

T0 = 1_767_225_600.0 - 1800  # half an hour before a day boundary (2026-01-01 UTC)
POLICY = Policy(failure_threshold=2, success_threshold=1, remind_every=300.0)
SITES = [
    SiteConfig(
        name="blog", kind="http", target="http://127.0.0.1:1/", interval=60.0, policy=POLICY
    ),
    SiteConfig(name='<b>"x"</b>', kind="tcp", target="127.0.0.1:1", interval=60.0, policy=POLICY),
]


@dataclass(frozen=True)
class Probe:
    site: int
    gap: float  # seconds since the previous step
    ok: bool
    latency_ms: float
    muted: bool = False  # a maintenance window or a silence covers the site at this probe


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Kill:
    """kill -9: the pending deltas are lost; the monitor's states survive (the state store)."""

    downtime: float  # how long sentinel stays down


step = st.one_of(
    st.builds(
        Probe,
        st.integers(0, 1),
        st.sampled_from([0.0, 1.5, 30.0, 60.0, 61.25, 90.0, 600.0]),
        st.booleans(),
        st.floats(0.1, 5000.0),
    ),
    st.just(Flush()),
    st.builds(Kill, st.sampled_from([1.0, 30.0, 3600.0])),
)


def errors(exc: StoreError) -> None:
    raise exc


# (state before, state after, time, muted) of every probe of the latest run()
transitions: list[tuple[SiteState, SiteState, float, bool]] = []


def run(
    steps: list[Probe | Flush | Kill], store: Store
) -> tuple[list[tuple[str, float, bool, int]], int, list[float]]:
    """Drive the real monitor and recorder; returns the probes whose deltas were committed, the
    number of incidents opened and the closed incidents' durations (s) in kill-free runs."""
    loop = asyncio.new_event_loop()
    recorder = HistoryRecorder(store, HistoryConfig(), errors)
    states: dict[str, SiteState] = {}
    t = T0
    committed: list[tuple[str, float, bool, int]] = []
    segment: list[tuple[str, float, bool, int]] = []
    starts: set[tuple[str, int]] = set()
    ends: dict[tuple[str, int], float] = {}
    transitions.clear()
    try:
        for s in steps:
            if isinstance(s, Probe):
                t += s.gap
                site = SITES[s.site]
                latency = s.latency_ms / 1000
                result = (
                    ProbeResult(ok=True, reason="ok", message="", started_at=t, total=latency)
                    if s.ok
                    else ProbeResult.failure("timeout", "timed out <script>", t, latency)
                )
                before = states.get(site.name) or SiteState(site=site.name)
                obs = observe(before, result, site.policy, t, muted=s.muted)
                states[site.name] = obs.state
                recorder.record(site, result, before, obs.state, obs.events, t, s.muted)
                transitions.append((before, obs.state, t, s.muted))
                segment.append((site.name, t, s.ok, int(latency * 1_000_000)))
                # An incident per DOWN, whether or not its alert was held (flapping, muted);
                # it lasts from its first failure to the first good probe of the recovery.
                # (Keyed by start: two incidents starting in the same millisecond are one.)
                down = Status.DOWN
                if before.status is not down and obs.state.status is down:
                    assert obs.state.incident_started is not None
                    starts.add((site.name, int(obs.state.incident_started * 1000)))
                if before.status is down and obs.state.status is not down:
                    assert before.incident_started is not None and obs.state.since is not None
                    start_ms = int(before.incident_started * 1000)
                    ends[(site.name, start_ms)] = (
                        max(obs.state.since, before.incident_started) - before.incident_started
                    )
            elif isinstance(s, Flush):
                loop.run_until_complete(recorder.flush())
                committed += segment
                segment = []
            else:
                segment = []
                t += s.downtime
                recorder = HistoryRecorder(store, HistoryConfig(), errors)
        loop.run_until_complete(recorder.flush())
        committed += segment
    finally:
        loop.close()
    return committed, len(starts), list(ends.values())


def expected(committed: list[tuple[str, float, bool, int]]) -> dict[tuple[str, int], Rollup]:
    out: dict[tuple[str, int], Rollup] = defaultdict(Rollup)
    for name, t, ok, lat in committed:
        out[(name, int(t * 1000) // HOUR_MS)].add_probe(ok, lat)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=80))
def test_stored_rollups_equal_the_raw_probes_across_batches_and_kills(
    steps: list[Probe | Flush | Kill],
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        committed, opened, durations = run(steps, store)
        hours = db.read_rollups(store, db.HOUR, 0)
        days = db.read_rollups(store, db.DAY, 0)
        incidents = db.read_incidents(store, limit=1000)
    want = expected(committed)
    for (name, hour), raw in want.items():
        got = hours[name][hour]
        assert (got.probes, got.failures, got.lat_max_us, got.hist) == (
            raw.probes,
            raw.failures,
            raw.lat_max_us,
            raw.hist,
        )
    for name, rows in hours.items():
        for hour, got in rows.items():
            assert got.probes == want[(name, hour)].probes  # no row without its probes
            assert 0 <= got.down_ms <= got.covered_ms <= HOUR_MS
    # days are exactly the merge of their hours
    merged: dict[tuple[str, int], Rollup] = defaultdict(Rollup)
    for name, rows in hours.items():
        for hour, got in rows.items():
            merged[(name, hour * HOUR_MS // DAY_MS)].merge(got)
    assert {(n, d): r for n, rows in days.items() for d, r in rows.items()} == dict(merged)
    # incidents are written as they happen: every one that opened is in the log, once
    assert len(incidents) == opened
    closed = sorted((i.ended_ms - i.started_ms) / 1000 for i in incidents if i.ended_ms is not None)
    assert len(closed) == len(durations)
    assert all(abs(a - b) <= 0.002 for a, b in zip(closed, sorted(durations), strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([30.0, 60.0, 90.0])), min_size=2, max_size=120
    )
)
# Found by hypothesis: a site that starts flapping on a recovery sends no RECOVERED, and its
# incident stayed open in the log while its downtime had ended.
@example(probes=[(True, 30.0), (False, 30.0), (False, 30.0), (True, 30.0)] * 2 + [(False, 30.0)])
def test_without_restarts_every_second_is_watched_and_downtime_is_the_incidents(
    probes: list[tuple[bool, float]],
) -> None:
    steps: list[Probe | Flush | Kill] = [Probe(0, gap, ok, 10.0) for ok, gap in probes]
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        committed, _, _ = run(steps, store)
        hours = db.read_rollups(store, db.HOUR, 0).get("blog", {})
        incidents = db.read_incidents(store, limit=1000)
    times = [t for _, t, _, _ in committed]
    covered = sum(r.covered_ms for r in hours.values())
    assert covered == sum(int(b * 1000) - int(a * 1000) for a, b in itertools.pairwise(times))
    down = sum(r.down_ms for r in hours.values())
    last_ms = int(times[-1] * 1000)
    assert down == sum(
        (i.ended_ms if i.ended_ms is not None else last_ms) - i.started_ms for i in incidents
    )


def test_a_restart_gap_is_no_data_not_downtime() -> None:
    steps: list[Probe | Flush | Kill] = [
        Probe(0, 0, False, 1),
        Probe(0, 60, False, 1),  # DOWN from T0
        Probe(0, 60, False, 1),
        Flush(),
        Kill(downtime=7200),
        Probe(0, 0, False, 1),
        Probe(0, 60, True, 1),
    ]
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        run(steps, store)
        hours = db.read_rollups(store, db.HOUR, 0)["blog"]
    assert sum(r.covered_ms for r in hours.values()) == 180_000  # 2 min before, 1 after
    assert sum(r.down_ms for r in hours.values()) == 180_000  # not the two hours away


def test_prune_keeps_the_retention() -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        now = T0 + 500 * 86400
        r = Rollup(probes=1, covered_ms=1)
        deltas = {("blog", int((now - d * 86400) * 1000) // HOUR_MS): r for d in range(0, 500, 3)}
        db.write_hours(store, deltas)
        old = int((now - 450 * 86400) * 1000)
        db.incident_opened(store, "blog", old, "timeout", "x")
        db.incident_updated(store, "blog", old, ended_ms=old + 60_000)
        db.incident_opened(store, "blog", int((now - 10 * 86400) * 1000), "timeout", "x")
        recorder = HistoryRecorder(store, HistoryConfig(), errors, clock=lambda: now)
        recorder.prune()
        hours = db.read_rollups(store, db.HOUR, 0)["blog"]
        days = db.read_rollups(store, db.DAY, 0)["blog"]
        assert min(hours) * HOUR_MS >= (now - 35 * 86400) * 1000 - HOUR_MS
        assert min(days) * DAY_MS >= (now - 400 * 86400) * 1000 - DAY_MS
        assert len(db.read_incidents(store, limit=100)) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([30.0, 60.0, 90.0]), st.booleans()),
        min_size=2,
        max_size=120,
    )
)
def test_muted_downtime_is_kept_apart_and_equals_the_raw_probes(
    probes: list[tuple[bool, float, bool]],
) -> None:
    """Rollups of raw probes with a muted flag equal the stored figures: the downtime each
    probe accounts for (the time since the previous probe while DOWN, or the failing streak it
    confirms) is excused exactly when that probe ran muted; the incidents carry the same."""
    steps: list[Probe | Flush | Kill] = [
        Probe(0, gap, ok, 10.0, muted) for ok, gap, muted in probes
    ]
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        run(steps, store)
        hours = db.read_rollups(store, db.HOUR, 0).get("blog", {})
        days = db.read_rollups(store, db.DAY, 0).get("blog", {})
        incidents = db.read_incidents(store, limit=1000)
    down = excused = 0
    previous_ms: int | None = None
    for before, after, t, muted in transitions:
        t_ms = int(t * 1000)
        span = 0
        if before.status.value == "down" and previous_ms is not None:
            span = t_ms - previous_ms
        elif before.status.value != "down" and after.status.value == "down":
            assert after.incident_started is not None
            span = t_ms - max(int(after.incident_started * 1000), int(T0 * 1000))
        down += span
        excused += span if muted else 0
        previous_ms = t_ms
    assert sum(r.down_ms for r in hours.values()) == down
    assert sum(r.excused_ms for r in hours.values()) == excused
    assert sum(r.excused_ms for r in days.values()) == excused
    assert all(0 <= r.excused_ms <= r.down_ms for r in hours.values())
    # the incident log: every DOWN is there (muted or not), with the same excused time
    assert len(incidents) == sum(
        b.status.value != "down" and a.status.value == "down" for b, a, _, _ in transitions
    )
    assert sum(i.excused_ms for i in incidents) == excused
    # uptime leaves excused downtime out of both sides
    total = Rollup()
    for r in hours.values():
        total.merge(r)
    judged = total.covered_ms - total.excused_ms
    if judged > 0:
        assert total.uptime() == max(0.0, 1 - (total.down_ms - total.excused_ms) / judged)
    else:
        assert total.uptime() is None
