"""The state store on real SQLite files: round trips, atomicity, crash safety, corruption, bounds."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from sentinel.early.events import TrendStarted
from sentinel.early.warnings import WarningState
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.store import (
    DB_NAME,
    DEAD_LETTER_LIMIT,
    MIGRATIONS,
    PAGE_CACHE_KIB,
    SCHEMA_VERSION,
    LatencyHistory,
    Outgoing,
    Store,
    StoreError,
    StoreNotFoundError,
    decode_dataclass,
    encode_dataclass,
    encode_state,
)


def email_bytes(subject: str, body: str = "body") -> bytes:
    msg = EmailMessage()
    msg["From"] = "sentinel <sentinel@example.org>"
    msg["To"] = "owner@example.org"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


def outgoing(subject: str, site: str = "blog", kind: str = "down", at: float = 1000.0) -> Outgoing:
    return Outgoing(kind=kind, site=site, message=email_bytes(subject), created_at=at)


def down_state(site: str = "blog") -> SiteState:
    return SiteState(
        site=site,
        status=Status.DOWN,
        since=1000.25,
        consecutive_failures=4,
        consecutive_successes=0,
        failing_since=1000.25,
        recovering_since=None,
        incident_id="1000.250",
        incident_started=1000.25,
        last_notified=1060.0,
        reminders_sent=2,
        cert_warned_expiry=None,
        last_observed=1090.0,
        recent=(
            ResultSummary(
                at=1000.25, ok=False, status=0, total=10.0, reason="timeout", message="x"
            ),
            ResultSummary(at=1030.0, ok=False, status=503, total=0.5, reason="status", message="ü"),
        ),
    )


def subjects_in_order(store: Store) -> list[str]:
    """Drain the outbox head by head (the order a sender sees), returning the subjects."""
    subjects = []
    while (item := store.outbox_next(now=1e12)) is not None:
        text = item.message.decode()
        subjects.append(next(line[9:] for line in text.splitlines() if line.startswith("Subject:")))
        store.outbox_done(item.id)
    return subjects


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


# ---------------------------------------------------------------------------- site states


def test_states_round_trip_with_recent_results_and_none_fields(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    down = down_state("blog")
    fresh = SiteState(site="new site ✓")  # every optional field None, recent empty
    up = SiteState(site="shop", status=Status.UP, since=5.0, cert_warned_expiry=1.9e9)
    for state in (down, fresh, up):
        store.save_state(state)
    assert store.load_states() == {"blog": down, "new site ✓": fresh, "shop": up}
    store.close()

    reopened = Store.open(tmp_path)
    assert reopened.load_states() == {"blog": down, "new site ✓": fresh, "shop": up}
    reopened.close()


def test_saving_a_state_again_replaces_it(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(down_state())
        store.save_state(SiteState(site="blog", status=Status.UP, since=2000.0))
        assert store.load_states() == {
            "blog": SiteState(site="blog", status=Status.UP, since=2000.0)
        }


def test_unreadable_saved_states_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Store.open(tmp_path).close()
    raw = sqlite3.connect(tmp_path / DB_NAME)
    rows = [
        ("garbage", "not json at all"),
        ("list", "[1, 2]"),
        ("bad-status", json.dumps({"status": "sideways"})),
        ("bad-type", json.dumps({"status": "down", "consecutive_failures": "three"})),
        ("bad-recent", json.dumps({"recent": [{"at": "noon"}]})),
        # Written by a newer version: an extra field is ignored, missing ones take defaults.
        ("future", json.dumps({"status": "down", "since": 7, "shiny_new_field": [1]})),
    ]
    with raw:
        raw.executemany("INSERT INTO site_state VALUES (?, ?, 0)", rows)
    raw.close()

    with caplog.at_level(logging.WARNING, logger="sentinel.store"), Store.open(tmp_path) as store:
        states = store.load_states()

    assert states == {"future": SiteState(site="future", status=Status.DOWN, since=7.0)}
    warned = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    for site in ("garbage", "list", "bad-status", "bad-type", "bad-recent"):
        assert any(repr(site) in line for line in warned), site


def test_delete_site_removes_its_state_but_keeps_its_pending_emails(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(down_state("blog"), [outgoing("DOWN: blog")])
        store.save_state(SiteState(site="shop"))
        store.delete_site("blog")
        assert set(store.load_states()) == {"shop"}
        assert store.outbox_pending() == 1


# ---------------------------------------------------------------------------- atomicity, durability


def test_state_and_its_emails_are_both_there_after_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.save_state(down_state(), [outgoing("DOWN: blog"), outgoing("CERTIFICATE: blog")])
    store.close()

    with Store.open(tmp_path) as store:
        assert store.load_states()["blog"] == down_state()
        assert store.outbox_pending() == 2
        item = store.outbox_next(now=0.0)
        assert item is not None
        assert (item.kind, item.site, item.attempts, item.created_at) == ("down", "blog", 0, 1000.0)
        assert item.message == email_bytes("DOWN: blog")


def test_full_disk_raises_store_error_and_writes_neither_state_nor_email(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.save_state(SiteState(site="blog", status=Status.UP))
    # Cap the database at its current size: the next write that needs a page is "disk full".
    (pages,) = store.db.conn.execute("PRAGMA page_count").fetchone()
    store.db.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = Outgoing(kind="down", site="blog", message=b"x" * 200_000, created_at=1.0)

    with pytest.raises(StoreError, match="full"):
        store.save_state(down_state(), [big])

    assert store.load_states() == {"blog": SiteState(site="blog", status=Status.UP)}
    assert store.outbox_pending() == 0
    # Space again: the store keeps working on the same connection.
    store.db.conn.execute("PRAGMA max_page_count = 1073741823")
    store.save_state(down_state(), [big])
    assert store.outbox_pending() == 1
    store.close()


def test_committed_writes_survive_a_kill_9_of_the_writer(tmp_path: Path) -> None:
    proc = run_python(
        """
        import os, signal, sys
        from sentinel.monitor import SiteState, Status
        from sentinel.store import Outgoing, Store
        store = Store.open(sys.argv[1])
        state = SiteState(site="blog", status=Status.DOWN, since=100.0, incident_id="100.000")
        store.save_state(state, [Outgoing("down", "blog", b"Subject: DOWN\\r\\n\\r\\nx\\r\\n", 1.0)])
        store.set_meta("rollup.last", "42")
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(tmp_path),
    )
    assert proc.returncode == -9, proc.stderr
    wal = tmp_path / (DB_NAME + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # nothing was checkpointed

    with Store.open(tmp_path) as store:
        state = store.load_states()["blog"]
        assert (state.status, state.since, state.incident_id) == (Status.DOWN, 100.0, "100.000")
        assert store.outbox_pending() == 1
        assert store.get_meta("rollup.last") == "42"


def test_readonly_store_in_another_process_sees_states_while_the_writer_is_open(
    tmp_path: Path,
) -> None:
    writer = Store.open(tmp_path)
    writer.save_state(down_state("blog"), [outgoing("DOWN: blog")])
    writer.save_state(SiteState(site="shop", status=Status.UP, since=3.0))
    reader_code = """
        import sys
        from sentinel.store import Store
        store = Store.open_readonly(sys.argv[1])
        states = store.load_states()
        print(sorted((name, s.status.value) for name, s in states.items()), store.outbox_pending())
        store.close()
    """

    proc = run_python(reader_code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('blog', 'down'), ('shop', 'up')] 1"

    # The writer keeps working with a reader around, and a new reader sees the change.
    writer.save_state(SiteState(site="blog", status=Status.UP, since=9.0))
    proc = run_python(reader_code, str(tmp_path))
    assert proc.stdout.strip() == "[('blog', 'up'), ('shop', 'up')] 1"
    writer.close()


def test_readonly_store_refuses_writes_and_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no state store"):
        Store.open_readonly(tmp_path / "never-ran")
    Store.open(tmp_path).close()
    reader = Store.open_readonly(tmp_path)
    with pytest.raises(StoreError, match="readonly"):
        reader.save_state(SiteState(site="blog"))
    assert reader.load_states() == {}
    reader.close()


# ---------------------------------------------------------------------------- opening


def test_state_dir_is_created_and_schema_version_recorded(tmp_path: Path) -> None:
    state_dir = tmp_path / "var" / "lib" / "sentinel"
    with Store.open(str(state_dir)) as store:
        assert (state_dir / DB_NAME).is_file()
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        mode = store.db.conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        # a bounded page cache: a long-running daemon's RSS does not step up by SQLite's 2 MiB
        assert store.db.conn.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_KIB


@pytest.mark.parametrize("under_a_file", [True, False], ids=["inside-a-file", "is-a-file"])
def test_state_dir_that_cannot_be_a_directory_raises_store_error(
    tmp_path: Path, under_a_file: bool
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    state_dir = afile / "state" if under_a_file else afile
    with pytest.raises(StoreError, match="state directory") as info:
        Store.open(state_dir)
    assert "\n" not in str(info.value)
    assert str(afile) in str(info.value)


def garbage_file(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database\x00\xff" * 500)


def damaged_pages(path: Path) -> None:
    with Store.open(path.parent) as store:
        for i in range(200):
            store.save_state(SiteState(site=f"site-{i:03d}", incident_id="x" * 200))
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # keep the header page, smash the b-tree pages
        data[offset : offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [garbage_file, damaged_pages], ids=["garbage", "bad-pages"])
def test_corrupted_database_is_moved_aside_and_a_fresh_one_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    db = tmp_path / DB_NAME
    assert callable(damage)
    damage(db)
    broken = db.read_bytes()

    with caplog.at_level(logging.ERROR, logger="sentinel.store"), Store.open(tmp_path) as store:
        store.save_state(down_state(), [outgoing("DOWN: blog")])
        assert store.load_states() == {"blog": down_state()}
        assert store.outbox_pending() == 1

    [aside] = tmp_path.glob(DB_NAME + ".corrupt-*")
    assert aside.name.endswith("Z") and aside.read_bytes() == broken
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "sentinel.store"
    ]
    assert len(errors) == 1
    assert "corrupted" in errors[0].getMessage() and aside.name in errors[0].getMessage()


def test_a_newer_schema_is_refused_without_touching_the_file(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    raw = sqlite3.connect(tmp_path / DB_NAME)
    with raw:
        raw.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path)
    assert not list(tmp_path.glob("*.corrupt-*"))


# ---------------------------------------------------------------------------- outbox


def test_outbox_next_is_the_oldest_email_even_while_it_waits_for_a_retry(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.save_state(down_state(), [outgoing("first"), outgoing("second")])
        first = store.outbox_next(now=1000.0)
        assert first is not None and first.due
        store.outbox_retry_later(first.id, next_attempt_at=1100.0, error="421 try later")

        waiting = store.outbox_next(now=1050.0)
        assert waiting is not None
        assert (waiting.id, waiting.due, waiting.next_attempt_at) == (first.id, False, 1100.0)
        assert (waiting.attempts, waiting.permanent_failures) == (1, 0)
        assert waiting.last_error == "421 try later"

        store.outbox_retry_later(first.id, next_attempt_at=1200.0, error="550", permanent=True)
        again = store.outbox_next(now=1200.0)
        assert again is not None and again.due
        assert (again.attempts, again.permanent_failures) == (2, 1)
        assert subjects_in_order(store) == ["first", "second"]


def test_outbox_cap_drops_the_oldest_emails_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sentinel.store"):
        store = Store.open(tmp_path, outbox_limit=3)
        store.save_state(down_state(), [outgoing("m1"), outgoing("m2")])
        store.save_state(down_state(), [outgoing("m3"), outgoing("m4")])
        store.save_state(down_state(), [outgoing("m5")])
    assert store.outbox_pending() == 3
    assert store.outbox_dropped_total() == 2
    assert any("dropped" in r.getMessage() for r in caplog.records)
    store.close()

    with Store.open(tmp_path, outbox_limit=3) as store:
        assert store.outbox_dropped_total() == 2
        assert subjects_in_order(store) == ["m3", "m4", "m5"]


def test_dead_letters_keep_only_the_latest_hundred(tmp_path: Path) -> None:
    total = DEAD_LETTER_LIMIT + 5
    with Store.open(tmp_path, outbox_limit=total) as store:
        store.save_state(down_state(), [outgoing(f"m{i}", kind=f"k{i}") for i in range(total)])
        for i in range(total):
            item = store.outbox_next(now=0.0)
            assert item is not None and item.kind == f"k{i}"
            store.outbox_give_up(item.id, f"550 rejected {i}", now=50.0)
        letters = store.dead_letters()
        assert store.outbox_pending() == 0

    assert len(letters) == DEAD_LETTER_LIMIT
    assert [d.kind for d in letters] == [f"k{i}" for i in range(5, total)]
    assert letters[-1].error == f"550 rejected {total - 1}"
    assert letters[-1].failed_at == 50.0 and letters[-1].attempts == 1
    assert letters[-1].message == email_bytes(f"m{total - 1}")


def test_meta_values_round_trip_and_the_stores_own_keys_are_protected(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.get_meta("rollup.cursor") is None
        store.set_meta("rollup.cursor", "17")
        store.set_meta("rollup.cursor", "18")
        with pytest.raises(ValueError):
            store.set_meta("schema_version", "0")
    with Store.open(tmp_path) as store:
        assert store.get_meta("rollup.cursor") == "18"


# ---------------------------------------------------------------------------- latency history


def test_a_store_from_schema_version_1_is_migrated_and_keeps_its_states(tmp_path: Path) -> None:
    """An upgrade from the sentinel before latency history was saved: same file, states kept."""
    raw = sqlite3.connect(tmp_path / DB_NAME)
    for statement in MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    state = SiteState(site="blog", status=Status.DOWN, since=5.0)
    raw.execute("INSERT INTO site_state VALUES ('blog', ?, 5.0)", (encode_state(state),))
    raw.commit()
    raw.close()
    with Store.open(str(tmp_path)) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store.load_states()["blog"] == state
        assert store.load_latency_history() == {}
        assert store.load_trend_history() == {}


def test_trend_history_is_replaced_as_a_whole(tmp_path: Path) -> None:
    with Store.open(str(tmp_path)) as store:
        store.replace_trend_history({"watch:web": '{"a":1}', "disk:/": '{"b":2}'}, 10.0)
        store.replace_trend_history({"watch:web": '{"a":3}'}, 20.0)  # the disk is unwatched
    with Store.open(str(tmp_path)) as store:
        assert store.load_trend_history() == {"watch:web": '{"a":3}'}


def test_latency_history_round_trips_is_upserted_and_leaves_with_its_site(tmp_path: Path) -> None:
    with Store.open(str(tmp_path)) as store:
        store.save_latency_history(
            [
                LatencyHistory("blog", b"\x00\x01history", None, 10.0),
                LatencyHistory("shop", b"shop", '{"kind":"slower"}', 10.0),
            ]
        )
        store.save_latency_history([LatencyHistory("blog", b"newer", None, 20.0)])
    with Store.open(str(tmp_path)) as store:
        saved = store.load_latency_history()
        assert saved["blog"] == LatencyHistory("blog", b"newer", None, 20.0)
        assert saved["shop"].warning == '{"kind":"slower"}'
        store.delete_site("shop")
        assert set(store.load_latency_history()) == {"blog"}
        store.save_latency_history([LatencyHistory("gone", b"x", None, 1.0)])
        assert store.forget_latency_history(keep={"blog"}) == 1
        assert set(store.load_latency_history()) == {"blog"}


def test_a_warning_state_round_trips_through_json() -> None:
    started = TrendStarted(
        kind="slower", subject="shop", trend_id="abc", at=3.0, since=1.0, level=0.9, usual=0.3
    )
    state = WarningState("slower", "shop", source="site shop", quiet=1, active=started)
    assert decode_dataclass(WarningState, encode_dataclass(state)) == state
    with pytest.raises(ValueError, match=r"WarningState\.kind: unknown value"):
        decode_dataclass(WarningState, encode_dataclass(state).replace('"slower"', '"faster"'))
    with pytest.raises(ValueError):
        decode_dataclass(WarningState, "[1, 2]")
