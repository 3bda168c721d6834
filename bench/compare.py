"""Side by side: sentinel and Prometheus + blackbox_exporter, back to back on the same fleet.

    .venv/bin/python bench/compare.py --sites 1000 --interval 10 --window 60 --runs 3

Each round runs sentinel once, then blackbox_exporter once (the same N targets of the same fleet,
the same interval, window and probe timeout), so the two figures of a round share the machine's
conditions. The ratio sentinel / exporter (CPU per probe) is reported per round; the headline is
the median of the per-round ratios (and, for reference, the ratio of the medians). Prometheus' own
CPU is reported separately: sentinel does its own scheduling and keeps its own metrics, so
"exporter + Prometheus" is the fairer whole-system comparison and is shown too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    args = p.parse_args(argv)
    exporter_bin, prometheus_bin = run_blackbox.binaries()
    machine = machine_info()
    machine["versions"]["blackbox_exporter"] = run_blackbox.version(exporter_bin)
    machine["versions"]["prometheus"] = run_blackbox.version(prometheus_bin)
    env = run_sentinel.parse_env(args.env)
    rounds: list[dict[str, Any]] = []
    try:
        with FleetProc(args.sites) as fleet:
            for i in range(args.runs):
                s = run_sentinel.measure(
                    fleet,
                    sites=args.sites,
                    interval=args.interval,
                    window=args.window,
                    warmup=args.warmup,
                    env=env,
                )
                b = run_blackbox.measure(
                    fleet,
                    sites=args.sites,
                    interval=args.interval,
                    window=args.window,
                    warmup=args.warmup,
                )
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
                rounds.append(rnd_)
                print(
                    f"round {i + 1}/{args.runs}: sentinel {s_cpu} ms/probe, exporter {b_cpu} "
                    f"(+{p_cpu} Prometheus), ratio {rnd_['ratio']}",
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
            write_result(f"compare-{args.sites}x{args.interval:g}s", result, args.results)
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
        f"{args.sites} sites at {args.interval:g}s, windows of {args.window:g}s "
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
