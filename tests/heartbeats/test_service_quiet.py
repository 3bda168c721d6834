"""The heartbeat service asks `muted` on every ping and timer look, and sends a held alert at the
first look after the mute ends (fake clock, no I/O: `persist` records what would be written)."""

from __future__ import annotations

from collections.abc import Sequence

from sentinel.heartbeats import state as hb
from sentinel.heartbeats.config import HeartbeatConfig
from sentinel.heartbeats.service import HeartbeatService
from sentinel.promtext import Registry


def test_a_muted_heartbeat_is_held_then_released_by_the_timer() -> None:
    now = [1000.0]
    muted = {"job"}
    sent: list[hb.Event] = []

    def persist(state: hb.HeartbeatState, events: Sequence[hb.Event]) -> None:
        del state
        sent.extend(events)

    service = HeartbeatService(
        Registry(),
        persist,
        clock=lambda: now[0],
        muted=lambda name, at: name in muted,
    )
    beats = [HeartbeatConfig("job", every=60.0, grace=30.0), HeartbeatConfig("other", every=60.0)]
    service.configure(beats, {})
    now[0] += 100.0
    service.check_all()
    assert [type(e).__name__ for e in sent] == []  # other: grace 1h, not late yet
    assert service.states["job"].status == "late" and service.states["job"].held
    (view,) = [v for v in service.status() if v["heartbeat"] == "job"]
    assert view["alert_held"] is True and view["status"] == "late"
    now[0] += 10.0
    service.check_all()  # still muted
    assert sent == []
    muted.clear()
    service.poke()
    now[0] += 1.0
    service.check_all()
    (late,) = sent
    assert isinstance(late, hb.Late) and late.name == "job" and late.at == now[0]
    service.check_all()
    assert len(sent) == 1  # released once
