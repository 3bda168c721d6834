"""Side by side: sentinel and Prometheus + blackbox_exporter, back to back on the same fleet.

    .venv/bin/python bench/compare.py --sites 1000 --interval 10 --window 60 --runs 3

Each round runs sentinel once, then blackbox_exporter once (the same N targets of the same fleet,
the same interval, window and probe timeout), so the two figures of a round share the machine's
conditions. The ratio sentinel / exporter (CPU per probe) is reported per round; the headline is
the median of the per-round ratios (and, for reference, the ratio of the medians). Prometheus' own
CPU is reported separately: sentinel does its own scheduling and keeps its own metrics, so
"exporter + Prometheus" is the fairer whole-system comparison and is shown too.

`--names`: every site is addressed by a host name (`t<i>.bench.test`) that both tools resolve
through a real DNS server on loopback (dnsmasq) on every probe, as users' sites are named. The
run then happens inside network and mount namespaces of its own, where /etc/resolv.conf names
only that server (see loopdns.py; root, `unshare`, `dnsmasq`). Without dnsmasq or the rights
for namespaces it prints why and exits 0 (skipped), measuring nothing.

`--floor`: each round also runs floor_prober.py on the same fleet, by address (the least a
Python + uvloop prober with a fresh connection a probe can cost at this rate), and reports its
CPU per probe and its ratio to the exporter's beside sentinel's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import loopdns
import run_blackbox
import run_sentinel
from benchlib import (
    RESULTS_DIR,
    DaemonUnavailableError,
    FleetProc,
    machine_info,
    markdown_table,
    median,
    rnd,
    write_result,
)


def floor_measure(
    fleet: FleetProc, sites: int, interval: float, window: float, warmup: float | None
) -> dict[str, Any]:
    """One run of floor_prober.py on the fleet (by address: it does no lookups)."""
    warm = interval + 5.0 if warmup is None else warmup
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("floor_prober.py")),
            "--port",
            str(fleet.port),
            "--sites",
            str(sites),
            "--interval",
            str(interval),
            "--warmup",
            str(warm),
            "--window",
            str(window),
        ],
        capture_output=True,
        text=True,
        timeout=warm + window + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for sentinel")
    p.add_argument("--label", default="")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-save", action="store_true")
    p.add_argument(
        "--names",
        action="store_true",
        help="sites by host name, resolved by dnsmasq on loopback for both tools (loopdns.py)",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also run floor_prober.py each round: the least this design can cost (by address)",
    )
    args = p.parse_args(argv)
    if args.names and not loopdns.inside():
        why = loopdns.unavailable()
        if why is not None:
            print(f"compare.py --names skipped: {why}", file=sys.stderr)
            return 0
        return loopdns.reexec([__file__, *(sys.argv[1:] if argv is None else argv)])
    exporter_bin, prometheus_bin = run_blackbox.binaries()
    machine = machine_info()
    machine["versions"]["blackbox_exporter"] = run_blackbox.version(exporter_bin)
    machine["versions"]["prometheus"] = run_blackbox.version(prometheus_bin)
    env = run_sentinel.parse_env(args.env)
    rounds: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            dns = stack.enter_context(loopdns.LoopbackDns(args.sites)) if args.names else None
            fleet = stack.enter_context(FleetProc(args.sites))
            if args.names:
                fleet.host_template = loopdns.TEMPLATE
            for i in range(args.runs):
                q0 = dns.answered() if dns is not None else None
                s = run_sentinel.measure(
                    fleet,
                    sites=args.sites,
                    interval=args.interval,
                    window=args.window,
                    warmup=args.warmup,
                    env=env,
                )
                q1 = dns.answered() if dns is not None else None
                b = run_blackbox.measure(
                    fleet,
                    sites=args.sites,
                    interval=args.interval,
                    window=args.window,
                    warmup=args.warmup,
                )
                q2 = dns.answered() if dns is not None else None
                f = (
                    floor_measure(fleet, args.sites, args.interval, args.window, args.warmup)
                    if args.floor
                    else None
                )
                if q0 is not None and q1 is not None and q2 is not None:
                    # Whole runs (start-up and warm-up too), so more than the window's probes.
                    s["dns_queries_answered"], b["dns_queries_answered"] = q1 - q0, q2 - q1
                s_cpu, b_cpu = s["cpu_ms_per_probe"], b["exporter_cpu_ms_per_probe"]
                p_cpu = b["prometheus_cpu_ms_per_probe"]
                rnd_ = {
                    "sentinel": s,
                    "blackbox": b,
                    "ratio": rnd(s_cpu / b_cpu if s_cpu and b_cpu else None, 4),
                    "ratio_with_prometheus": rnd(
                        s_cpu / (b_cpu + p_cpu) if s_cpu and b_cpu and p_cpu else None, 4
                    ),
                }
                if f is not None:
                    f_cpu = f["cpu_ms_per_probe"]
                    rnd_["floor"] = f
                    rnd_["floor_ratio"] = rnd(f_cpu / b_cpu if f_cpu and b_cpu else None, 4)
                rounds.append(rnd_)
                print(
                    f"round {i + 1}/{args.runs}: sentinel {s_cpu} ms/probe, exporter {b_cpu} "
                    f"(+{p_cpu} Prometheus), ratio {rnd_['ratio']}"
                    + (f", floor {f['cpu_ms_per_probe']} ({rnd_['floor_ratio']})" if f else ""),
                    file=sys.stderr,
                    flush=True,
                )
    except DaemonUnavailableError as exc:
        print(f"sentinel cannot start: {exc}", file=sys.stderr)
        return 3
    s_med = median(r["sentinel"]["cpu_ms_per_probe"] for r in rounds)
    b_med = median(r["blackbox"]["exporter_cpu_ms_per_probe"] for r in rounds)
    p_med = median(r["blackbox"]["prometheus_cpu_ms_per_probe"] for r in rounds)
    summary = {
        "sentinel_cpu_ms_per_probe": s_med,
        "exporter_cpu_ms_per_probe": b_med,
        "prometheus_cpu_ms_per_probe": p_med,
        "ratio_median_of_rounds": median(r["ratio"] for r in rounds),
        "ratio_of_medians": rnd(s_med / b_med if s_med and b_med else None, 4),
        "ratio_with_prometheus_median": median(r["ratio_with_prometheus"] for r in rounds),
        "sentinel_peak_rss_mib": median(r["sentinel"]["peak_rss_mib"] for r in rounds),
        "exporter_peak_rss_mib": median(r["blackbox"]["exporter_peak_rss_mib"] for r in rounds),
        "sentinel_success_ratio": median(r["sentinel"]["success_ratio"] for r in rounds),
        "exporter_success_ratio": median(r["blackbox"]["success_ratio"] for r in rounds),
    }
    if args.floor:
        summary["floor_cpu_ms_per_probe"] = median(r["floor"]["cpu_ms_per_probe"] for r in rounds)
        summary["floor_ratio_median_of_rounds"] = median(r["floor_ratio"] for r in rounds)
        summary["floor_success_ratio"] = median(r["floor"]["success_ratio"] for r in rounds)
    result: dict[str, Any] = {
        "kind": "compare",
        "label": args.label,
        "machine": machine,
        "params": {k: v for k, v in vars(args).items() if k != "results"},
        "summary": summary,
        "rounds": rounds,
    }
    if not args.no_save:
        result["path"] = str(
            write_result(
                f"compare{'-names' if args.names else ''}-{args.sites}x{args.interval:g}s",
                result,
                args.results,
            )
        )
    rows = [
        [
            f"round {i + 1}",
            r["sentinel"]["cpu_ms_per_probe"],
            r["blackbox"]["exporter_cpu_ms_per_probe"],
            r["blackbox"]["prometheus_cpu_ms_per_probe"],
            r["ratio"],
            r["ratio_with_prometheus"],
        ]
        for i, r in enumerate(rounds)
    ]
    rows.append(
        [
            "**median**",
            s_med,
            b_med,
            p_med,
            summary["ratio_median_of_rounds"],
            summary["ratio_with_prometheus_median"],
        ]
    )
    print(
        f"{args.sites} sites{' by host name (dnsmasq)' if args.names else ''} at "
        f"{args.interval:g}s, windows of {args.window:g}s "
        f"({machine['nproc']} x {machine['cpu_model']})"
    )
    print(
        markdown_table(
            [
                "",
                "sentinel ms/probe",
                "exporter ms/probe",
                "Prometheus ms/probe",
                "sentinel / exporter",
                "sentinel / (exporter + Prometheus)",
            ],
            rows,
        )
    )
    print(json.dumps(summary))
    if "path" in result:
        print(f"\nsaved {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
