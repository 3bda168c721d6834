"""`sentinel status`: the live state of every site, from the running daemon if it answers.

It asks the daemon's /api/status at the config's `listen` address (with the age of each last
check and the 24 h uptime). If no daemon answers it reads the state store the daemon uses,
read-only, and says so (the figures are as of the daemon's last write). If neither is found it
says where it looked and exits 1, rather than showing every site as "never probed".

Heartbeats get a second table (state, age of the last ping, schedule) from either source. With
`[sentinel] shard = "k/n"` the store path shows this shard's sites (and the heartbeats only on
shard 1, which watches them), as the daemon does; the live path says which shard answered.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sentinel.config import Config, split_host_port
from sentinel.fatal import report

EXIT_OK = 0
EXIT_FAILED = 1
ASK_TIMEOUT = 3.0  # seconds for the daemon to answer


def status_url(listen: str) -> str | None:
    """The /api/status URL of a daemon listening on `listen` (a wildcard -> loopback)."""
    if not listen:
        return None
    host, port = split_host_port(listen, what="listen")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/api/status"


def ask_daemon_status(url: str, timeout: float = ASK_TIMEOUT) -> dict[str, Any] | None:
    """The daemon's whole /api/status body (its "sites" checked to be a list of objects, its
    "heartbeats" made one), or None if nothing (or not a sentinel) answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    sites = data.get("sites")
    if not isinstance(sites, list) or not all(isinstance(s, dict) for s in sites):
        return None
    beats = data.get("heartbeats")
    if not isinstance(beats, list) or not all(isinstance(b, dict) for b in beats):
        data["heartbeats"] = []
    return data


def _pct(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value >= 1:
        return "100%"
    return f"{int(value * 10000) / 100:.2f}%"


def _age(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "never"
    s = int(seconds)
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    return f"{s // 3600}h ago"


def _last_text(last: Mapping[str, Any] | None) -> str:
    if not last:
        return "never probed"
    if last.get("ok"):
        return f"ok {float(last.get('total') or 0) * 1000:.0f} ms"
    return f"{last.get('reason')}: {last.get('message')}"


def _since(text: object) -> str:
    if not isinstance(text, str):
        return "-"
    return text.replace("T", " ").replace("Z", " UTC")


def format_table(sites: Sequence[Mapping[str, Any]]) -> str:
    rows = [("site", "state", "since", "last check", "24h up", "last result")]
    for s in sorted(sites, key=lambda s: str(s.get("site"))):
        status = str(s.get("status", "unknown"))
        uptime = s.get("uptime") or {}
        rows.append(
            (
                str(s.get("site")),
                status.upper() if status == "down" else status,
                _since(s.get("since")),
                _age(s.get("last_check_age_seconds")),
                _pct(uptime.get("24h") if isinstance(uptime, dict) else None),
                _last_text(s.get("last")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:5])) + "  " + r[5] for r in rows
    )


def format_heartbeats(beats: Sequence[Mapping[str, Any]]) -> str:
    """The heartbeats' table: state (LATE/FAILED in capitals, "held" while muted), the age of
    the last ping and its kind, the schedule; empty text when there are none."""
    if not beats:
        return ""
    rows = [("heartbeat", "state", "last ping", "schedule", "note")]
    for b in sorted(beats, key=lambda b: str(b.get("heartbeat"))):
        status = str(b.get("status", "unknown"))
        state = status.upper() if status in ("late", "failed") else status
        kind = b.get("last_ping_kind")
        age = _age(b.get("last_ping_age_seconds"))
        notes = []
        if b.get("alert_held"):
            notes.append("alert held (muted)")
        if b.get("maintenance"):
            notes.append("in maintenance")
        if b.get("silenced"):
            notes.append("silenced")
        if status == "failed" and b.get("last_exit") is not None:
            notes.append(f"exit {b.get('last_exit')}")
        rows.append(
            (
                str(b.get("heartbeat")),
                state,
                age if not isinstance(kind, str) or age == "never" else f"{age} ({kind})",
                str(b.get("schedule") or "-"),
                ", ".join(notes),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        ("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4]).rstrip()
        for r in rows
    )


def heartbeats_from_store(config: Config, store: Any, now: float) -> list[dict[str, Any]]:
    """The heartbeats as /api/status would show them, from the store's saved states (a
    heartbeat without one shows as new, never pinged). Only shard 1 watches heartbeats."""
    from sentinel.heartbeats import state as hb
    from sentinel.heartbeats.service import load_states, status_dict

    if config.shard is not None and not config.shard.owns_heartbeats:
        return []
    if not config.heartbeats:
        return []
    saved = load_states(store)
    views = []
    for beat in config.heartbeats:
        state = saved.get(beat.name) or hb.new_state(beat.name, now)
        views.append(status_dict(beat, state, now))
    return views


def from_store(config: Config, state_dir: Path, now: float) -> tuple[list[dict[str, Any]], int]:
    """The sites as /api/status would show them, from the store (read-only); and the outbox."""
    from sentinel.history.query import HistoryReader
    from sentinel.status_views import status_dict
    from sentinel.store import Store

    shard = config.shard  # with `[sentinel] shard`, only this shard's sites (as the daemon)
    owned = [s for s in config.sites if shard is None or shard.owns(s.name)]
    with Store.open_readonly(state_dir) as store:
        states = store.load_states()
        pending = store.outbox_pending()
        names = [s.name for s in owned]
        # (an older store without history tables gives no uptimes: states only)
        uptimes = HistoryReader(store, None, clock=lambda: now).uptimes(names)
    sites = []
    from sentinel.monitor import SiteState

    for site in owned:
        state = states.get(site.name) or SiteState(site=site.name)
        entry = status_dict(site, state)
        last = state.last
        entry["last_check_age_seconds"] = None if last is None else max(0.0, now - last.at)
        entry["uptime"] = uptimes.get(site.name)
        sites.append(entry)
    return sites, pending


def cmd_status(
    config: Config, state_dir: Path | None, out: TextIO, err: TextIO, *, missing: str | None = None
) -> int:
    """Ask the running daemon; else read the store in `state_dir` and say so; else say where
    it looked (`missing`: why no state directory was found) and return 1."""
    from sentinel.store import Store, StoreError, StoreNotFoundError

    url = status_url(config.listen)
    body = ask_daemon_status(url) if url is not None else None
    now = time.time()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if body is not None:
        shard = f", shard {body['shard']}" if isinstance(body.get("shard"), str) else ""
        print(f"live from the running daemon at {url} ({stamp}{shard})", file=out)
        print(format_table(body["sites"]), file=out)
        _print_heartbeats(body["heartbeats"], out)
        if state_dir is None:
            print("outbox: unknown (no state store found here)", file=out)
            return EXIT_OK
        try:
            with Store.open_readonly(state_dir) as store:
                _outbox_lines(store.outbox_pending(), store.dead_letter_count(), out)
        except StoreError:
            print(f"outbox: unknown (cannot read the state store in {state_dir})", file=out)
        return EXIT_OK
    asked = f"no daemon answers at {url}" if url else "no listen address configured"
    if state_dir is None:
        report(f"{asked}, and {missing or 'no state store was found'}", stream=err)
        return EXIT_FAILED
    try:
        sites, pending = from_store(config, state_dir, now)
        with Store.open_readonly(state_dir) as store:
            dead = store.dead_letter_count()
            beats = heartbeats_from_store(config, store, now)
    except StoreNotFoundError:
        report(
            f"{asked}, and there is no state store at {state_dir / 'sentinel.db'};"
            " is sentinel running, and with this config? (on a systemd install the store is in"
            " /var/lib/sentinel: run as the service's user, or pass its state_dir in the config)",
            stream=err,
        )
        return EXIT_FAILED
    except StoreError as exc:
        report(f"{asked}, and {exc}", stream=err)
        return EXIT_FAILED
    shard = "" if config.shard is None else f", shard {config.shard}"
    print(
        f"{asked}: from the state store {state_dir} as of the daemon's last write ({stamp}{shard})",
        file=out,
    )
    print(format_table(sites), file=out)
    _print_heartbeats(beats, out)
    _outbox_lines(pending, dead, out)
    return EXIT_OK


def _print_heartbeats(beats: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    table = format_heartbeats(beats)
    if table:
        print("", file=out)
        print(table, file=out)


def _outbox_lines(pending: int, dead: int, out: TextIO) -> None:
    print(f"outbox: {pending} alert(s) pending", file=out)
    if dead:
        print(f"dead letters: {dead} alert(s) not delivered (sentinel outbox list)", file=out)
