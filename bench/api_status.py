"""/api/status at many sites: the CPU of one answer and the longest the event loop is held.

    .venv/bin/python bench/api_status.py [--sites 1000] [--runs 5]

Builds the route as the daemon does (`web.make_routes`) over `--sites` views shaped like a real
site's entry (state, last result, uptime figures, maintenance, silences), and times each piece
the server would write with the loop free in between (`time.thread_time`), side by side with
the same body written by one `json.dumps(..., indent=1)` call, as /api/status did before its
answer was written in pieces. Medians of `--runs`. No network: the web server's own cost per
piece (a write, a drain) is the same either way and is left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sentinel.web import make_routes


def view(i: int) -> dict[str, Any]:
    return {
        "site": f"site-{i:05d}.example.org",
        "target": f"https://site-{i:05d}.example.org/health",
        "status": "up",
        "state": "up",
        "flapping": False,
        "since": "2026-12-02T05:13:56Z",
        "consecutive_failures": 0,
        "incident_since": None,
        "last": {
            "at": "2026-12-02T06:07:16Z",
            "ok": True,
            "status": 200,
            "total": 0.03015 + i / 1e6,
            "reason": "ok",
            "message": "HTTP 200 OK",
        },
        "maintenance": [],
        "silenced": [],
        "last_check_age_seconds": 4.7,
        "uptime": {"24h": 0.998316, "7d": 0.997157, "30d": 0.998002, "90d": 0.998444},
        "cert_expires_at": "2027-02-01T00:00:00Z",
        "cert_days_left": 61,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    views = [view(i) for i in range(args.sites)]

    def site_views() -> Iterator[dict[str, Any]]:
        yield from (dict(v) for v in views)

    route = make_routes(
        render_metrics=lambda: iter(()),
        site_status=site_views,
        healthy=lambda: True,
        dead_letters=lambda: 0,
    )["/api/status"]
    pieces_rows, one_rows = [], []
    for _ in range(args.runs):
        reply = route()
        assert reply.chunks is not None
        cpu: list[float] = []
        size = 0
        chunks = iter(reply.chunks())
        while True:
            t = time.thread_time()
            try:
                size += len(next(chunks))
            except StopIteration:
                break
            finally:
                cpu.append(time.thread_time() - t)
        pieces_rows.append((sum(cpu) * 1000, max(cpu) * 1000, len(cpu) - 1, size))
        body = {"generated_at": "2026-12-02T06:07:20Z", "dead_letters": 0, "sites": views}
        t = time.thread_time()
        size_one = len(json.dumps(body, ensure_ascii=False, indent=1).encode())
        one_rows.append(((time.thread_time() - t) * 1000, size_one))
    result = {
        "sites": args.sites,
        "runs": args.runs,
        "pieces_cpu_ms": round(statistics.median(r[0] for r in pieces_rows), 1),
        "pieces_longest_ms": round(statistics.median(r[1] for r in pieces_rows), 1),
        "pieces_longest_worst_ms": round(max(r[1] for r in pieces_rows), 1),
        "pieces": pieces_rows[0][2],
        "bytes": pieces_rows[0][3],
        "one_dumps_cpu_ms": round(statistics.median(r[0] for r in one_rows), 1),
        "one_dumps_bytes": one_rows[0][1],
    }
    print(json.dumps(result, indent=1) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
