"""How many bytes of the state store a site's history takes at full retention.

Simulates `--days` days (default 400) of `--sites` sites probed every `--interval` seconds:
latency log-normal around a per-site median (a slow drift, spikes), a short outage every few days
(an incident each), written the way the daemon writes (hourly deltas merged into the hour and
day tables in batches) and pruned daily with the default retention (35 d hourly, 400 d daily and
incidents). Reports the database bytes per site (after VACUUM, so free pages do not count), the
bytes per table and whether the 64 KiB goal holds. No network, no daemon: the store's own code.

    .venv/bin/python bench/history_size.py [--sites 20] [--days 400] [--interval 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sentinel.history import db
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import HOUR_MS, Rollup
from sentinel.history.settings import HistoryConfig
from sentinel.store import DB_NAME, Store

GOAL_BYTES = 64 * 1024
START = 1_767_225_600  # 2026-01-01 UTC


def simulate(sites: int, days: int, interval: float, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    per_hour = max(1, round(3600 / interval))
    medians = [rng.uniform(0.02, 0.4) for _ in range(sites)]
    config = HistoryConfig()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        now = float(START)
        recorder = HistoryRecorder(store, config, lambda exc: None, clock=lambda: now)
        started = time.perf_counter()
        open_incidents: dict[int, int] = {}
        for hour_index in range(days * 24):
            hour_start_ms = (START + hour_index * 3600) * 1000
            deltas: dict[tuple[str, int], Rollup] = {}
            for s in range(sites):
                acc = Rollup(covered_ms=HOUR_MS)
                drift = 1 + 0.3 * (hour_index / (days * 24))
                for _ in range(per_hour):
                    if s in open_incidents:
                        acc.add_probe(False, 0)
                        continue
                    latency = rng.lognormvariate(0, 0.25) * medians[s] * drift
                    if rng.random() < 0.01:
                        latency *= 5  # a spike
                    acc.add_probe(True, int(latency * 1_000_000))
                if s in open_incidents:
                    acc.down_ms = HOUR_MS
                    db.incident_updated(
                        store, f"site-{s}", open_incidents.pop(s), ended_ms=hour_start_ms + HOUR_MS
                    )
                elif rng.random() < 1 / (24 * 4):  # an outage every four days or so
                    open_incidents[s] = hour_start_ms
                    db.incident_opened(
                        store, f"site-{s}", hour_start_ms, "timeout", "connect timed out after 10s"
                    )
                deltas[(f"site-{s}", hour_start_ms // HOUR_MS)] = acc
            db.write_hours(store, deltas)
            if hour_index % 24 == 23:
                now = START + (hour_index + 1) * 3600.0
                recorder.prune()
        elapsed = time.perf_counter() - started
        store.close()
        path = Path(tmp) / DB_NAME
        conn = sqlite3.connect(path)
        conn.execute("VACUUM")
        tables: dict[str, int] = {}
        try:
            for name, size in conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ):
                tables[str(name)] = int(size)
        except sqlite3.OperationalError:
            tables = {}  # SQLite built without dbstat
        rows = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("history_hour", "history_day", "history_incident")
        }
        conn.close()
        history_bytes = sum(
            v for k, v in tables.items() if k.startswith(("history", "sqlite_autoindex_history"))
        )
        file_bytes = path.stat().st_size
    per_site = (history_bytes or file_bytes) / sites
    return {
        "sites": sites,
        "days": days,
        "interval_s": interval,
        "probes_simulated": sites * days * 24 * per_hour,
        "rows": rows,
        "table_bytes": tables,
        "file_bytes": file_bytes,
        "history_bytes_per_site": round(per_site),
        "goal_bytes_per_site": GOAL_BYTES,
        "goal_met": per_site <= GOAL_BYTES,
        "seconds": round(elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    result = simulate(args.sites, args.days, args.interval, args.seed)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{result['sites']} sites x {result['days']} days every {args.interval:g}s: "
            f"{result['history_bytes_per_site']} bytes of history a site "
            f"(goal {GOAL_BYTES}: {'met' if result['goal_met'] else 'MISSED'}); "
            f"rows {result['rows']}; tables {result['table_bytes']}"
        )
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
