"""The soak test: does `sentinel run` leak? A long run with everything that could make it grow.

    .venv/bin/python bench/soak.py --minutes 12 --sites 600 --interval 2     # a smoke soak
    .venv/bin/python bench/soak.py --minutes 20 --sites 2000 --interval 2    # >= 1,000,000 probes

What runs, all on loopback:
- the fleet's `/t/<i>` sites (94 % good; 500s and hangs past the timeout fail for ever),
- flapping sites (`/flap/5/<k>`: 5 good, 5 bad, ...: DOWN after 3 failures, RECOVERED after one
  success, so an incident and two emails every 10 probes),
- recovering sites (`/cycle/60/90/<k>`: 90 s of 500s, then 60 s good; `remind_every = "1m"`, so
  DOWN, STILL DOWN reminders and RECOVERED),
- an SMTP server (aiosmtpd, in a thread of this script) in sentinel's `[email]` section
  (`security = "none"`), which goes away for `--smtp-down` s in every `--smtp-cycle` s (the outbox
  fills and retries with backoff, then drains),
- a config reload (SIGHUP) every `--reload-every` s, alternately adding `--churn` new sites (new
  names every time, so their series must really be removed) and removing them again,
- the history (`[history]`, on unless `--history off`: rollups written every minute, incidents of
  the flapping and recovering sites) and the status page `/` fetched every `--page-every` s
  (10 by default; 0: never), as a browser left open on it would; every fetch's time and size
  are recorded. `--seed-days N` first fills the store with the history a daemon that has run
  for N days would have (every site, at most the default retention: 35 days of hours, 400 of
  days, 10 incidents), so the page shows full bars and charts and the hourly pruning and the
  day's rollups work on full tables from the start, not on an empty store.

sentinel's VmRSS is sampled every `--sample-every` s and /metrics is scraped every 30 s (as a
Prometheus would). After the warm-up (`--warmup-minutes`, default a quarter of the run, at most
3 min), RSS is fit by linear least squares against time (MiB per hour) and against probes done
(MiB per million probes). The report (markdown + JSON) and the RSS-over-time graph (PNG) go to
`bench/results/<time>-soak/`. The goal wants >= 1,000,000 probes after warm-up: at 2 s that is
2,000 sites for ~17 min, which needs the probe path to cost <= ~0.9 ms so one core keeps up;
shorter runs report the extrapolated MiB per million probes and say so.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from benchlib import (
    RESULTS_DIR,
    DaemonUnavailableError,
    FleetProc,
    Sampler,
    SentinelProc,
    free_port,
    machine_info,
    mem_kib,
    open_fds,
    rnd,
    sentinel_config,
    site_block,
    utc_stamp,
)
from pngplot import plot_png

MIB = 1024.0


class Smtp:
    """aiosmtpd on a fixed loopback port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = 0
        self.lock = threading.Lock()
        self._controller: Any = None
        self.up = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.received += 1
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        if self._controller is None:
            self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
            self._controller.start()
            self.up = True

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            self.up = False


def build_config(
    *,
    listen_port: int,
    state_dir: Path,
    fleet_port: int,
    sites: int,
    interval: float,
    flap: int,
    cycle: int,
    churn_generation: int | None,
    churn: int,
    smtp_port: int,
    history: bool = True,
) -> str:
    base = f"http://127.0.0.1:{fleet_port}"
    blocks = [site_block(f"t{i}", f"{base}/t/{i}") for i in range(sites)]
    blocks += [site_block(f"flap{k}", f"{base}/flap/5/{k}") for k in range(flap)]
    blocks += [
        site_block(f"cycle{k}", f"{base}/cycle/60/90/{k}", remind_every="1m") for k in range(cycle)
    ]
    if churn_generation is not None:
        blocks += [
            site_block(f"extra{churn_generation}-{j}", f"{base}/t/{j}") for j in range(churn)
        ]
    history_section = "" if history else "\n[history]\nenabled = false\n"
    return history_section + sentinel_config(
        listen_port=listen_port,
        state_dir=state_dir,
        interval=interval,
        timeout=min(5.0, interval / 2),
        sites=blocks,
        email={
            "from": "sentinel <sentinel@bench.invalid>",
            "to": ["owner@bench.invalid"],
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "security": "none",
            "timeout": "5s",
        },
    )


def seed_history(state_dir: Path, names: list[str], *, days: int) -> None:
    """The store at `state_dir` with `days` of history for `names` (status_page.py's rows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from status_page import build  # (imports sentinel: only when seeding)

    from sentinel.store import Store

    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Store.open(state_dir) as store:
        build(store, names, time.time(), days=days)
    print(
        f"seeded {len(names)} sites with {days} days of history in "
        f"{time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )


def fetch_page(port: int, accept_encoding: str | None = None) -> int:
    """GET / (the status page), read to the end; returns its size in bytes as sent (with
    `accept_encoding`, e.g. "deflate" as a browser: the compressed size; it must decompress)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise http.client.HTTPException(f"status page: HTTP {response.status}")
        if response.getheader("Content-Encoding") == "deflate":
            try:
                zlib.decompress(body)
            except zlib.error as exc:
                raise http.client.HTTPException(f"status page: bad deflate ({exc})") from exc
        return len(body)
    finally:
        conn.close()


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares y = a*x + b -> (a, b)."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    a = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    return a, my - a * mx


def interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    if not xs:
        return None
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            frac = (x - xs[i - 1]) / (xs[i] - xs[i - 1]) if xs[i] > xs[i - 1] else 0.0
            return ys[i - 1] + frac * (ys[i] - ys[i - 1])
    return ys[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--sites", type=int, default=600, help="fleet /t/ sites")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--flap", type=int, default=4, help="flapping sites")
    p.add_argument("--cycle", type=int, default=4, help="down-then-recovering sites")
    p.add_argument("--churn", type=int, default=5, help="sites added/removed per reload")
    p.add_argument("--reload-every", type=float, default=60.0)
    p.add_argument("--smtp-cycle", type=float, default=300.0)
    p.add_argument("--smtp-down", type=float, default=120.0)
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--scrape-every", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=None)
    p.add_argument("--history", choices=("on", "off"), default="on")
    p.add_argument("--page-every", type=float, default=10.0, help="fetch / every N s; 0: never")
    p.add_argument(
        "--page-accept-encoding",
        default=None,
        help="Accept-Encoding of the page's fetches (deflate: as a browser; default: none)",
    )
    p.add_argument(
        "--seed-days", type=int, default=0, help="history already in the store (days; 0: none)"
    )
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for sentinel")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    warmup_min = (
        args.warmup_minutes if args.warmup_minutes is not None else min(3.0, args.minutes / 4)
    )
    env = dict(item.split("=", 1) for item in args.env)
    out_dir = args.results / f"{utc_stamp()}-soak"
    for n in range(2, 100):  # two soaks started in the same second keep both results
        try:
            out_dir.mkdir(parents=True)
            break
        except FileExistsError:
            out_dir = args.results / f"{utc_stamp()}-soak-{n}"
    else:
        raise SystemExit(f"soak: no free results directory under {args.results}")
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="sentinel-soak-"))
    smtp = Smtp(free_port())
    smtp.start()
    port = free_port()
    samples: list[dict[str, float]] = []  # t_min, rss_mib, anon_mib, cpu_s, fds
    scrapes: list[dict[str, Any]] = []  # t_min, probes, emails, pending, reload_ok, sites
    events: list[dict[str, Any]] = []
    reloads = reload_failures = 0
    with FleetProc(args.sites) as fleet:

        def config(generation: int | None) -> str:
            return build_config(
                listen_port=port,
                state_dir=work / "state",
                fleet_port=fleet.port,
                sites=args.sites,
                interval=args.interval,
                flap=args.flap,
                cycle=args.cycle,
                churn_generation=generation,
                churn=args.churn,
                smtp_port=smtp.port,
                history=args.history == "on",
            )

        if args.seed_days > 0:
            seed_history(
                work / "state",
                [f"t{i}" for i in range(args.sites)]
                + [f"flap{k}" for k in range(args.flap)]
                + [f"cycle{k}" for k in range(args.cycle)],
                days=args.seed_days,
            )
        daemon = SentinelProc(work, config(None), port, env=env)
        try:
            daemon.wait_healthy(60 + args.sites / 500)
        except DaemonUnavailableError as exc:
            smtp.stop()
            print(f"sentinel cannot start: {exc}", file=sys.stderr)
            return 3
        sampler = Sampler(daemon.pid)
        t_start = time.monotonic()
        end = t_start + args.minutes * 60
        next_sample = next_scrape = t_start
        next_page = t_start if args.page_every > 0 else float("inf")
        pages: list[dict[str, float]] = []  # t_min, seconds, bytes
        next_reload = t_start + args.reload_every
        generation = 0
        try:
            while time.monotonic() < end and daemon.alive():
                now = time.monotonic()
                t_min = (now - t_start) / 60
                # SMTP: up for (cycle - down) s, then down for `down` s, repeating.
                want_up = ((now - t_start) % args.smtp_cycle) < (args.smtp_cycle - args.smtp_down)
                if want_up != smtp.up:
                    (smtp.start if want_up else smtp.stop)()
                    events.append({"t_min": round(t_min, 2), "smtp": "up" if want_up else "down"})
                if now >= next_reload:
                    generation += 1
                    adding = generation % 2 == 1
                    daemon.config_path.write_text(config(generation if adding else None))
                    daemon.signal(signal.SIGHUP)
                    reloads += 1
                    events.append(
                        {"t_min": round(t_min, 2), "reload": "add" if adding else "remove"}
                    )
                    next_reload += args.reload_every
                if now >= next_sample:
                    with contextlib.suppress(OSError):
                        _, cpu, rss, _hwm = sampler.sample()
                        anon = 0
                        with contextlib.suppress(OSError):
                            anon = mem_kib(daemon.pid).get("RssAnon", 0)
                        samples.append(
                            {
                                "t_min": round(t_min, 4),
                                "rss_mib": rss / MIB,
                                "anon_mib": anon / MIB,
                                "cpu_s": cpu,
                                "fds": open_fds(daemon.pid),
                            }
                        )
                    next_sample += args.sample_every
                if now >= next_page:
                    t_page = time.monotonic()
                    try:
                        size = fetch_page(port, args.page_accept_encoding)
                        pages.append(
                            {
                                "t_min": round(t_min, 4),
                                "seconds": round(time.monotonic() - t_page, 4),
                                "bytes": size,
                            }
                        )
                    except (OSError, http.client.HTTPException) as exc:
                        events.append({"t_min": round(t_min, 2), "page_error": str(exc)})
                    next_page += args.page_every
                if now >= next_scrape:
                    try:
                        sc = daemon.scrape()
                        scrapes.append(
                            {
                                "t_min": round(t_min, 4),
                                "probes": sc.probes_total,
                                "emails": sum(sc.emails.values()),
                                "pending": sc.singles.get("sentinel_outbox_pending"),
                                "email_failures": sc.singles.get("sentinel_email_failures_total"),
                                "reload_ok": sc.singles.get(
                                    "sentinel_config_last_reload_successful"
                                ),
                                "sites": sc.singles.get("sentinel_sites"),
                                "scrape_mib": round(sc.scrape_bytes / 2**20, 3),
                            }
                        )
                        if sc.singles.get("sentinel_config_last_reload_successful") == 0:
                            reload_failures += 1
                    except (OSError, http.client.HTTPException) as exc:  # e.g. a cut-off body
                        events.append({"t_min": round(t_min, 2), "scrape_error": str(exc)})
                    next_scrape += args.scrape_every
                time.sleep(
                    max(
                        0.05,
                        min(next_sample, next_scrape, next_reload, next_page, end)
                        - time.monotonic(),
                    )
                )
            died = not daemon.alive()
            final = daemon.scrape() if not died else None
            if final is not None:
                scrapes.append(
                    {
                        "t_min": round((time.monotonic() - t_start) / 60, 4),
                        "probes": final.probes_total,
                        "emails": sum(final.emails.values()),
                        "pending": final.singles.get("sentinel_outbox_pending"),
                        "sites": final.singles.get("sentinel_sites"),
                    }
                )
        finally:
            rc = daemon.stop(30)
            smtp.stop()
            log_tail = daemon.log_tail(40)
            shutil.rmtree(work, ignore_errors=True)

    # ---------------------------------------------------------------- analysis
    after = [s for s in samples if s["t_min"] >= warmup_min]
    fit_time = linear_fit([(s["t_min"] / 60, s["rss_mib"]) for s in after])  # MiB per hour
    sx = [float(s["t_min"]) for s in scrapes]
    sp = [float(s["probes"]) for s in scrapes]
    probe_points = []
    for s in after:
        probes = interpolate(s["t_min"], sx, sp)
        if probes is not None:
            probe_points.append((probes / 1e6, s["rss_mib"]))
    fit_probes = linear_fit(probe_points)  # MiB per million probes
    probes_after = (probe_points[-1][0] - probe_points[0][0]) * 1e6 if probe_points else 0.0
    hours_after = (after[-1]["t_min"] - after[0]["t_min"]) / 60 if len(after) > 1 else 0.0
    mib_per_hour = fit_time[0] if fit_time else None
    mib_per_mprobe = fit_probes[0] if fit_probes else None

    def med(rows: list[dict[str, float]], key: str) -> float | None:
        vals = sorted(r[key] for r in rows)
        return vals[len(vals) // 2] if vals else None

    first5, last5 = after[:5], after[-5:]
    start_rss, end_rss = med(first5, "rss_mib"), med(last5, "rss_mib")
    summary = {
        "minutes": args.minutes,
        "warmup_minutes": warmup_min,
        "sites_total": args.sites + args.flap + args.cycle,
        "interval_s": args.interval,
        "probes_total": sp[-1] if sp else None,
        "probes_after_warmup": round(probes_after),
        "rss_after_warmup_mib": rnd(start_rss, 2),
        "rss_end_mib": rnd(end_rss, 2),
        "rss_growth_observed_mib": rnd(end_rss - start_rss if start_rss and end_rss else None, 3),
        "peak_rss_mib": rnd(max((s["rss_mib"] for s in samples), default=0.0), 2),
        "growth_mib_per_hour": rnd(mib_per_hour, 3),
        "growth_mib_per_million_probes": rnd(mib_per_mprobe, 3),
        "fit_growth_over_window_mib": rnd(mib_per_hour * hours_after if mib_per_hour else None, 3),
        "fds_start": after[0]["fds"] if after else None,
        "fds_end": after[-1]["fds"] if after else None,
        "cpu_core_fraction": rnd(
            (samples[-1]["cpu_s"] - samples[0]["cpu_s"])
            / ((samples[-1]["t_min"] - samples[0]["t_min"]) * 60),
            3,
        )
        if len(samples) > 1
        else None,
        "reloads": reloads,
        "reload_failures_seen": reload_failures,
        "emails_sent": scrapes[-1].get("emails") if scrapes else None,
        "smtp_received": smtp.received,
        "outbox_pending_end": scrapes[-1].get("pending") if scrapes else None,
        "history": args.history,
        "page_fetches": len(pages),
        "page_seconds_median": rnd(
            sorted(p["seconds"] for p in pages)[len(pages) // 2] if pages else None, 4
        ),
        "page_seconds_max": rnd(max((p["seconds"] for p in pages), default=None), 4),
        "page_bytes_last": pages[-1]["bytes"] if pages else None,
        "daemon_died": died,
        "exit_code": rc,
    }
    graph = out_dir / "rss.png"
    plot_png(
        graph,
        [(s["t_min"], s["rss_mib"]) for s in samples],
        title=f"SENTINEL RSS, {summary['sites_total']} SITES AT {args.interval:g}S, "
        f"{summary['probes_total'] or 0:,.0f} PROBES",
        x_label="MINUTES",
        y_label="MIB",
        marks=[warmup_min],
        fit=(mib_per_hour / 60, fit_time[1]) if fit_time and mib_per_hour is not None else None,
        fit_from=warmup_min,
    )
    result = {
        "kind": "soak",
        "machine": machine,
        "summary": summary,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "samples": samples,
        "scrapes": scrapes,
        "pages": pages,
        "events": events,
        "log_tail": log_tail.splitlines(),
    }
    (out_dir / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Soak: {args.minutes:g} min, {summary['sites_total']} sites at {args.interval:g}s",
        "",
        f"Machine: {machine['nproc']} x {machine['cpu_model']}, Python "
        f"{machine['versions']['python']}, aiohttp {machine['versions']['aiohttp']}, sentinel "
        f"{machine['versions']['sentinel']} ({machine['sentinel_commit']}).",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in summary.items()],
        "",
        "Green dashed line: end of warm-up; red: the least-squares fit after it.",
        "",
        "![RSS over time](rss.png)",
        "",
    ]
    if probes_after < 1e6:
        lines.append(
            f"Note: {probes_after:,.0f} probes after warm-up, fewer than the 1,000,000 "
            "the goal wants; MiB per million probes is an extrapolation of the fit."
        )
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"saved {out_dir}")
    return 0 if not died else 1


if __name__ == "__main__":
    sys.exit(main())
