"""CPU of the daemon's per-result work alone: `Daemon.handle_result` on synthetic results.

    .venv/bin/python bench/handle_result_cpu.py --sites 1000 --rounds 30 [--profile]

Builds a real Daemon on a temporary state dir (store, history recorder, early warnings as the
default config has them), restores the states, then feeds every site one result per round (94 %
OK, the others failing from the start like the fleet's 6 %) and the history flush once a
minute of results, timing it with
`time.process_time`. No network, no loop: an A/B figure for the result path, in us per result
(median of 5 repeats), immune to the probe's own cost. `--profile` prints a cProfile top.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sentinel.config import load_config
from sentinel.daemon import Daemon
from sentinel.probes.result import ProbeResult


def build(tmp: Path, sites: int) -> Daemon:
    lines = ["[sentinel]", f'state_dir = "{tmp}"', "", "[defaults]", 'interval = "10s"', ""]
    for i in range(sites):
        lines += ["[[sites]]", f'name = "t{i}"', f'url = "http://127.0.0.1:9/t/{i}"', ""]
    path = tmp / "sites.toml"
    path.write_text("\n".join(lines))
    daemon = Daemon(str(path), load_config(path), environ={})
    daemon.open_store()
    daemon._restore_states()  # (the bench drives the daemon's internals)
    return daemon


def one_round(daemon: Daemon, now: float) -> None:
    """One result per site; every 6th round (a minute at 10 s) the history recorder's flush
    (its `write_every` default), as the daemon's history task does it."""
    for i, site in enumerate(daemon.sites.values()):
        ok = i % 100 >= 6
        if ok:
            result = ProbeResult(
                ok=True,
                reason="ok",
                message="200 OK",
                started_at=now,
                total=0.0012,
                status=200,
                dns=0.0,
                connect=0.0002,
                processing=0.0008,
                transfer=0.0001,
            )
        else:
            result = ProbeResult.failure("status", "500", now, 0.001, status=500)
        daemon.handle_result(site, result)
    if daemon.history is not None and int(now) // 10 % 6 == 0:
        asyncio.run(daemon.history.flush())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = build(Path(tmp), args.sites)
        now = time.time()
        for _ in range(3):  # warm: states settle (UP, DOWN), history accumulators exist
            now += 10
            one_round(daemon, now)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.rounds):
                now += 10
                one_round(daemon, now)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return 0
        per: list[float] = []
        for _ in range(args.repeats):
            t0 = time.process_time()
            for _ in range(args.rounds):
                now += 10
                one_round(daemon, now)
            per.append((time.process_time() - t0) / (args.rounds * args.sites) * 1e6)
        print(f"us/result median {statistics.median(per):.2f}  all {[round(x, 2) for x in per]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
