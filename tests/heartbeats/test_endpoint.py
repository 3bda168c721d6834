"""The /ping endpoint on the real web server (loopback sockets), the service behind it with a
fake clock, and its store: tokens, bodies, the rate limit, restart safety."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from sentinel.config import EmailConfig, parse_config
from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.heartbeats.endpoint import (
    BURST,
    MAX_BODY,
    MAX_KEPT,
    PingTarget,
    TokenBucket,
    given_token,
    parse_ping_path,
)
from sentinel.heartbeats.service import HeartbeatService, alert_heartbeat, load_states
from sentinel.heartbeats.state import Event, HeartbeatState
from sentinel.metrics import Metrics
from sentinel.notify.dispatch import Dispatcher
from sentinel.promtext import Registry
from sentinel.store import Store
from sentinel.web import WebServer


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ping_paths() -> None:
    assert parse_ping_path("/ping/backup") == PingTarget("backup", "success", None)
    assert parse_ping_path("/ping/backup/") == PingTarget("backup", "success", None)
    assert parse_ping_path("/ping/backup/start") == PingTarget("backup", "start", None)
    assert parse_ping_path("/ping/backup/fail") == PingTarget("backup", "fail", None)
    assert parse_ping_path("/ping/backup/0") == PingTarget("backup", "success", 0)
    assert parse_ping_path("/ping/backup/255") == PingTarget("backup", "fail", 255)
    for bad in (
        "/ping/",
        "/ping//start",
        "/ping/backup/256",
        "/ping/backup/-1",
        "/ping/backup/0001",
        "/ping/backup/stop",
        "/ping/backup/start/x",
        "/ping/a%2Fb",
        "/ping/../x",
        "/pingx/backup",
        "/ping/backup/\u0661",  # a non-ASCII digit
    ):
        assert parse_ping_path(bad) is None, bad


def test_token_bucket_allows_a_burst_then_one_per_refill() -> None:
    bucket = TokenBucket(0.0, burst=3, refill=2.0)
    assert [bucket.take(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert not bucket.take(1.9)
    assert bucket.take(2.1)
    assert not bucket.take(2.2)
    assert all(bucket.take(100.0) for _ in range(3))  # refilled to the burst, not beyond


def test_token_from_query_or_bearer() -> None:
    assert given_token("token=abc", {}) == b"abc"
    assert given_token("x=1&token=abc", {}) == b"abc"
    assert given_token("", {"authorization": "Bearer abc"}) == b"abc"
    assert given_token("", {"authorization": "bearer  abc "}) == b"abc"
    assert given_token("", {"authorization": "Basic abc"}) is None
    assert given_token("", {}) is None


# ---------------------------------------------------------------------------- on a real server

BEATS = (
    HeartbeatConfig("open", every=60.0, grace=30.0),
    HeartbeatConfig("secret", every=60.0, grace=30.0, token_file="/unused"),
)
TOKENS = {"open": None, "secret": b"s3cret"}


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.mono = Clock(50.0)
        self.persisted: list[tuple[HeartbeatState, tuple[Event, ...]]] = []
        self.registry = Registry()
        self.service = HeartbeatService(
            self.registry, self.persist, clock=self.clock, monotonic=self.mono
        )
        self.service.configure(BEATS, TOKENS)
        self.persisted.clear()  # the new states' first write
        self.port = 0

    def persist(self, state: HeartbeatState, events: Sequence[Event]) -> None:
        self.persisted.append((state, tuple(events)))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body

    async def get(self, target: str, *, method: str = "GET", headers: str = "") -> int:
        status, _ = await self.request(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
        )
        return status

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    server = WebServer({}, prefixed={"/ping/": h.service.handle})
    h.port = await server.start("127.0.0.1:0")
    yield h
    await server.close()


async def test_pings_move_the_state(harness: Harness) -> None:
    h = harness
    assert await h.get("/ping/open/start") == 200
    assert h.service.states["open"].status == "running"
    h.clock.now += 7
    assert await h.get("/ping/open", method="HEAD") == 200
    state = h.service.states["open"]
    assert state.status == "up" and state.last_duration == 7.0
    assert h.metric("sentinel_heartbeat_up", heartbeat="open") == 1.0
    assert h.metric("sentinel_heartbeat_last_duration_seconds", heartbeat="open") == 7.0
    assert h.metric("sentinel_heartbeat_last_ping_timestamp_seconds", heartbeat="open") == (
        h.clock.now
    )
    assert h.metric("sentinel_heartbeat_state", heartbeat="open", state="up") == 1.0
    assert h.metric("sentinel_heartbeat_pings_total", heartbeat="open", kind="start") == 1.0
    assert [s.status for s, _ in h.persisted] == ["running", "up"]


async def test_a_post_body_becomes_the_failure_output(harness: Harness) -> None:
    h = harness
    body = b"line one\nerror: disk full\n"
    status, _ = await h.request(
        b"POST /ping/open/2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    assert status == 200
    (_, events) = h.persisted[-1]
    (failed,) = events
    assert failed.output == body.decode()  # type: ignore[union-attr]
    assert h.service.states["open"].status == "failed"
    assert h.metric("sentinel_heartbeat_up", heartbeat="open") == 0.0


async def test_a_large_body_keeps_its_end_and_a_huge_one_is_refused_unread(
    harness: Harness,
) -> None:
    h = harness
    body = b"".join(b"%06d\n" % n for n in range(20_000))  # 140 KB
    status, _ = await h.request(
        b"POST /ping/open/1 HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    assert status == 200
    output = h.service.states["open"].last_output
    assert len(output) == MAX_KEPT and body.decode().endswith(output)
    # The head alone announces too much: refused at once, nothing read or kept.
    status, text = await h.request(
        b"POST /ping/open HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    )
    assert status == 413 and b"body above" in text
    status, _ = await h.request(
        b"POST /ping/open HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert status == 411
    assert h.metric("sentinel_heartbeat_pings_rejected_total", reason="too_large") == 1.0


async def test_wrong_token_and_unknown_name_look_the_same(harness: Harness) -> None:
    h = harness
    answers = [
        await h.request(b"GET /ping/secret HTTP/1.1\r\n\r\n"),
        await h.request(b"GET /ping/secret?token=wrong HTTP/1.1\r\n\r\n"),
        await h.request(b"GET /ping/secret HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n"),
        await h.request(b"GET /ping/nosuch?token=s3cret HTTP/1.1\r\n\r\n"),
        await h.request(b"GET /ping/nosuch HTTP/1.1\r\n\r\n"),
    ]
    assert len(set(answers)) == 1
    assert answers[0][0] == 401
    assert h.persisted == []

    def status() -> str:  # read anew each time (mypy would narrow a repeated expression)
        return h.service.states["secret"].status

    assert status() == "new"
    assert await h.get("/ping/secret?token=s3cret") == 200
    assert await h.get("/ping/secret/start", headers="Authorization: Bearer s3cret\r\n") == 200
    assert status() == "running"
    assert h.metric("sentinel_heartbeat_pings_rejected_total", reason="unauthorized") == 5.0


async def test_other_methods_and_paths_are_refused(harness: Harness) -> None:
    h = harness
    assert await h.get("/ping/open", method="PUT") == 405
    assert await h.get("/ping/open/999") == 404
    assert await h.get("/ping/") == 404
    assert h.persisted == []


async def test_a_flood_costs_no_writes_beyond_the_burst(harness: Harness) -> None:
    h = harness
    statuses = [await h.get("/ping/open") for _ in range(200)]
    assert statuses.count(200) == BURST
    assert statuses.count(429) == 200 - BURST
    assert len(h.persisted) <= BURST
    assert h.metric("sentinel_heartbeat_pings_rejected_total", reason="rate_limited") == 190.0
    # A flood without the token cannot use up the job's own pings.
    for _ in range(50):
        assert await h.get("/ping/secret?token=bad") == 401
    assert await h.get("/ping/secret?token=s3cret") == 200
    h.mono.now += 1.0  # one ping a second again
    assert await h.get("/ping/open") == 200
    assert await h.get("/ping/open") == 429


# ---------------------------------------------------------------------------- store and restart

EMAIL = EmailConfig(sender="sentinel@example.org", recipients=("owner@example.org",))


def test_state_and_alerts_survive_a_restart_in_the_store(tmp_path: Path) -> None:
    clock = Clock()
    errors: list[Exception] = []

    config = parse_config(
        {"email": {"from": EMAIL.sender, "to": list(EMAIL.recipients)}, "sites": []}
    )

    def service_on(store: Store) -> HeartbeatService:
        # The real dispatcher (email only here) turns the events into outbox rows.
        dispatch = Dispatcher(store, Metrics(process=False), states=dict)
        dispatch.configure(config, dispatch.build(config))

        def persist(state: HeartbeatState, events: Sequence[Event]) -> None:
            alert_heartbeat(
                store=store,
                dispatch=dispatch,
                email=config.email,
                state=state,
                events=events,
                on_store_error=errors.append,
                now=clock.now,
            )

        return HeartbeatService(Registry(), persist, clock=clock)

    beat = HeartbeatConfig("job", every=60.0, grace=30.0)
    with Store.open(tmp_path) as store:
        service = service_on(store)
        service.start([beat], {"job": None}, store)
        service._accept(PingTarget("job", "fail", 3), "it broke")
        assert store.outbox_pending() == 1
        item = store.outbox_next(clock.now)
        assert item is not None and item.kind == "failed"
        mail = email.message_from_bytes(item.message, policy=email.policy.default)
        assert mail["Subject"] == "[sentinel] FAILED: job — exit 3"
        saved_at = clock.now

    clock.now += 10_000  # down for a while: pings sent meanwhile are lost
    with Store.open(tmp_path) as store:
        service = service_on(store)
        service.start([beat], {"job": None}, store)
        state = service.states["job"]
        assert state.status == "failed" and state.last_output == "it broke"
        assert state.last_ping == saved_at and state.resumed_at == clock.now
        clock.now += 100  # past the old deadline and one period + grace from the restart
        service._accept(PingTarget("job", "success", None), "")
        assert store.outbox_pending() == 2  # the RECOVERED, threaded to the FAILED
        assert load_states(store)["job"].status == "up"
        # A heartbeat removed from the config leaves the store too.
        service.reload([], {}, store)
        assert load_states(store) == {}
    assert errors == []


def test_the_timer_opens_one_late_incident_per_silence() -> None:
    clock = Clock()
    persisted: list[tuple[HeartbeatState, tuple[Event, ...]]] = []
    service = HeartbeatService(
        Registry(), lambda s, e: persisted.append((s, tuple(e))), clock=clock
    )
    service.configure([HeartbeatConfig("job", every=60.0, grace=30.0)], {"job": None})
    persisted.clear()
    clock.now += 90
    service.check_all()
    assert persisted == []
    clock.now += 1
    service.check_all()
    service.check_all()
    assert [type(e).__name__ for _, events in persisted for e in events] == ["Late"]
    assert service.status()[0]["status"] == "late"
