"""Throughput and cost of `sentinel run`: N sites of the fleet at interval I, over a window.

    .venv/bin/python bench/run_sentinel.py --sites 1000 --interval 10 --window 60 --runs 3

Each run starts a fresh daemon (new state dir, free loopback port) on the same fleet, waits a
warm-up (one interval + 5 s: every site has been probed and start-up is excluded), then over the
window measures, from /proc and two scrapes of /metrics taken just outside the CPU window (so the
scrapes' own CPU is not charged to the probes):

- probes done (sum of `sentinel_probes_total` deltas) vs expected (N * window / I)
- CPU ms per probe: utime+stime delta of the daemon / probes delta
- peak RSS (VmHWM, start-up included) and the largest VmRSS sampled in the window
- schedule lag p50 / p99 from the `sentinel_schedule_lag_seconds` bucket deltas, interpolated
  like Prometheus' histogram_quantile
- the success ratio sentinel saw vs the fleet's truth (94 % for N a multiple of 100)
- the fleet's own CPU over the window (it runs on the other core, but it is shown)

The result (every run, the medians, machine and versions) is written to bench/results/ as JSON and
printed as a markdown table. `--profile` also runs `py-spy record` on the daemon during each
window (the CPU figures of a profiled run are perturbed: use them for where, not how much).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS_DIR,
    BenchError,
    DaemonUnavailableError,
    FleetProc,
    Sampler,
    SentinelProc,
    bucket_delta,
    cpu_seconds,
    cpu_split,
    fleet_delta,
    fleet_sites,
    free_port,
    histogram_quantile,
    http_get,
    machine_info,
    markdown_table,
    median,
    mem_kib,
    rnd,
    sentinel_config,
    sleep_sampling,
    system_jiffies,
    utc_stamp,
    write_result,
)
from fleet import expected_success_ratio

KEYS = (
    "sites",
    "interval_s",
    "window_s",
    "probes",
    "expected_probes",
    "probes_ratio",
    "cpu_ms_per_probe",
    "cpu_core_fraction",
    "peak_rss_mib",
    "max_rss_window_mib",
    "lag_p50_s",
    "lag_p99_s",
    "lag_max_bucket_s",
    "fleet_lag_p50_s",
    "fleet_lag_p99_s",
    "success_ratio",
    "truth_success_ratio",
    "fleet_requests",
    "fleet_cpu_ms_per_request",
    "skipped_ticks",
    "scrape_s",
)


def profile_start(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        raise BenchError("py-spy not found: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(
    fleet: FleetProc,
    *,
    sites: int,
    interval: float,
    window: float,
    warmup: float | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    profile_out: Path | None = None,
    keep_dir: bool = False,
    healthy_timeout: float | None = None,
    precise_latency: bool = False,
) -> dict[str, Any]:
    """One run of `sentinel run` on `sites` sites of `fleet`; returns the figures (KEYS)."""
    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    port = free_port()
    config = sentinel_config(
        listen_port=port,
        state_dir=work / "state",
        interval=interval,
        timeout=timeout if timeout is not None else min(5.0, interval / 2),
        sites=fleet_sites(sites, fleet.port, fleet=fleet),
        max_concurrency=max_concurrency,
        precise_latency=precise_latency,
    )
    daemon = SentinelProc(work, config, port, python=python, env=env)
    rc: int | None = None
    try:
        startup_s = daemon.wait_healthy(healthy_timeout or 60.0 + sites / 500)
        hwm_started = mem_kib(daemon.pid).get("VmHWM", 0)
        sampler = Sampler(daemon.pid)
        warm = interval + 5.0 if warmup is None else warmup
        sleep_sampling(sampler, warm, alive=daemon.alive)
        if not daemon.alive():
            raise DaemonUnavailableError(f"sentinel died during warm-up:\n{daemon.log_tail()}")
        hwm_warm = mem_kib(daemon.pid).get("VmHWM", 0)
        m0 = daemon.scrape()
        hwm_scraped = mem_kib(daemon.pid).get("VmHWM", 0)
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        split0 = cpu_split(daemon.pid)
        sys0 = system_jiffies()
        f0 = fleet.stats()
        fcpu0 = cpu_seconds(fleet.pid)
        profiler = profile_start(daemon.pid, window, profile_out) if profile_out else None
        window_sampler = Sampler(daemon.pid)
        # The fleet records arrivals from `settle` s after the scrape (whose loop stall delays
        # the probes due meanwhile) to the end of the window: a scrape-free jitter figure.
        settle = min(window / 4, max(5.0, 3 * m0.scrape_seconds))
        sleep_sampling(window_sampler, settle, alive=daemon.alive)
        http_get(fleet.url("/record/start"))
        record_start = time.monotonic()
        sleep_sampling(window_sampler, window - settle, alive=daemon.alive)
        fleet_lag = json.loads(http_get(fleet.url(f"/record/stop/{interval:g}")))
        record_s = time.monotonic() - record_start
        if not daemon.alive():
            raise DaemonUnavailableError(f"sentinel died during the window:\n{daemon.log_tail()}")
        cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        split1 = cpu_split(daemon.pid)
        sys1 = system_jiffies()
        fcpu1 = cpu_seconds(fleet.pid)
        f1 = fleet.stats()
        m1 = daemon.scrape()
        mem = mem_kib(daemon.pid)
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=30)
            if profiler.poll() is None:
                profiler.terminate()
                profiler.wait(timeout=10)
    finally:
        rc = daemon.stop()
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)

    scrape_span = m1.at - m0.at
    probes = m1.probes_total - m0.probes_total
    successes = m1.probes.get("success", 0.0) - m0.probes.get("success", 0.0)
    cpu = cpu1 - cpu0
    lag = bucket_delta(m1.lag_buckets, m0.lag_buckets)
    lag_count = m1.lag_count - m0.lag_count
    # the smallest bucket bound that holds every lag observation of the window
    max_bucket = next((le for le, count in lag if lag_count > 0 and count >= lag_count), None)
    if max_bucket == float("inf"):  # above the highest finite bound: report that bound, marked
        max_bucket = -max((le for le, _ in lag if le != float("inf")), default=0.0)
    dur = bucket_delta(m1.duration_buckets, m0.duration_buckets)
    fleet_window = fleet_delta(f1, f0)
    expected = sites * scrape_span / interval
    failures = {k: v - m0.failures_by_reason.get(k, 0.0) for k, v in m1.failures_by_reason.items()}
    return {
        "sites": sites,
        "interval_s": interval,
        "window_s": round(t1 - t0, 2),
        "probes": probes,
        "expected_probes": round(expected, 1),
        "probes_ratio": rnd(probes / expected if expected else None, 4),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_probe": rnd(cpu * 1000 / probes if probes else None, 4),
        "cpu_core_fraction": rnd(cpu / (t1 - t0), 4),
        # kernel share of the daemon's CPU (connect, send, epoll, close on loopback)
        "cpu_system_fraction": rnd((split1[1] - split0[1]) / cpu if cpu else None, 3),
        "peak_rss_mib": round(mem.get("VmHWM", 0) / 1024, 2),
        "max_rss_window_mib": round(window_sampler.max_rss_kib() / 1024, 2),
        # where the peak was reached: after start-up, after warm-up, after the first scrape
        "hwm_started_mib": round(hwm_started / 1024, 2),
        "hwm_warm_mib": round(hwm_warm / 1024, 2),
        "hwm_after_scrape_mib": round(hwm_scraped / 1024, 2),
        "end_rss_mib": round(mem.get("VmRSS", 0) / 1024, 2),
        "lag_p50_s": rnd(histogram_quantile(0.5, lag), 5),
        "lag_p99_s": rnd(histogram_quantile(0.99, lag), 5),
        "lag_mean_s": rnd((m1.lag_sum - m0.lag_sum) / lag_count if lag_count else None, 5),
        "lag_max_bucket_s": max_bucket,
        "lag_observations": lag_count,
        # target-side jitter, no scrape inside (see fleet.Fleet.arrival_lag)
        "fleet_lag_p50_s": rnd(fleet_lag["p50_s"], 5),
        "fleet_lag_p99_s": rnd(fleet_lag["p99_s"], 5),
        "fleet_lag_max_s": rnd(fleet_lag["max_s"], 5),
        "fleet_lag_over_1s": fleet_lag["over_1s"],
        "fleet_lag_samples": fleet_lag["lags"],
        "fleet_lag_window_s": round(record_s, 1),
        "probe_duration_p50_s": rnd(histogram_quantile(0.5, dur), 5),
        "success_ratio": rnd(successes / probes if probes else None, 4),
        "truth_success_ratio": rnd(expected_success_ratio(sites), 4),
        "fleet_success_served_ratio": rnd(
            fleet_window["success_served"] / fleet_window["requests"]
            if fleet_window["requests"]
            else None,
            4,
        ),
        "failures_by_reason": {k: v for k, v in sorted(failures.items()) if v},
        "fleet_requests": fleet_window["requests"],
        "fleet_cpu_s": round(fcpu1 - fcpu0, 3),
        "fleet_cpu_ms_per_request": rnd(
            (fcpu1 - fcpu0) * 1000 / fleet_window["requests"] if fleet_window["requests"] else None,
            4,
        ),
        "skipped_ticks": m1.skipped - m0.skipped,
        # how busy the whole machine was (all cores, every process: other work adds noise)
        "machine_busy_fraction": rnd(
            (sys1[0] - sys0[0]) / (sys1[1] - sys0[1]) if sys1[1] > sys0[1] else None, 3
        ),
        "scrape_s": round(max(m0.scrape_seconds, m1.scrape_seconds), 3),
        "scrape_mib": round(m1.scrape_bytes / 2**20, 2),
        "startup_s": round(startup_s, 2),
        "exit_code": rc,
        "profiled": profile_out is not None,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        values = [r.get(key) for r in runs]
        numeric = [v for v in values if isinstance(v, int | float)]
        out[key] = median(numeric) if numeric else None
    return out


def table(runs: list[dict[str, Any]], medians: dict[str, Any]) -> str:
    cols = (
        "probes",
        "expected_probes",
        "cpu_ms_per_probe",
        "cpu_core_fraction",
        "peak_rss_mib",
        "lag_p50_s",
        "lag_p99_s",
        "success_ratio",
        "truth_success_ratio",
        "fleet_cpu_ms_per_request",
    )
    rows = [[f"run {i + 1}", *[r.get(c) for c in cols]] for i, r in enumerate(runs)]
    rows.append(["**median**", *[medians.get(c) for c in cols]])
    return markdown_table(["", *cols], rows)


def parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds")
    p.add_argument("--window", type=float, default=60.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=None, help="default: interval + 5 s")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="probe timeout, seconds (default 5, at most interval / 2)",
    )
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument(
        "--precise-latency",
        action="store_true",
        help="[sentinel] precise_latency = true (kernel receive stamps)",
    )
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon")
    p.add_argument("--python", default=sys.executable, help="the interpreter for the daemon")
    p.add_argument("--profile", action="store_true", help="py-spy record each window")
    p.add_argument("--label", default="", help="a note stored with the result")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    p.add_argument("--no-save", action="store_true", help="print only, write no result file")
    p.add_argument("--json", action="store_true", help="print the result as JSON, not markdown")
    args = p.parse_args(argv)

    machine = machine_info()
    runs: list[dict[str, Any]] = []
    profiles: list[str] = []
    try:
        with FleetProc(args.sites) as fleet:
            for i in range(args.runs):
                out = None
                if args.profile:
                    args.results.mkdir(parents=True, exist_ok=True)
                    out = args.results / f"{utc_stamp()}-pyspy-{args.sites}-run{i + 1}.txt"
                    profiles.append(str(out))
                run = measure(
                    fleet,
                    sites=args.sites,
                    interval=args.interval,
                    window=args.window,
                    warmup=args.warmup,
                    timeout=args.timeout,
                    max_concurrency=args.max_concurrency,
                    env=parse_env(args.env),
                    python=args.python,
                    profile_out=out,
                    precise_latency=args.precise_latency,
                )
                runs.append(run)
                print(f"run {i + 1}/{args.runs}: {json.dumps(run)}", file=sys.stderr, flush=True)
            fleet_final = fleet.stop()
    except DaemonUnavailableError as exc:
        print(f"sentinel cannot start: {exc}", file=sys.stderr)
        return 3
    medians = summarize(runs)
    result = {
        "kind": "sentinel",
        "label": args.label,
        "params": {k: v for k, v in vars(args).items() if k not in ("results",)},
        "machine": machine,
        "medians": medians,
        "runs": runs,
        "fleet_final": fleet_final,
        "profiles": profiles,
    }
    if not args.no_save:
        result["path"] = str(
            write_result(f"sentinel-{args.sites}x{args.interval:g}s", result, args.results)
        )
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(
            f"sentinel, {args.sites} sites at {args.interval:g}s, {args.runs} runs of "
            f"{args.window:g}s ({machine['nproc']} x {machine['cpu_model']}, "
            f"python {machine['versions']['python']}, aiohttp {machine['versions']['aiohttp']})"
        )
        print(table(runs, medians))
        if "path" in result:
            print(f"\nsaved {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
