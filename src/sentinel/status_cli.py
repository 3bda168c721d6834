"""`sentinel status`: the live state of every site, from the running daemon if it answers.

It asks the daemon's /api/status at the config's `listen` address (with the age of each last
check and the 24 h uptime). If no daemon answers it reads the state store the daemon uses,
read-only, and says so (the figures are as of the daemon's last write). If neither is found it
says where it looked and exits 1, rather than showing every site as "never probed".
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


def ask_daemon(url: str, timeout: float = ASK_TIMEOUT) -> list[dict[str, Any]] | None:
    """The daemon's site list, or None if nothing (or not a sentinel) answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    sites = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(sites, list) or not all(isinstance(s, dict) for s in sites):
        return None
    return sites


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
    live = ask_daemon(url) if url is not None else None
    now = time.time()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if live is not None:
        print(f"live from the running daemon at {url} ({stamp})", file=out)
        print(format_table(live), file=out)
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
    print(
        f"{asked}: from the state store {state_dir} as of the daemon's last write ({stamp})",
        file=out,
    )
    print(format_table(sites), file=out)
    _outbox_lines(pending, dead, out)
    return EXIT_OK


def _outbox_lines(pending: int, dead: int, out: TextIO) -> None:
    print(f"outbox: {pending} alert(s) pending", file=out)
    if dead:
        print(f"dead letters: {dead} alert(s) not delivered (sentinel outbox list)", file=out)
