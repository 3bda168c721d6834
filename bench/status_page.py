"""How long the status page takes at many sites, and the longest the event loop is held.

Builds a store with `--sites` sites of full history (35 days hourly, 90 days daily, 10 incidents
each), then renders `/` the way the server does: the history read (cold: from SQLite; warm: from
the reader's cache, as while polled between two writes) and the HTML in chunks of 50 sites. The
loop is held for the read plus one chunk at a time; the figures are wall-clock on this machine.

    .venv/bin/python bench/status_page.py [--sites 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sentinel.config import SiteConfig
from sentinel.history import db
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup, encode_hist
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.store import Store
from sentinel.webviews.pages import StatusPages


def build(store: Store, names: list[str], now: float) -> None:
    """Rows inserted directly (the recorder's merge path is measured by history_size.py)."""
    rng = random.Random(1)
    hour = int(now * 1000) // HOUR_MS
    day = int(now * 1000) // DAY_MS
    with store.write() as conn:
        conn.executemany("INSERT INTO history_site (name) VALUES (?)", [(n,) for n in names])
        ids = dict(conn.execute("SELECT name, id FROM history_site").fetchall())

        def row(site_id: int, period: int, size_ms: int, probes: int) -> tuple[object, ...]:
            r = Rollup(covered_ms=size_ms - rng.randrange(60_000))  # as real: never exact
            for _ in range(probes):
                r.add_probe(True, int(rng.lognormvariate(0, 0.3) * 80_000))
            if rng.random() < 0.01:
                r.down_ms = size_ms // 50
            return (
                site_id,
                period,
                r.probes,
                r.failures,
                r.covered_ms,
                r.down_ms,
                r.lat_max_us,
                encode_hist(r.hist),
            )

        conn.executemany(
            "INSERT INTO history_hour VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [row(ids[n], h, HOUR_MS, 20) for n in names for h in range(hour - 35 * 24, hour + 1)],
        )
        conn.executemany(
            "INSERT INTO history_day VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [row(ids[n], d, DAY_MS, 40) for n in names for d in range(day - 400, day + 1)],
        )
    for name in names:
        for k in range(10):
            start = int((now - (k + 1) * 3 * 86400) * 1000)
            db.incident_opened(store, name, start, "timeout", "connect timed out after 10s")
            db.incident_updated(store, name, start, alerts=2, ended_ms=start + 300_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now = time.time()
    names = [f"site-{i:05d}.example.org" for i in range(args.sites)]
    sites = {n: SiteConfig(name=n, kind="http", target=f"https://{n}/") for n in names}
    ok = ResultSummary(at=now - 5, ok=True, status=200, total=0.08, reason="ok", message="")
    states = {
        n: SiteState(site=n, status=Status.UP, since=now - 86400, recent=(ok,)) for n in names
    }
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        t = time.perf_counter()
        build(store, names, now)
        build_s = time.perf_counter() - t
        recorder = HistoryRecorder(store, HistoryConfig(), lambda exc: None)
        reader = HistoryReader(store, recorder)
        pages = StatusPages(
            sites=lambda: sites,
            states=lambda: states,
            settings=lambda: StatusPageConfig(title="Bench"),
            recorder=recorder,
            reader=reader,
        )
        result: dict[str, object] = {"sites": args.sites, "build_s": round(build_s, 1)}
        for label in ("cold", "warm", "warm2"):
            t0 = time.perf_counter()
            reply = pages.index()  # reads the history (cold: SQLite)
            t1 = time.perf_counter()
            assert reply.chunks is not None
            longest, size = 0.0, 0
            last = time.perf_counter()
            for chunk in reply.chunks():
                now_t = time.perf_counter()
                longest = max(longest, now_t - last)
                size += len(chunk)
                last = time.perf_counter()
            total = time.perf_counter() - t0
            result[label] = {
                "read_ms": round((t1 - t0) * 1000, 1),
                "total_ms": round(total * 1000, 1),
                "longest_chunk_ms": round(longest * 1000, 2),
                "loop_held_max_ms": round(max(t1 - t0, longest) * 1000, 1),
                "bytes": size,
            }
        result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
