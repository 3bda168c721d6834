"""The dead man's switch's pure parts: the [deadman] section, the /fail URL, what each tick pings,
and when alerts count as undeliverable (sentinel.notify.health)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.config import ConfigError, parse_config
from sentinel.deadman import DeadmanConfig, DeadmanSwitch, fail_url, plan_ping
from sentinel.notify.health import FAILING_AFTER, ChannelHealth
from sentinel.promtext import Counter, Registry
from webhook_sink import WebhookSink

URL = "https://hc-ping.com/5c4d"


def test_the_section_needs_a_url_and_defaults_to_a_minute() -> None:
    config = parse_config({"deadman": {"url": URL}, "sites": []})
    assert config.deadman == DeadmanConfig(url=URL, every=60.0)
    assert parse_config({"sites": []}).deadman is None
    with pytest.raises(ConfigError) as info:
        parse_config({"deadman": {"every": "1m"}, "sites": []})
    assert info.value.errors == ["deadman: url: required"]


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"url": "ftp://x/y"}, "deadman: url: invalid URL"),
        ({"url": "hc-ping.com/x"}, "deadman: url: invalid URL"),
        ({"url": URL, "every": "1s"}, "deadman: every: must be between 2s and 1d"),
        ({"url": URL, "every": 60}, "deadman: every: invalid duration"),
        ({"url": URL, "evry": "1m"}, "deadman: evry: unknown key"),
    ],
)
def test_a_bad_section_is_one_line_naming_the_key(section: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"deadman": section, "sites": []})
    [line] = info.value.errors
    assert line.startswith(error)


def test_the_timeout_ends_a_ping_before_the_next_is_due() -> None:
    assert DeadmanConfig(URL, every=60.0).timeout == 10.0
    assert DeadmanConfig(URL, every=2.0).timeout == 1.0


@pytest.mark.parametrize(
    ("url", "fail"),
    [
        (URL, URL + "/fail"),
        (URL + "/", URL + "/fail"),
        (
            "https://hc.example.org/ping/k/backup?create=1",
            "https://hc.example.org/ping/k/backup/fail?create=1",
        ),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/fail"),
    ],
)
def test_fail_goes_at_the_end_of_the_path(url: str, fail: str) -> None:
    assert fail_url(url) == fail


@given(progressed=st.booleans(), reason=st.none() | st.text(max_size=2000))
def test_a_tick_pings_only_on_progress_and_fails_only_when_undeliverable(
    progressed: bool, reason: str | None
) -> None:
    ping = plan_ping(
        DeadmanConfig(URL), progressed=progressed, undeliverable=reason, summary="3 sites, 0 down"
    )
    if not progressed:
        assert ping is None
        return
    assert ping is not None
    assert len(ping.body.decode()) <= 1000 and b"\n" not in ping.body
    if reason is None:
        assert (ping.url, ping.result, ping.body) == (URL, "ok", b"3 sites, 0 down")
    else:
        assert (ping.url, ping.result) == (URL + "/fail", "fail")


def health(*names: str) -> ChannelHealth:
    h = ChannelHealth()
    h.configure({name: ("settings", name) for name in names})
    return h


def test_no_channel_means_nothing_is_undeliverable() -> None:
    assert ChannelHealth().undeliverable(0.0) is None


def test_undeliverable_only_when_every_channel_fails() -> None:
    h = health("email", "phone")
    h.failed("email", permanent=True, detail="550 5.7.1 relay\nnot permitted", now=0.0)
    assert h.undeliverable(1.0) is None  # the phone may still deliver
    h.failed("phone", permanent=True, detail="HTTP 404", now=2.0)
    reason = h.undeliverable(3.0)
    assert reason is not None
    assert "email: 550 5.7.1 relay not permitted" in reason and "phone: HTTP 404" in reason
    h.sent("phone")
    assert h.undeliverable(4.0) is None


def test_transient_failures_count_only_after_a_while() -> None:
    h = health("email")
    h.failed("email", permanent=False, detail="timed out", now=100.0)
    h.failed("email", permanent=False, detail="connection refused", now=160.0)
    assert h.undeliverable(100.0 + FAILING_AFTER - 1) is None
    reason = h.undeliverable(100.0 + FAILING_AFTER)
    assert reason is not None and "connection refused" in reason


def test_a_reload_keeps_the_record_of_an_unchanged_channel_only() -> None:
    h = health("email", "phone")
    h.failed("email", permanent=True, detail="550", now=0.0)
    h.failed("phone", permanent=True, detail="404", now=0.0)
    h.configure({"email": ("settings", "email"), "phone": ("new settings",)})
    assert h.failing(1.0) == {"email": "550"}
    h.configure({"email": ("settings", "email")})
    assert h.undeliverable(1.0) is not None


@pytest.mark.slow
async def test_the_switch_pings_only_while_the_scheduler_progresses() -> None:
    """The shell against a real loopback receiver, one tick at a time (no timing involved)."""
    counter = Counter("pings", "", ["result"], registry=Registry())
    loops = [0]
    reason: list[str | None] = [None]
    switch = DeadmanSwitch(
        counter,
        progress=lambda: loops[0],
        healthy=lambda: True,
        undeliverable=lambda: reason[0],
        summary=lambda: "2 sites, 0 down",
    )
    with WebhookSink() as sink:
        config = DeadmanConfig(sink.url("/ping/x"), every=60.0)
        switch.configure(config)
        try:
            assert await switch.tick(config) == "ok"  # the first tick: startup is progress
            assert await switch.tick(config) == "withheld"  # the loop counter did not move
            assert len(sink.received) == 1
            loops[0] += 1
            assert await switch.tick(config) == "ok"
            loops[0] += 1
            reason[0] = "alerts cannot be delivered"
            assert await switch.tick(config) == "fail"
            loops[0] += 1
            sink.status = 503
            assert await switch.tick(config) == "error"
        finally:
            await switch.aclose()
    assert [r.path for r in sink.received] == ["/ping/x", "/ping/x", "/ping/x/fail", "/ping/x/fail"]
    assert sink.received[0].body == b"2 sites, 0 down"
    assert sink.received[2].body == b"alerts cannot be delivered"
    samples = next(iter(counter.collect())).samples
    values = {dict(s.labels)["result"]: s.value for s in samples if s.name == "pings_total"}
    assert values == {"ok": 2.0, "fail": 1.0, "error": 1.0, "withheld": 1.0}


channel_events = st.lists(
    st.tuples(
        st.sampled_from(["email", "phone", "am"]),
        st.sampled_from(["sent", "transient", "permanent"]),
        st.floats(min_value=0, max_value=400),
    ),
    max_size=30,
)


@given(events=channel_events, extra=st.floats(min_value=0, max_value=600))
def test_undeliverable_means_every_channel_failed_since_its_last_success(
    events: list[tuple[str, str, float]], extra: float
) -> None:
    """Against a plain model: per channel, the failures after the last success."""
    names = ("email", "phone")  # "am" is not configured: its events are ignored
    h = health(*names)
    now = 0.0
    streaks: dict[str, list[tuple[str, float]]] = {n: [] for n in names}
    for name, kind, step in events:
        now += step
        if kind == "sent":
            h.sent(name)
            if name in streaks:
                streaks[name] = []
        else:
            h.failed(name, permanent=kind == "permanent", detail=kind, now=now)
            if name in streaks:
                streaks[name].append((kind, now))
    now += extra

    def failing(streak: list[tuple[str, float]]) -> bool:
        if not streak:
            return False
        return any(k == "permanent" for k, _ in streak) or now - streak[0][1] >= FAILING_AFTER

    expected = all(failing(streaks[n]) for n in names)
    assert (h.undeliverable(now) is not None) == expected
