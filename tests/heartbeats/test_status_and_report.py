"""`sentinel status` read from the store shows the heartbeats (state, age of the last ping) and,
with `[sentinel] shard`, only this shard's sites; `sentinel report` covers this shard's sites."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import daemon_proc
from sentinel.config import Config, parse_config
from sentinel.heartbeats import state as hb
from sentinel.history.report import SiteReport, report_sites, write_report
from sentinel.status_cli import cmd_status, format_heartbeats
from sentinel.store import Store, encode_dataclass

NAMES = [f"site-{i}" for i in range(10)]


def unused_port() -> int:
    return daemon_proc.free_port()


def config(shard: str | None, state_dir: Path) -> Config:
    sentinel: dict[str, object] = {
        "listen": f"127.0.0.1:{unused_port()}",  # nobody answers: the store is read
        "state_dir": str(state_dir),
    }
    if shard is not None:
        sentinel["shard"] = shard
    return parse_config(
        {
            "sentinel": sentinel,
            "sites": [{"name": n, "url": f"http://127.0.0.1:9/{n}"} for n in NAMES],
            "heartbeats": [
                {"name": "backup", "every": "1h", "grace": "10m"},
                {"name": "never", "every": "1h"},
            ],
        }
    )


def stored(tmp_path: Path, now: float) -> Path:
    state_dir = tmp_path / "state"
    store = Store.open(state_dir)
    try:
        beat_config = config(None, state_dir).heartbeats[0]
        beat = hb.new_state("backup", now - 7200)
        beat = hb.ping(beat, beat_config, "fail", now - 90, exit_code=3).state
        store.save_heartbeat("backup", encode_dataclass(beat))
    finally:
        store.close()
    return state_dir


def status_text(cfg: Config, state_dir: Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert cmd_status(cfg, state_dir, out, err) == 0, err.getvalue()
    return out.getvalue()


def test_status_from_the_store_shows_the_heartbeats(tmp_path: Path) -> None:
    now = time.time()
    state_dir = stored(tmp_path, now)
    text = status_text(config(None, state_dir), state_dir)
    assert "from the state store" in text
    (backup,) = [line for line in text.splitlines() if line.startswith("backup ")]
    assert "FAILED" in backup and "(fail)" in backup and "exit 3" in backup
    assert "m ago" in backup or "s ago" in backup
    (never,) = [line for line in text.splitlines() if line.startswith("never ")]
    assert "new" in never and "never" in never.split()[2]


def test_status_from_the_store_with_a_shard_lists_its_sites_only(tmp_path: Path) -> None:
    now = time.time()
    state_dir = stored(tmp_path, now)
    for shard in ("1/3", "2/3"):
        cfg = config(shard, state_dir)
        assert cfg.shard is not None
        text = status_text(cfg, state_dir)
        assert f"shard {shard}" in text.splitlines()[0]
        listed = {w for w in text.split() if w.startswith("site-")}
        assert listed == set(cfg.shard.select(NAMES))
        # Heartbeats are watched by shard 1 only.
        assert ("backup " in text) == (shard == "1/3")


def test_report_covers_this_shards_sites_and_says_which(tmp_path: Path) -> None:
    shards = [config(f"{k}/3", tmp_path) for k in (1, 2, 3)]
    parts = [report_sites(c) for c in shards]
    assert sorted(n for p in parts for n in p) == sorted(NAMES)  # each site in one report
    assert report_sites(config(None, tmp_path)) == NAMES
    rows = [SiteReport(n, 100.0, 86400.0, 0.0, 10, 0, 0, 0.0) for n in parts[1]]
    out = io.StringIO()
    write_report("2026-11", rows, "json", out, shard="2/3")
    body = json.loads(out.getvalue())
    assert body["shard"] == "2/3" and [s["site"] for s in body["sites"]] == parts[1]
    out = io.StringIO()
    write_report("2026-11", rows, "text", out, shard="2/3")
    assert out.getvalue().startswith("uptime report for 2026-11 (UTC), shard 2/3\n")
    out = io.StringIO()
    write_report("2026-11", rows, "json", out)
    assert "shard" not in json.loads(out.getvalue())


def test_the_heartbeat_table_says_when_an_alert_is_held() -> None:
    text = format_heartbeats(
        [
            {
                "heartbeat": "job",
                "status": "late",
                "schedule": "every 1h",
                "last_ping_age_seconds": 30.0,
                "last_ping_kind": "start",
                "alert_held": True,
                "silenced": [{"id": 1}],
                "maintenance": [],
            }
        ]
    )
    header, row = text.splitlines()
    assert header.split()[:3] == ["heartbeat", "state", "last"]
    assert row.split()[:2] == ["job", "LATE"]
    assert "30s ago (start)" in row and "alert held (muted)" in row and "silenced" in row
    assert format_heartbeats([]) == ""


def test_the_daemons_views_carry_the_shard_and_what_mutes_each_heartbeat() -> None:
    import asyncio

    from sentinel.daemon import Daemon
    from sentinel.silences import Silence

    now = time.time()
    window = {
        "name": "rework",
        "sites": ["job"],  # a heartbeat's name
        "start": datetime.fromtimestamp(now - 60, UTC).isoformat(),
        "end": datetime.fromtimestamp(now + 3600, UTC).isoformat(),
    }

    def views(shard: str | None) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
        raw: dict[str, object] = {
            "sentinel": {} if shard is None else {"shard": shard},
            "sites": [{"name": "a", "url": "http://127.0.0.1:9/"}],
            "heartbeats": [{"name": n, "every": "1h"} for n in ("job", "other", "quiet")],
            "maintenance": [window],
        }

        async def build() -> tuple[dict[str, object], dict[str, dict[str, object]]]:
            cfg = parse_config(raw)
            daemon = Daemon("sentinel.toml", cfg)
            daemon.heartbeats.configure(cfg.heartbeats, {})
            daemon.silences = [Silence(1, "quiet", now + 3600, "migrating", now)]
            assert daemon.is_muted("job", now) and daemon.is_muted("quiet", now)
            assert not daemon.is_muted("other", now)
            assert daemon.heartbeats.muted("quiet", now)  # the service asks the daemon
            beats = {str(v["heartbeat"]): v for v in daemon.heartbeat_status()}
            return daemon.extra_status(), beats

        return asyncio.run(build())

    extra, beats = views("2/3")
    assert extra["shard"] == "2/3" and "network" in extra
    assert beats["job"]["maintenance"] == ["rework"] and beats["job"]["silenced"] == []
    assert beats["quiet"]["silenced"] == [
        {"id": 1, "until": beats["quiet"]["silenced"][0]["until"], "reason": "migrating"}  # type: ignore[index]
    ]
    assert beats["other"]["maintenance"] == [] and beats["other"]["silenced"] == []
    assert "shard" not in views(None)[0]


def test_the_page_says_a_heartbeat_is_muted_and_its_alert_held() -> None:
    from sentinel.heartbeats.page import render_heartbeats_section

    base = {"heartbeat": "job", "status": "late", "maintenance": [], "silenced": []}
    held = render_heartbeats_section([{**base, "alert_held": True, "silenced": [{"id": 1}]}])
    assert "LATE (alert held: silenced)" in held
    window = render_heartbeats_section([{**base, "status": "up", "maintenance": ["rework"]}])
    assert "UP (in maintenance)" in window
    assert "LATE</td>" in render_heartbeats_section([base])


def test_silence_all_and_a_window_without_sites_cover_every_heartbeat() -> None:
    import asyncio

    from sentinel.daemon import Daemon
    from sentinel.silences import Silence

    now = time.time()

    async def muted(window_sites: list[str] | None, silence_all: bool) -> set[str]:
        window: dict[str, object] = {
            "name": "w",
            "start": datetime.fromtimestamp(now - 60, UTC).isoformat(),
            "end": datetime.fromtimestamp(now + 3600, UTC).isoformat(),
        }
        if window_sites is not None:
            window["sites"] = window_sites
        cfg = parse_config(
            {
                "sites": [{"name": "a", "url": "http://127.0.0.1:9/"}],
                "heartbeats": [{"name": n, "every": "1h"} for n in ("job", "other")],
                "maintenance": [window] if not silence_all else [],
            }
        )
        daemon = Daemon("sentinel.toml", cfg)
        if silence_all:
            daemon.silences = [Silence(1, None, now + 3600, "", now)]
        return {n for n in ("a", "job", "other") if daemon.is_muted(n, now)}

    assert asyncio.run(muted(None, False)) == {"a", "job", "other"}
    assert asyncio.run(muted(["a"], False)) == {"a"}
    assert asyncio.run(muted(None, True)) == {"a", "job", "other"}
