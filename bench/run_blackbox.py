"""The reference: the same fleet probed by Prometheus + blackbox_exporter, measured the same way.

    .venv/bin/python bench/run_blackbox.py --sites 1000 --interval 10 --window 60 --runs 3

Needs the Debian packages `prometheus` and `prometheus-blackbox-exporter`
(`apt-get install -y prometheus prometheus-blackbox-exporter`); both run here as plain child
processes with generated configs, temp data dirs and free loopback ports, never as services.

Prometheus scrapes `/probe?target=<fleet url>&module=http_2xx` for every one of the N targets at
the interval (the usual relabeling: `__address__` -> `__param_target` -> `instance`, the address
replaced by the exporter's); the module is `http_2xx` with a 5 s timeout (at most interval / 2),
which, like sentinel, opens a fresh connection per probe (blackbox disables keep-alive). After a
warm-up of one interval + 5 s, over the window: the exporter's utime+stime per probe (probes
counted by the fleet, which only the exporter talks to during the run) and Prometheus' own CPU per
probe, separately; peak RSS of both; the success ratio the exporter saw (`avg(probe_success)`
from Prometheus) vs the fleet's truth.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS_DIR,
    BenchError,
    FleetProc,
    Sampler,
    cpu_seconds,
    fleet_delta,
    free_port,
    http_get,
    machine_info,
    markdown_table,
    median,
    mem_kib,
    rnd,
    sleep_sampling,
    stop_process,
    system_jiffies,
    write_result,
)
from fleet import expected_success_ratio

KEYS = (
    "sites",
    "interval_s",
    "window_s",
    "probes",
    "expected_probes",
    "exporter_cpu_ms_per_probe",
    "prometheus_cpu_ms_per_probe",
    "exporter_peak_rss_mib",
    "prometheus_peak_rss_mib",
    "success_ratio",
    "truth_success_ratio",
    "fleet_cpu_ms_per_request",
)


def binaries() -> tuple[str, str]:
    exporter = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    prometheus = shutil.which("prometheus")
    if not exporter or not prometheus:
        raise BenchError(
            "needs prometheus and blackbox_exporter: "
            "apt-get install -y prometheus prometheus-blackbox-exporter"
        )
    return exporter, prometheus


def version(binary: str) -> str:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=20, check=False
    )
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def _dur(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{round(seconds * 1000)}ms"


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            http_get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"{url} did not answer in {timeout}s")


def prom_query(port: int, query: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    data = json.loads(http_get(url))
    result = data.get("data", {}).get("result", [])
    if not result:
        return None
    return float(result[0]["value"][1])


def measure(
    fleet: FleetProc,
    *,
    sites: int,
    interval: float,
    window: float,
    warmup: float | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    exporter_bin, prometheus_bin = binaries()
    probe_timeout = timeout if timeout is not None else min(5.0, interval / 2)
    work = Path(tempfile.mkdtemp(prefix="blackbox-bench-"))
    bb_port, prom_port = free_port(), free_port()
    (work / "blackbox.yml").write_text(
        "modules:\n"
        "  http_2xx:\n"
        "    prober: http\n"
        f"    timeout: {_dur(probe_timeout)}\n"
        "    http:\n"
        "      preferred_ip_protocol: ip4\n"
    )
    # The scrape timeout must exceed the module's (blackbox takes min(module, scrape - 0.5 s)).
    scrape_timeout = min(interval, probe_timeout + 1.0)
    targets = [fleet.site_url(i) for i in range(sites)]
    (work / "prometheus.yml").write_text(
        "global:\n"
        f"  scrape_interval: {_dur(interval)}\n"
        f"  scrape_timeout: {_dur(scrape_timeout)}\n"
        "scrape_configs:\n"
        "  - job_name: blackbox\n"
        "    metrics_path: /probe\n"
        "    params:\n"
        "      module: [http_2xx]\n"
        "    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
        "    relabel_configs:\n"
        "      - source_labels: [__address__]\n"
        "        target_label: __param_target\n"
        "      - source_labels: [__param_target]\n"
        "        target_label: instance\n"
        "      - target_label: __address__\n"
        f"        replacement: 127.0.0.1:{bb_port}\n"
    )
    log = (work / "processes.log").open("ab")
    exporter = subprocess.Popen(
        [
            exporter_bin,
            f"--config.file={work / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{bb_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=log,
    )
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{bb_port}/metrics", exporter)
        prometheus = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=log,
            cwd=str(work),
        )
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prometheus)
        samplers = [Sampler(exporter.pid), Sampler(prometheus.pid)]
        sleep_sampling(samplers, interval + 5.0 if warmup is None else warmup)
        f0 = fleet.stats()
        bb0, pr0, fl0 = (
            cpu_seconds(exporter.pid),
            cpu_seconds(prometheus.pid),
            cpu_seconds(fleet.pid),
        )
        t0, sys0 = time.monotonic(), system_jiffies()
        sleep_sampling(samplers, window)
        bb1, pr1, fl1 = (
            cpu_seconds(exporter.pid),
            cpu_seconds(prometheus.pid),
            cpu_seconds(fleet.pid),
        )
        t1, sys1 = time.monotonic(), system_jiffies()
        f1 = fleet.stats()
        bb_mem, pr_mem = mem_kib(exporter.pid), mem_kib(prometheus.pid)
        seen = prom_query(prom_port, 'avg(probe_success{job="blackbox"})')
        seen_range = prom_query(
            prom_port, f'avg(avg_over_time(probe_success{{job="blackbox"}}[{int(window)}s]))'
        )
        scrape_p99 = prom_query(
            prom_port, 'max(prometheus_target_interval_length_seconds{quantile="0.99"})'
        )
    finally:
        if prometheus is not None:
            stop_process(prometheus, 30)
        stop_process(exporter)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    fw = fleet_delta(f1, f0)
    probes = fw["requests"]
    span = t1 - t0
    return {
        "sites": sites,
        "interval_s": interval,
        "window_s": round(span, 2),
        "probes": probes,
        "expected_probes": round(sites * span / interval, 1),
        "exporter_cpu_s": round(bb1 - bb0, 3),
        "exporter_cpu_ms_per_probe": rnd((bb1 - bb0) * 1000 / probes if probes else None, 4),
        "prometheus_cpu_s": round(pr1 - pr0, 3),
        "prometheus_cpu_ms_per_probe": rnd((pr1 - pr0) * 1000 / probes if probes else None, 4),
        "exporter_peak_rss_mib": round(bb_mem.get("VmHWM", 0) / 1024, 2),
        "prometheus_peak_rss_mib": round(pr_mem.get("VmHWM", 0) / 1024, 2),
        "success_ratio": rnd(seen_range if seen_range is not None else seen, 4),
        "success_ratio_last": rnd(seen, 4),
        "truth_success_ratio": rnd(expected_success_ratio(sites), 4),
        "fleet_success_served_ratio": rnd(fw["success_served"] / probes if probes else None, 4),
        "prometheus_scrape_interval_p99_s": rnd(scrape_p99, 4),
        "machine_busy_fraction": rnd(
            (sys1[0] - sys0[0]) / (sys1[1] - sys0[1]) if sys1[1] > sys0[1] else None, 3
        ),
        "fleet_cpu_s": round(fl1 - fl0, 3),
        "fleet_cpu_ms_per_request": rnd((fl1 - fl0) * 1000 / probes if probes else None, 4),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: median(r.get(k) for r in runs) for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=None, help="default: interval + 5 s")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=None, help="default 5 s, <= interval / 2")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    exporter_bin, prometheus_bin = binaries()
    machine = machine_info()
    machine["versions"]["blackbox_exporter"] = version(exporter_bin)
    machine["versions"]["prometheus"] = version(prometheus_bin)
    runs = []
    with FleetProc(args.sites) as fleet:
        for i in range(args.runs):
            run = measure(
                fleet,
                sites=args.sites,
                interval=args.interval,
                window=args.window,
                warmup=args.warmup,
                timeout=args.timeout,
            )
            runs.append(run)
            print(f"run {i + 1}/{args.runs}: {json.dumps(run)}", file=sys.stderr, flush=True)
    medians = summarize(runs)
    result: dict[str, Any] = {
        "kind": "blackbox",
        "machine": machine,
        "medians": medians,
        "runs": runs,
        "params": {k: v for k, v in vars(args).items() if k != "results"},
    }
    if not args.no_save:
        result["path"] = str(
            write_result(f"blackbox-{args.sites}x{args.interval:g}s", result, args.results)
        )
    cols = (
        "probes",
        "expected_probes",
        "exporter_cpu_ms_per_probe",
        "prometheus_cpu_ms_per_probe",
        "exporter_peak_rss_mib",
        "success_ratio",
        "truth_success_ratio",
    )
    rows = [[f"run {i + 1}", *[r.get(c) for c in cols]] for i, r in enumerate(runs)]
    rows.append(["**median**", *[medians.get(c) for c in cols]])
    print(
        f"blackbox_exporter ({machine['versions']['blackbox_exporter']}), {args.sites} sites "
        f"at {args.interval:g}s, {args.runs} runs of {args.window:g}s"
    )
    print(markdown_table(["", *cols], rows))
    if "path" in result:
        print(f"\nsaved {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
