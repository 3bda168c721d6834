"""Latency accuracy: does sentinel's measured total time match a target's injected delay?

    .venv/bin/python bench/latency_accuracy.py --sites 100 --interval 1 --seconds 60

N sites at interval I (100 sites at 1 s = ~100 probes/s) point at the fleet's `/d/<ms>/<k>`, which
answers `200 ok` after exactly `<ms>` ms; the delays cycle through `--delays` (0 included, for the
baseline). Every probe's measured total is read from sentinel's `/api/status` (`last.total`, µs
resolution), polled every 0.25 s and de-duplicated per site. The baseline loopback latency is the
median total of the 0 ms sites in the same run; the error of a probe is
|measured total - injected delay - baseline|, and its p50/p99/max are reported per delay and over
all delayed probes. The fleet's own timer overshoot (how late its `call_later` fired, measured by
the fleet) is reported alongside: it is part of the error but is the target's, not sentinel's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS_DIR,
    DaemonUnavailableError,
    FleetProc,
    SentinelProc,
    free_port,
    http_get,
    machine_info,
    markdown_table,
    rnd,
    sentinel_config,
    site_block,
    write_result,
)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--delays", default="0,5,10,20,50,100,200", help="ms, cycled over the sites")
    p.add_argument("--poll", type=float, default=0.25, help="/api/status poll period, s")
    p.add_argument(
        "--batch-window",
        default=None,
        help='sentinel\'s [sentinel] batch_window, e.g. "0s" (default: its default)',
    )
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for sentinel")
    p.add_argument(
        "--no-stamp-requests",
        action="store_true",
        help="the fleet times its delays from when it got to a request, not from the "
        "kernel's receive stamp (round 2's method)",
    )
    p.add_argument(
        "--precise-latency",
        action="store_true",
        help="sentinel's [sentinel] precise_latency = true (kernel receive stamps)",
    )
    p.add_argument(
        "--target-realtime",
        action="store_true",
        help="run the fleet under `chrt -f 10` (root): its timers then fire on time, "
        "so the injected delays are what they say; sentinel runs as usual",
    )
    p.add_argument(
        "--sentinel-python",
        default=sys.executable,
        help="the interpreter (venv) whose sentinel is measured, to compare builds",
    )
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    delays = [int(d) for d in args.delays.split(",")]
    if 0 not in delays:
        delays.insert(0, 0)
    if max(delays) / 1000 >= min(5.0, args.interval / 2):
        p.error("every delay must be below the probe timeout (interval / 2)")
    env = dict(item.split("=", 1) for item in args.env)
    machine = machine_info()
    site_delay = {f"d{k}": delays[k % len(delays)] for k in range(args.sites)}
    measured: dict[str, list[float]] = {name: [] for name in site_delay}
    seen: list[tuple[str, float, float, float]] = []  # (site, total, polled after, polled at)
    work = Path(tempfile.mkdtemp(prefix="sentinel-latency-"))
    try:
        prefix = ["chrt", "-f", "10"] if args.target_realtime else []
        with FleetProc(
            args.sites, stamp_requests=not args.no_stamp_requests, prefix=prefix
        ) as fleet:
            port = free_port()
            blocks = [
                site_block(name, fleet.url(f"/d/{ms}/{name}")) for name, ms in site_delay.items()
            ]
            config = sentinel_config(
                listen_port=port,
                state_dir=work / "state",
                interval=args.interval,
                timeout=min(5.0, args.interval / 2),
                sites=blocks,
                batch_window=args.batch_window,
                precise_latency=args.precise_latency,
            )
            daemon = SentinelProc(work, config, port, env=env, python=args.sentinel_python)
            try:
                daemon.wait_healthy()
                time.sleep(args.warmup)
                fleet_before = fleet.stats()["delay_overshoot_ms"]
                last: dict[str, tuple[str | None, float]] = {}
                http_get(fleet.url("/delay-log"))  # forget the warm-up's requests
                end = time.monotonic() + args.seconds
                previous_poll = time.time()
                while time.monotonic() < end and daemon.alive():
                    data = json.loads(http_get(daemon.url("/api/status")))
                    polled = time.time()
                    for s in data["sites"]:
                        lr = s.get("last")
                        if not lr or s["site"] not in measured or not lr.get("ok"):
                            continue
                        key = (lr.get("at"), float(lr["total"]))
                        if last.get(s["site"]) != key:
                            if s["site"] in last:  # skip the value seen at the first poll
                                measured[s["site"]].append(float(lr["total"]))
                                seen.append((s["site"], float(lr["total"]), previous_poll, polled))
                            last[s["site"]] = key
                    previous_poll = polled
                    time.sleep(args.poll)
                fleet_stats = fleet.stats()
                delay_log = json.loads(http_get(fleet.url("/delay-log")))
            finally:
                daemon.stop()
    except DaemonUnavailableError as exc:
        print(f"sentinel cannot start: {exc}", file=sys.stderr)
        return 3
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by_delay: dict[int, list[float]] = {d: [] for d in delays}
    for name, values in measured.items():
        by_delay[site_delay[name]].extend(values)
    baseline = quantile(by_delay[0], 0.5) or 0.0
    rows: list[list[Any]] = []
    all_errors: list[float] = []
    per_delay: dict[str, Any] = {}
    for d in delays:
        errors = [abs(t - d / 1000 - baseline) * 1000 for t in by_delay[d]]
        if d:
            all_errors.extend(errors)
        stats = {
            "probes": len(errors),
            "median_total_ms": rnd((quantile(by_delay[d], 0.5) or 0) * 1000, 3),
            "err_p50_ms": rnd(quantile(errors, 0.5), 3),
            "err_p99_ms": rnd(quantile(errors, 0.99), 3),
            "err_max_ms": rnd(max(errors) if errors else None, 3),
        }
        per_delay[str(d)] = stats
        rows.append([d, *stats.values()])
    probes = sum(len(v) for v in measured.values())
    own = sentinel_own_error(seen, delay_log, site_delay)
    summary = {
        "probes": probes,
        "probes_per_s": rnd(probes / args.seconds, 1),
        "baseline_ms": rnd(baseline * 1000, 3),
        "error_p50_ms": rnd(quantile(all_errors, 0.5), 3),
        "error_p99_ms": rnd(quantile(all_errors, 0.99), 3),
        "error_max_ms": rnd(max(all_errors) if all_errors else None, 3),
        "matched_probes": own["matched"],
        "target_side_err_p99_ms": own["target_err_p99_ms"],
        "client_side_ms_p50": own["client_p50_ms"],
        "sentinel_own_err_p50_ms": own["own_err_p50_ms"],
        "sentinel_own_err_p99_ms": own["own_err_p99_ms"],
        "sentinel_own_err_max_ms": own["own_err_max_ms"],
        "fleet_timer_overshoot_ms": fleet_stats["delay_overshoot_ms"],
        "fleet_timer_overshoot_before_window_ms": fleet_before,
    }
    result: dict[str, Any] = {
        "kind": "latency",
        "machine": machine,
        "summary": summary,
        "per_delay": per_delay,
        "params": {k: v for k, v in vars(args).items() if k != "results"},
    }
    if not args.no_save:
        result["path"] = str(write_result("latency", result, args.results))
    print(
        f"latency accuracy: {probes} probes ({summary['probes_per_s']}/s), baseline "
        f"{summary['baseline_ms']} ms, abs error p50 {summary['error_p50_ms']} ms, p99 "
        f"{summary['error_p99_ms']} ms (fleet timer overshoot p99 "
        f"{fleet_stats['delay_overshoot_ms']['p99']} ms)"
    )
    print(
        markdown_table(
            [
                "delay ms",
                "probes",
                "median total ms",
                "abs err p50 ms",
                "abs err p99 ms",
                "abs err max ms",
            ],
            rows,
        )
    )
    print(
        f"\ntaken apart ({own['matched']} probes matched to the target's own log): the "
        f"target answered |late| p99 {own['target_err_p99_ms']} ms after its injected delay "
        f"(counted from accept); sentinel's total minus the target's accept-to-response time "
        f"is {own['client_p50_ms']} ms (median: connect + request + reading), and its "
        f"deviation from that median, sentinel's own error, is p50 "
        f"{own['own_err_p50_ms']} ms, p99 {own['own_err_p99_ms']} ms, max "
        f"{own['own_err_max_ms']} ms"
    )
    if "path" in result:
        print(f"\nsaved {result['path']}")
    return 0


def sentinel_own_error(
    seen: list[tuple[str, float, float, float]],
    delay_log: list[list[Any]],
    site_delay: dict[str, int],
) -> dict[str, Any]:
    """Match each probe sentinel reported to the target's record of the same request (same site,
    accepted between the poll before it was seen, less a margin, and the poll that saw it: a site
    is probed once a second and polled four times, so at most one request fits), then split the
    error: the target's lateness (accept -> response vs the injected delay: its timers, its
    queue) and sentinel's own (its total minus the target's time, around that difference's
    median)."""
    by_site: dict[str, list[tuple[float, float]]] = {}
    for name, accepted, server in delay_log:
        by_site.setdefault(str(name), []).append((float(accepted), float(server)))
    client: list[float] = []
    target_err: list[float] = []
    for name, total, after, at in seen:
        fits = [srv for acc, srv in by_site.get(name, []) if after - 0.3 < acc <= at]
        if len(fits) != 1:
            continue
        client.append(total - fits[0])
        target_err.append(abs(fits[0] - site_delay[name] / 1000) * 1000)
    middle = quantile(client, 0.5) or 0.0
    own = [abs(c - middle) * 1000 for c in client]
    return {
        "matched": len(client),
        "target_err_p99_ms": rnd(quantile(target_err, 0.99), 3),
        "client_p50_ms": rnd(middle * 1000, 3),
        "own_err_p50_ms": rnd(quantile(own, 0.5), 3),
        "own_err_p99_ms": rnd(quantile(own, 0.99), 3),
        "own_err_max_ms": rnd(max(own) if own else None, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
