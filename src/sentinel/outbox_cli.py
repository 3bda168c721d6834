"""`sentinel outbox list | retry ID... | retry --all | drop ID...`: the dead letters, by hand.

Works against the state store of a stopped or a running daemon: `list` only reads; `retry` and
`drop` are one SQLite transaction each (the store's busy timeout waits out the daemon's own short
writes). A retried dead letter goes back into the outbox, due at once; a running daemon notices
the write within seconds (SQLite's data_version) and sends it, a stopped one at its next start.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from sentinel.config import Config
from sentinel.fatal import report

if TYPE_CHECKING:
    from sentinel.store import Store

__all__ = ["add_outbox_parser", "cmd_outbox"]

EXIT_OK = 0
EXIT_FAILED = 1
_MAX_ERROR = 120


def add_outbox_parser(
    command: Callable[[str, str, str], argparse.ArgumentParser],
    nested_common: argparse.ArgumentParser,
) -> None:
    """`sentinel outbox list|retry|drop`, through the CLI's `command` factory; each action also
    takes -c/--log-level (`nested_common`, whose defaults never overwrite what was given before
    the action)."""
    outbox = command(
        "outbox",
        "list, resend or drop undelivered alerts",
        "List the alerts waiting in the outbox and the dead letters; resend or drop dead letters.",
    )
    actions = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="pending alerts and dead letters", parents=[nested_common])
    retry = actions.add_parser("retry", help="send dead letters again", parents=[nested_common])
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead letter ids")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    drop = actions.add_parser("drop", help="delete dead letters", parents=[nested_common])
    drop.add_argument("ids", nargs="+", type=int, metavar="ID", help="dead letter ids")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= _MAX_ERROR else line[: _MAX_ERROR - 1] + "…"


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])]
        print("  ".join([*cells, r[-1]]).rstrip(), file=out)


def cmd_outbox(args: argparse.Namespace, config: Config, out: TextIO) -> int:
    from sentinel.daemon import resolve_state_dir
    from sentinel.store import DB_NAME, Store, StoreError

    state_dir = resolve_state_dir(config)
    if not (state_dir / DB_NAME).is_file():
        report(f"no state store at {state_dir / DB_NAME}")
        return EXIT_FAILED if args.outbox_command != "list" else EXIT_OK
    try:
        if args.outbox_command == "list":
            with Store.open_readonly(state_dir) as store:
                return _list(store, out)
        ids: list[int] = list(args.ids)
        if args.outbox_command == "retry" and not ids and not args.all:
            report("outbox retry: give dead letter ids, or --all")
            return 2
        with Store.open(state_dir, outbox_limit=_limit(config)) as store:
            if args.outbox_command == "retry":
                done = store.dead_letter_retry(None if args.all else ids, now=time.time())
                verb = "back in the outbox"
            else:
                done = store.dead_letter_drop(ids)
                verb = "dropped"
    except StoreError as exc:
        report(str(exc))
        return EXIT_FAILED
    missing = sorted(set(ids) - set(done))
    for dead_id in missing:
        report(f"outbox: no dead letter {dead_id}")
    print(
        f"{len(done)} dead letter(s) {verb}" + (f": {', '.join(map(str, done))}" if done else ""),
        file=out,
    )
    return EXIT_FAILED if missing else EXIT_OK


def _limit(config: Config) -> int:
    return config.email.outbox_limit if config.email is not None else 1000


def _list(store: Store, out: TextIO) -> int:
    now = time.time()
    pending = store.outbox_items()
    dead = store.dead_letters()
    print(f"pending: {len(pending)}", file=out)
    if pending:
        rows: list[tuple[str, ...]] = [
            ("id", "channel", "kind", "site", "queued", "tries", "error")
        ]
        for item in pending:
            rows.append(
                (
                    str(item.id),
                    item.channel,
                    item.kind,
                    item.site,
                    f"{max(0, int(now - item.created_at))}s ago",
                    str(item.attempts),
                    _short(item.last_error),
                )
            )
        _table(rows, out)
    print(f"dead letters: {len(dead)}", file=out)
    if dead:
        rows = [("id", "channel", "kind", "site", "failed", "tries", "error")]
        for letter in dead:
            rows.append(
                (
                    str(letter.id),
                    letter.channel,
                    letter.kind,
                    letter.site,
                    _when(letter.failed_at),
                    str(letter.attempts),
                    _short(letter.error),
                )
            )
        _table(rows, out)
        print(
            "resend: sentinel outbox retry ID (or --all); delete: sentinel outbox drop ID", file=out
        )
    return EXIT_OK
