"""The dispatcher with real channels and real receivers on loopback (aiohttp sinks): one channel's
outage holds back no other, escalate_after hands a stuck alert to the fallback, stale reminders
collapse into the latest, and an Alertmanager channel resends firing alerts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import Config, parse_config
from sentinel.metrics import Metrics
from sentinel.monitor import ResultSummary, SiteState, Status, StillDown, WentDown
from sentinel.notify.dispatch import Dispatcher
from sentinel.store import Store
from webhook_sink import Received, WebhookSink

pytestmark = pytest.mark.slow


def config(channels: list[dict[str, Any]], **defaults: Any) -> Config:
    return parse_config(
        {
            "channels": channels,
            "defaults": defaults,
            "sites": [{"name": "shop", "url": "http://127.0.0.1:9/"}],
        }
    )


def hook(name: str, sink: WebhookSink) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": sink.url(f"/{name}")}


def down(at: float = 1000.0) -> WentDown:
    return WentDown("shop", "inc1", 990.0, at, "status", "HTTP 500", ())


def still(n: int) -> StillDown:
    return StillDown("shop", "inc1", 990.0, 1000.0 + n, "status", "HTTP 500", n, ())


async def wait_for(sink: WebhookSink, count: int, path: str) -> list[Received]:
    return await asyncio.to_thread(sink.wait_for, count, 30.0, path)


class Running:
    def __init__(self, tmp: Path, cfg: Config, states: dict[str, SiteState] | None = None):
        self.store = Store.open(tmp)
        self.states = states or {}
        self.dispatch = Dispatcher(self.store, Metrics(process=False), states=lambda: self.states)
        self.dispatch.configure(cfg, self.dispatch.build(cfg))
        self.cfg = cfg

    def enqueue(self, *events: WentDown | StillDown) -> None:
        site = self.cfg.site("shop")
        items = [o for e in events for o in self.dispatch.outgoing_for_event(e, site)]
        self.store.save_state(None, items)
        self.dispatch.wake()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Running]]:
    made: list[Running] = []
    tasks: list[asyncio.Task[None]] = []

    def make(cfg: Config, states: dict[str, SiteState] | None = None) -> Running:
        r = Running(tmp_path, cfg, states)
        made.append(r)
        tasks.append(asyncio.get_running_loop().create_task(r.dispatch.run()))
        return r

    yield make
    for task in tasks:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for r in made:
        r.store.close()


async def test_one_channels_outage_does_not_hold_back_another(
    running: Callable[..., Running],
) -> None:
    with WebhookSink() as broken, WebhookSink() as fine:
        broken.status = 503
        r = running(config([hook("broken", broken), hook("fine", fine)]))
        r.enqueue(down())
        [got] = await wait_for(fine, 1, "/fine")
        assert got.json()["kind"] == "down"
        await wait_for(broken, 1, "/broken")  # tried, refused, and retried later
        assert [i.channel for i in r.store.outbox_items()] == ["broken"]


async def test_an_alert_undelivered_after_escalate_after_goes_to_the_fallback(
    running: Callable[..., Running],
) -> None:
    with WebhookSink() as slow, WebhookSink() as fallback:
        slow.status = 503  # transient: retried, never permanent
        cfg = config(
            [hook("main", slow), hook("backup", fallback)],
            notify=["main"],
            fallback="backup",
            escalate_after="1s",
        )
        r = running(cfg)
        r.enqueue(down())
        [got] = await wait_for(fallback, 1, "/backup")
        assert got.json()["kind"] == "down" and got.json()["site"] == "shop"
        [item] = r.store.outbox_items()
        assert item.channel == "main" and item.escalated


async def test_stale_reminders_collapse_into_the_latest_after_an_outage(
    running: Callable[..., Running],
) -> None:
    with WebhookSink() as sink:
        sink.status = 503
        r = running(config([hook("phone", sink)]))
        r.enqueue(down(), still(1), still(2), still(3))
        await wait_for(sink, 1, "/phone")
        sink.status = 200
        r.dispatch.wake()
        received = await wait_for(sink, 2, "/phone")

        async def drained() -> None:
            while r.store.outbox_items():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(drained(), 30)
        kinds = [(x.json()["kind"], x.json()["reminder"]) for x in sink.received]
        # The refused attempts were all the DOWN; then the DOWN and only the latest reminder.
        assert kinds[-2:] == [("down", 0), ("still_down", 3)], kinds
        assert ("still_down", 1) not in kinds and ("still_down", 2) not in kinds
        assert len(received) >= 2


async def test_alertmanager_resends_firing_alerts(running: Callable[..., Running]) -> None:
    with WebhookSink() as am:
        cfg = config(
            [{"name": "am", "type": "alertmanager", "urls": [am.url("")], "resend_every": "1s"}]
        )
        state = SiteState(
            site="shop",
            status=Status.DOWN,
            since=990.0,
            incident_id="inc1",
            incident_started=990.0,
            recent=(ResultSummary(995.0, False, 500, 0.1, "status", "HTTP 500"),),
        )
        running(cfg, {"shop": state})
        posts = await wait_for(am, 2, "/api/v2/alerts")
        for post in posts[:2]:
            [alert] = post.json()
            assert alert["labels"] == {
                "alertname": "SiteDown",
                "site": "shop",
                "severity": "critical",
            }
            assert alert["startsAt"] == "1970-01-01T00:16:30Z"
