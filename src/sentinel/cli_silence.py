"""`sentinel silence` and `sentinel unsilence`: run-time silences, written into the state store
the daemon uses (it notices within a second). Who may silence is decided by the file system:
whoever can write the state store, i.e. root or the service's user on this host. Nothing is
exposed over HTTP, so no remote caller can silence alerts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sentinel.config import Config, parse_duration
from sentinel.silences import check_request
from sentinel.store import DB_NAME, Store, StoreError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add the two subcommands; returns their names (the caller adds -c/--config to each)."""
    silence = sub.add_parser(
        "silence",
        help="hold a site's DOWN alerts for a while (or list the silences)",
        description="Hold DOWN and STILL DOWN alerts of a site (or every site) for a while. "
        "Probes go on; a site still down when the silence ends is alerted then.",
    )
    silence.add_argument("site", nargs="?", help="the site to silence")
    silence.add_argument("--all", action="store_true", help="silence every site")
    silence.add_argument("--for", dest="duration", help='how long, e.g. "2h" (at most 90d)')
    silence.add_argument("--reason", default="", help="shown in the list, the API and the logs")
    silence.add_argument("--list", action="store_true", help="list the silences in force")
    unsilence = sub.add_parser("unsilence", help="end a silence early (ids: silence --list)")
    unsilence.add_argument("id", type=int, help="the silence's id")
    return ["silence", "unsilence"]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _open_store(state_dir: Path, err: TextIO) -> Store | None:
    """The daemon's store, opened as the user that owns it: root writing it would leave files
    the service (e.g. systemd's DynamicUser) can no longer write."""
    path = state_dir / DB_NAME
    if not path.exists():
        print(
            f"sentinel: no state store at {path}: start the daemon first, or point state_dir "
            "(or $STATE_DIRECTORY) where the service keeps it",
            file=err,
        )
        return None
    owner = path.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.setgid(owner.st_gid)
        os.setuid(owner.st_uid)
    try:
        return Store.open(state_dir)
    except StoreError as exc:
        print(f"sentinel: {exc}", file=err)
        return None


def cmd_silence(
    args: argparse.Namespace, config: Config, state_dir: Path, out: TextIO, err: TextIO
) -> int:
    if args.list:
        if args.site or args.all or args.duration:
            print("sentinel: silence --list takes no site, --all or --for", file=err)
            return EXIT_USAGE
        return _list(state_dir, out, err)
    if (args.site is None) == (not args.all):
        print("sentinel: silence needs a site name or --all (or --list)", file=err)
        return EXIT_USAGE
    if args.duration is None:
        print("sentinel: silence needs --for, e.g. --for 2h", file=err)
        return EXIT_USAGE
    if args.site is not None and all(s.name != args.site for s in config.sites):
        print(f"sentinel: no site named {args.site!r} in {config.source or 'the config'}", file=err)
        return EXIT_USAGE
    try:
        duration = parse_duration(args.duration)
        site, reason = check_request(args.site, duration, args.reason)
    except ValueError as exc:
        print(f"sentinel: {exc}", file=err)
        return EXIT_USAGE
    store = _open_store(state_dir, err)
    if store is None:
        return EXIT_FAILED
    now = time.time()
    try:
        silence = store.add_silence(site, now + duration, reason, now=now)
    except StoreError as exc:
        print(f"sentinel: {exc}", file=err)
        return EXIT_FAILED
    finally:
        store.close()
    what = "every site" if site is None else site
    print(
        f"silenced {what} until {_when(silence.until)} (id {silence.id}); "
        "the running daemon holds its DOWN alerts within 2 s",
        file=out,
    )
    return EXIT_OK


def _list(state_dir: Path, out: TextIO, err: TextIO) -> int:
    store = _open_store(state_dir, err)
    if store is None:
        return EXIT_FAILED
    try:
        silences = store.active_silences(time.time())
    except StoreError as exc:
        print(f"sentinel: {exc}", file=err)
        return EXIT_FAILED
    finally:
        store.close()
    if not silences:
        print("no silences in force", file=out)
        return EXIT_OK
    rows = [("id", "site", "until", "reason")]
    rows += [
        (str(s.id), "(all)" if s.site is None else s.site, _when(s.until), s.reason)
        for s in silences
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:3])) + "  " + r[3], file=out)
    return EXIT_OK


def cmd_unsilence(args: argparse.Namespace, state_dir: Path, out: TextIO, err: TextIO) -> int:
    store = _open_store(state_dir, err)
    if store is None:
        return EXIT_FAILED
    try:
        removed = store.remove_silence(args.id)
    except StoreError as exc:
        print(f"sentinel: {exc}", file=err)
        return EXIT_FAILED
    finally:
        store.close()
    if not removed:
        print(f"sentinel: no silence with id {args.id} (see sentinel silence --list)", file=err)
        return EXIT_FAILED
    print(f"removed silence {args.id}; alerts it held go out with the next probe", file=out)
    return EXIT_OK


def run(args: argparse.Namespace, config: Config) -> int:
    from sentinel.daemon import resolve_state_dir

    state_dir = resolve_state_dir(config)
    if args.command == "silence":
        return cmd_silence(args, config, state_dir, sys.stdout, sys.stderr)
    return cmd_unsilence(args, state_dir, sys.stdout, sys.stderr)
