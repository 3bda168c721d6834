"""Capacity: the most sites at a 60 s interval that one sentinel (one process, one core by design)
sustains with p99 schedule lag under 1 s.

    .venv/bin/python bench/capacity.py --steps 10000,20000,30000,40000

Steps N up through `--steps`; each step is one `run_sentinel.measure` run against the fleet (a fresh
daemon, warm-up of one interval + 5 s so every site is on its schedule, then `--window` s measured).
A step passes when the lag p99 is < `--max-lag` (1 s) and the probes done are at least 97 % of the
expected (a daemon that silently skips ticks does not pass either). It stops at the first failing
step, or before a step that would take the run past `--max-minutes`. The answer is the last
passing N (a lower bound: the true limit lies between it and the first failing N).

Which lag: the window opens and closes with a scrape of /metrics (that is how the lag histogram is
read). Rendering /metrics blocks sentinel's event loop for a time that grows with N (seconds at
5,000 sites), so the probes due meanwhile start late and land in the histogram's delta: sentinel's
own p99 (`lag_p99_s`) then measures the scrape, not the scheduler. The pass criterion therefore
uses the fleet's view (`fleet_lag_p99_s`: every probe's arrival at the target, on the site's
fixed grid, relative to the site's least-late arrival; recorded from a settle time after the
opening scrape to the end of the window, so no scrape is inside). `passed_including_scrape` says
whether sentinel's own histogram p99 passed too, i.e. the capacity while being scraped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import run_sentinel
from benchlib import (
    RESULTS_DIR,
    DaemonUnavailableError,
    FleetProc,
    machine_info,
    markdown_table,
    write_result,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--steps", default="5000,10000,20000,30000,40000,50000")
    p.add_argument("--interval", type=float, default=60.0)
    p.add_argument(
        "--window",
        type=float,
        default=180.0,
        help="long enough for >= 2 probes per site after the settle (see below)",
    )
    p.add_argument("--warmup", type=float, default=None, help="default: interval + 5 s")
    p.add_argument("--max-lag", type=float, default=1.0, help="p99 lag bound, seconds")
    p.add_argument("--min-probes-ratio", type=float, default=0.97)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=30.0, help="bound on the whole run")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for sentinel")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    machine = machine_info()
    env = run_sentinel.parse_env(args.env)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    passed: int | None = None
    failed: int | None = None
    stop_reason = "all steps passed"
    warm = args.interval + 5.0 if args.warmup is None else args.warmup
    with FleetProc(max(steps)) as fleet:
        for n in steps:
            step_estimate = warm + args.window + 30 + n / 500  # start-up grows with N
            elapsed = time.monotonic() - started
            if elapsed + step_estimate > args.max_minutes * 60:
                stop_reason = f"time bound: {n} would end past {args.max_minutes:g} min"
                break
            try:
                run = run_sentinel.measure(
                    fleet,
                    sites=n,
                    interval=args.interval,
                    window=args.window,
                    warmup=warm,
                    max_concurrency=args.max_concurrency,
                    env=env,
                )
            except DaemonUnavailableError as exc:
                print(f"sentinel cannot start: {exc}", file=sys.stderr)
                return 3
            lag99 = run["fleet_lag_p99_s"]
            ok = (
                lag99 is not None
                and lag99 < args.max_lag
                and (run["probes_ratio"] or 0) >= args.min_probes_ratio
            )
            run["passed"] = ok
            run["passed_including_scrape"] = ok and (run["lag_p99_s"] or 0) < args.max_lag
            rows.append(run)
            print(
                f"{n} sites: lag p99 {lag99} s (with the scrape {run['lag_p99_s']} s), "
                f"probes {run['probes']}/{run['expected_probes']},"
                f" core {run['cpu_core_fraction']}, scrape {run['scrape_s']} s -> "
                f"{'pass' if ok else 'FAIL'}",
                file=sys.stderr,
                flush=True,
            )
            if ok:
                passed = n
            else:
                failed = n
                stop_reason = f"{n} failed"
                break
    result: dict[str, Any] = {
        "kind": "capacity",
        "machine": machine,
        "params": {k: v for k, v in vars(args).items() if k != "results"},
        "capacity_sites": passed,
        "first_failing_sites": failed,
        "stop_reason": stop_reason,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "steps": rows,
    }
    if not args.no_save:
        result["path"] = str(write_result("capacity", result, args.results))
    cols = (
        "sites",
        "probes",
        "expected_probes",
        "cpu_core_fraction",
        "cpu_ms_per_probe",
        "fleet_lag_p50_s",
        "fleet_lag_p99_s",
        "lag_p50_s",
        "lag_p99_s",
        "peak_rss_mib",
        "scrape_s",
        "passed",
        "passed_including_scrape",
    )
    print(
        f"capacity at {args.interval:g}s, p99 lag < {args.max_lag:g}s: {passed} sites "
        f"({stop_reason})"
    )
    print(markdown_table(cols, [[r.get(c) for c in cols] for r in rows]))
    print(json.dumps({"capacity_sites": passed, "first_failing_sites": failed}))
    if "path" in result:
        print(f"\nsaved {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
