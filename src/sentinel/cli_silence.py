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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sentinel.config import Config, parse_duration
from sentinel.fatal import report
from sentinel.silences import check_request
from sentinel.store import DB_NAME, Store, StoreError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parsers(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Add the two subcommands through the CLI's `command(name, summary, description)`."""
    silence = command(
        "silence",
        "hold a site's DOWN alerts for a while (or list the silences)",
        "Hold DOWN and STILL DOWN alerts of a site (or every site) for a while. "
        "Probes go on; a site still down when the silence ends is alerted then.",
    )
    silence.add_argument("site", nargs="?", help="the site (or heartbeat) to silence")
    silence.add_argument("--all", action="store_true", help="silence every site and heartbeat")
    silence.add_argument("--for", dest="duration", help='how long, e.g. "2h" (at most 90d)')
    silence.add_argument("--reason", default="", help="shown in the list, the API and the logs")
    silence.add_argument("--list", action="store_true", help="list the silences in force")
    unsilence = command(
        "unsilence",
        "end a silence early (ids: sentinel silence --list)",
        "End a silence early; the alerts it held go out with the next probe.",
    )
    unsilence.add_argument("id", type=int, help="the silence's id")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _open_store(state_dir: Path, err: TextIO) -> Store | None:
    """The daemon's store, opened as the user that owns it: root writing it would leave files
    the service (e.g. systemd's DynamicUser) can no longer write."""
    path = state_dir / DB_NAME
    if not path.exists():
        report(
            f"no state store at {path}: start the daemon first, or point state_dir "
            "(or $STATE_DIRECTORY) where the service keeps it",
            stream=err,
        )
        return None
    owner = path.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.setgid(owner.st_gid)
        os.setuid(owner.st_uid)
    try:
        return Store.open(state_dir)
    except StoreError as exc:
        report(f"{exc}", stream=err)
        return None


def cmd_silence(
    args: argparse.Namespace, config: Config, state_dir: Path, out: TextIO, err: TextIO
) -> int:
    if args.list:
        if args.site or args.all or args.duration:
            report("silence --list takes no site, --all or --for", stream=err)
            return EXIT_USAGE
        return _list(state_dir, out, err)
    if (args.site is None) == (not args.all):
        report("silence needs a site name or --all (or --list)", stream=err)
        return EXIT_USAGE
    if args.duration is None:
        report("silence needs --for, e.g. --for 2h", stream=err)
        return EXIT_USAGE
    names = {s.name for s in config.sites} | {h.name for h in config.heartbeats}
    if args.site is not None and args.site not in names:
        where = config.source or "the config"
        report(f"no site named {args.site!r} (nor a heartbeat) in {where}", stream=err)
        return EXIT_USAGE
    try:
        duration = parse_duration(args.duration)
        site, reason = check_request(args.site, duration, args.reason)
    except ValueError as exc:
        report(f"{exc}", stream=err)
        return EXIT_USAGE
    store = _open_store(state_dir, err)
    if store is None:
        return EXIT_FAILED
    now = time.time()
    try:
        silence = store.add_silence(site, now + duration, reason, now=now)
    except StoreError as exc:
        report(f"{exc}", stream=err)
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
        report(f"{exc}", stream=err)
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
        report(f"{exc}", stream=err)
        return EXIT_FAILED
    finally:
        store.close()
    if not removed:
        report(f"no silence with id {args.id} (see sentinel silence --list)", stream=err)
        return EXIT_FAILED
    print(f"removed silence {args.id}; alerts it held go out with the next probe", file=out)
    return EXIT_OK


def run(args: argparse.Namespace, config: Config, config_path: str) -> int:
    from sentinel.operator_env import StateDirError, choose_state_dir, presence

    try:
        # The same store `sentinel status` finds: the service's, also from a root shell.
        state_dir = choose_state_dir(
            config.state_dir or "", os.environ, presence, config_path=config_path
        )
    except StateDirError as exc:
        report(str(exc))
        return EXIT_FAILED
    if args.command == "silence":
        return cmd_silence(args, config, state_dir, sys.stdout, sys.stderr)
    return cmd_unsilence(args, state_dir, sys.stdout, sys.stderr)
