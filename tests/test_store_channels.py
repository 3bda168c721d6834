"""The store's channel columns (schema 3): old emails become the "email" channel's, heads per site
and channel, dead letters that `sentinel outbox retry/drop` move beside a running writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sentinel.store import DB_NAME, MIGRATIONS, Outgoing, Store


def out(site: str, channel: str = "email", kind: str = "down", at: float = 10.0) -> Outgoing:
    return Outgoing(
        kind=kind,
        site=site,
        message=f"{channel}:{site}:{kind}".encode(),
        created_at=at,
        channel=channel,
        incident="i1",
        alert='{"version":1}',
    )


def test_emails_queued_before_channels_existed_become_the_email_channels(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / DB_NAME)
    for step in MIGRATIONS[:2]:
        for statement in step:
            raw.execute(statement)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    raw.execute(
        "INSERT INTO outbox (kind, site, created_at, next_attempt_at, message)"
        " VALUES ('down', 'blog', 1.0, 1.0, x'41')"
    )
    raw.execute(
        "INSERT INTO dead_letters (kind, site, created_at, failed_at, attempts, error, message)"
        " VALUES ('down', 'blog', 1.0, 2.0, 3, '550 no', x'42')"
    )
    raw.commit()
    raw.close()
    with Store.open(tmp_path) as store:
        [item] = store.outbox_heads("email", now=5.0)
        assert (item.channel, item.incident, item.alert, item.escalated) == (
            "email",
            None,
            None,
            False,
        )
        [dead] = store.dead_letters()
        assert dead.channel == "email" and dead.error == "550 no"


def test_heads_are_the_oldest_item_per_site_of_one_channel(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(
            None,
            [out("a"), out("b"), out("a", kind="recovered"), out("a", channel="phone")],
        )
        heads = store.outbox_heads("email", now=100.0)
        assert [(h.site, h.kind) for h in heads] == [("a", "down"), ("b", "down")]
        assert [h.site for h in store.outbox_heads("phone", now=100.0)] == ["a"]
        assert store.outbox_later_kinds(heads[0]) == ["recovered"]
        assert store.outbox_heads("email", now=100.0, exclude=[heads[0].id])[0].site == "b"


def test_escalation_marks_the_item_and_enqueues_the_copy_at_once(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(None, [out("a", at=10.0), out("a", kind="still_down", at=50.0)])
        old = store.outbox_unescalated("email", "a", created_before=30.0)
        assert [o.kind for o in old] == ["down"]
        store.outbox_escalate(old[0].id, [out("a", channel="phone")])
        assert store.outbox_unescalated("email", "a", created_before=30.0) == []
        assert [h.channel for h in store.outbox_heads("phone", now=99.0)] == ["phone"]


def test_dead_letters_retry_and_drop_from_a_second_connection(tmp_path: Path) -> None:
    with Store.open(tmp_path) as daemon:
        daemon.save_state(None, [out("a"), out("b"), out("c")])
        for head in daemon.outbox_heads("email", now=99.0):
            daemon.outbox_give_up(head.id, "550 no", now=20.0)
        assert daemon.dead_letter_count() == 3
        version = daemon.data_version()
        dead = daemon.dead_letters()
        with Store.open(tmp_path) as cli:
            assert cli.dead_letter_retry([dead[0].id, 999], now=30.0) == [dead[0].id]
            assert cli.dead_letter_drop([dead[1].id, 999]) == [dead[1].id]
        # The daemon's connection sees another process wrote, and the retried item is due.
        assert daemon.data_version() != version
        [back] = daemon.outbox_heads("email", now=30.0)
        assert (back.site, back.due, back.escalated, back.attempts) == ("a", True, True, 0)
        assert [d.site for d in daemon.dead_letters()] == ["c"]
        with Store.open(tmp_path) as cli:
            assert cli.dead_letter_retry(None, now=40.0) == [dead[2].id]
        assert daemon.dead_letter_count() == 0
        assert sorted(i.site for i in daemon.outbox_items()) == ["a", "c"]


def test_a_heartbeats_alerts_keep_their_channel_incident_and_alert(tmp_path: Path) -> None:
    # save_heartbeat once wrote only the email columns: a webhook's copy became an "email".
    with Store.open(tmp_path) as store:
        store.save_heartbeat("backup", '{"name":"backup"}', [out("backup", "hook"), out("backup")])
        heads = {h.channel: h for h in store.outbox_items()}
        assert sorted(heads) == ["email", "hook"]
        assert heads["hook"].message == b"hook:backup:down"
        assert (heads["hook"].incident, heads["hook"].alert) == ("i1", '{"version":1}')
        assert store.load_heartbeats() == {"backup": '{"name":"backup"}'}


def test_escalating_marks_the_item_and_enqueues_the_copy_in_one_transaction(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(None, [out("a")])
        [item] = store.outbox_items()
        store.outbox_escalate(item.id, [out("a", "phone")])
        items = store.outbox_items()
        assert [(i.channel, i.escalated) for i in items] == [("email", True), ("phone", False)]
