"""Outage grouping: the pure decision (hypothesis), the grouped emails, and the outbox's release
of held items in one transaction (a real SQLite store)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.config import EmailConfig
from sentinel.notify.group_message import group_email, group_message_id, rethread
from sentinel.notify.grouping import Held, decide, host_key
from sentinel.notify.outbox import parse_message
from sentinel.notify.payload import Alert
from sentinel.store import Outgoing, Store

TICK = 0.5

held_items = st.lists(
    st.tuples(
        st.sampled_from(["down", "recovered"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.floats(min_value=0, max_value=120, allow_nan=False),
    ),
    max_size=30,
)


def run(
    items: list[tuple[str, str, float]], wait: float, min_size: int
) -> list[tuple[float, tuple[int, ...]]]:
    """Simulate the sender: items appear at their time, decide() runs every TICK."""
    pending = sorted(
        (Held(i, kind, key, round(t, 3)) for i, (kind, key, t) in enumerate(items)),
        key=lambda h: h.created_at,
    )
    waiting: list[Held] = []
    sent: list[tuple[float, tuple[int, ...]]] = []
    now = 0.0
    while pending or waiting:
        while pending and pending[0].created_at <= now:
            waiting.append(pending.pop(0))
        for release in decide(waiting, now, wait=wait, min_size=min_size):
            sent.append((now, release.ids))
            waiting = [h for h in waiting if h.id not in release.ids]
        now += TICK
        assert now < 1000
    return sent


@settings(max_examples=200, deadline=None)
@given(held_items, st.sampled_from([0.0, 1.0, 5.0, 30.0]), st.integers(2, 5))
def test_every_alert_goes_out_once_in_time_and_groups_are_big_or_one_host(
    items: list[tuple[str, str, float]], wait: float, min_size: int
) -> None:
    sent = run(items, wait, min_size)
    ids = [i for _, group in sent for i in group]
    assert sorted(ids) == list(range(len(items)))  # each exactly once
    for at, group in sent:
        for i in group:
            assert at - round(items[i][2], 3) <= wait + TICK + 1e-9  # never waits longer
        kinds = {items[i][0] for i in group}
        assert len(kinds) == 1  # DOWNs and RECOVEREDs are never mixed
        if len(group) > 1:
            hosts = {items[i][1] for i in group}
            assert len(group) >= min_size or len(hosts) == 1
            times = [round(items[i][2], 3) for i in group]
            assert max(times) - min(times) <= wait + 1e-9  # "within group_wait of each other"


def test_a_burst_is_one_group_and_one_host_is_grouped_below_group_min() -> None:
    burst = [Held(i, "down", f"h{i}", 10.0 + i) for i in range(6)]
    (release,) = decide(burst, 40.0, wait=30.0, min_size=3)
    assert release.ids == tuple(range(6))
    assert decide(burst, 39.9, wait=30.0, min_size=3) == []
    pair = [Held(1, "down", "db", 0.0), Held(2, "down", "db", 3.0), Held(3, "down", "web", 4.0)]
    releases = decide(pair, 30.0, wait=30.0, min_size=3)
    assert [r.ids for r in releases] == [(1, 2, 3)]
    releases = decide(pair, 30.0, wait=30.0, min_size=4)
    assert [r.ids for r in releases] == [(1, 2), (3,)]


def test_host_key() -> None:
    assert host_key("https://Blog.Example.org:8443/x") == "blog.example.org"
    assert host_key("db.example.org:5432") == "db.example.org"
    assert host_key("[::1]:80") == "::1"
    assert host_key(None) == ""


CFG = EmailConfig(sender="sentinel <s@example.org>", recipients=("o@example.org",))


def alert(site: str, kind: str = "down", incident: str = "i1") -> Alert:
    return Alert(
        kind=kind,
        site=site,
        url=f"https://{site}.example.org/",
        summary=f"DOWN: {site}",
        reason="refused",
        message="connection refused",
        since=1_700_000_000.0,
        at=1_700_000_030.0,
        incident_id=incident,
    )


def test_the_grouped_email_lists_every_site_and_later_emails_reply_to_it() -> None:
    alerts = [alert(name) for name in ("blog", "shop", "wiki", "mail", "api", "cdn")]
    raw = group_email("down", alerts, email_config=CFG)
    msg = parse_message(raw)
    assert str(msg["Subject"]).startswith("[sentinel] DOWN: 6 sites — blog, shop, wiki")
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for a in alerts:
        assert a.site in text
    assert "refused (connection refused)" in text
    assert all(len(line) <= 78 for line in text.splitlines())
    root = group_message_id("down", alerts, domain="example.org")
    assert msg["Message-ID"] == root
    assert msg["In-Reply-To"] is None
    later = rethread(
        b"Subject: x\r\nIn-Reply-To: <down.1@x>\r\nReferences: <down.1@x>\r\n\r\nhi\r\n", root
    )
    again = parse_message(later)
    assert again["In-Reply-To"] == root
    assert str(again["References"]).split() == [root, "<down.1@x>"]


def test_a_group_replaces_its_held_items_in_one_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    held = [
        Outgoing(
            kind="down",
            site=s,
            message=b"m",
            created_at=100.0,
            incident="i",
            alert="{}",
            hold_until=130.0,
            hold="h",
        )
        for s in ("a", "b", "c")
    ]
    store.save_state(None, [*held, Outgoing(kind="down", site="x", message=b"n", created_at=100.0)])
    items = store.outbox_held("email")
    assert [i.site for i in items] == ["a", "b", "c"]
    assert all(i.next_attempt_at == 130.0 for i in items)
    ids = [i.id for i in items]
    store.outbox_release(
        ids, merged=(b"group", '{"g":1}', "group:1"), roots={"a\ni": "<g>"}, now=131.0
    )
    assert store.outbox_held("email") == []
    rest = store.outbox_items()
    assert [(i.site, i.message, i.incident) for i in rest] == [
        ("a", b"group", "group:1"),
        ("x", b"n", None),
    ]
    assert store.outbox_thread_roots("email", ["a\ni", "b\ni"]) == {"a\ni": "<g>"}
    store.close()
    # Reopened (as after kill -9 before the release): held items are still there.
    store = Store.open(tmp_path)
    store.save_state(
        None,
        [
            Outgoing(
                kind="recovered", site="q", message=b"r", created_at=1.0, hold_until=2.0, hold=""
            )
        ],
    )
    (item,) = store.outbox_held("email")
    store.outbox_release([item.id], now=1.5)  # a shorter group_wait after a restart
    assert store.outbox_held("email") == []
    assert [i.next_attempt_at for i in store.outbox_items() if i.site == "q"] == [1.5]
    store.close()
