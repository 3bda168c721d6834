"""How long the status page takes at many sites, and the longest the event loop is held.

Builds a store with `--sites` sites of full history (35 days hourly, 400 days daily, 10
incidents each), then serves `/` through sentinel's own web server on loopback, as the daemon
does, and fetches it with a client on the same loop. A loop-lag monitor (a task waking every 2 ms,
recording how late it woke) gives the longest the loop was held, in wall time; the page's own
cost is timed around each piece the server renders (render + encode) in thread CPU time, which
on a machine shared with other busy processes is the figure that says what the loop would be
held on a machine to itself. The process CPU (client and monitor included) is reported too.

Scenarios, each `--runs` times (medians reported):
- cold: a fresh reader, the first request after a start without the warm-up (the history read
  from SQLite, a few sites at a time): what a request pays when it comes before the warm-up;
- warmup: what the daemon's page task does right after a start (`StatusPages.warm`: every
  site's figures read, the blocks rendered), slice by slice, then `gc.freeze()` as the daemon
  does (`--no-freeze`: not); first: the first request after it;
- steady: polled every 10 s of simulated time: between two requests every site gets a probe
  (the recorder's pending deltas change) and every 6th request follows a flush;
- hour_warm: the page task's re-render after the hour changed (`--no-warm-hour`: not done);
  hour: the first request after the hour changed (every site's 24-hour chart moves on).
- flip: steady polls, with one site going DOWN or coming back between two of them (DOWN sites
  are listed first: the site moves above all the others).

`--down 10`: 10 % of the sites DOWN from the start, their incidents open (their current incident
grows: ten minutes old at the start, minutes later in `steady`).

`--accept-encoding deflate` (or `gzip`) sends that header with every request of `/` (a browser's
`gzip, deflate, br` takes deflate too): the answer is then the zlib stream of the page made of
the blocks kept compressed; without it, the page as it is (the blocks inflated per request).
`bytes` is what went over the wire.

    .venv/bin/python bench/status_page.py [--sites 1000] [--runs 5] [--json] [--no-freeze]
        [--accept-encoding deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sentinel.config import SiteConfig
from sentinel.history import db
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.rollup import DAY_MS, HOUR_MS, Rollup, encode_hist
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.probes.result import ProbeResult
from sentinel.store import Store
from sentinel.web import Reply, start_server
from sentinel.webviews.pages import StatusPages


def build(store: Store, names: list[str], now: float, *, days: int = 400) -> None:
    """Rows inserted directly (the recorder's merge path is measured by history_size.py), from
    a few dozen random templates so building 1.2M rows takes seconds, not minutes. The current
    hour and day have rows too, as if the daemon had been running all along. `days`: how long
    it has run (the default retention keeps 35 days of hours and 400 of days at most)."""
    rng = random.Random(1)
    hour = int(now * 1000) // HOUR_MS
    day = int(now * 1000) // DAY_MS

    def template(size_ms: int, probes: int) -> tuple[object, ...]:
        r = Rollup(covered_ms=size_ms - rng.randrange(60_000))  # as real: never exact
        for _ in range(probes):
            r.add_probe(True, int(rng.lognormvariate(0, 0.3) * 80_000))
        if rng.random() < 0.05:
            r.down_ms = size_ms // 50
        return (r.probes, r.failures, r.covered_ms, r.down_ms, r.lat_max_us, encode_hist(r.hist))

    hours_t = [template(HOUR_MS, 20) for _ in range(64)]
    days_t = [template(DAY_MS, 40) for _ in range(64)]
    with store.write() as conn:
        conn.executemany("INSERT INTO history_site (name) VALUES (?)", [(n,) for n in names])
        ids = dict(conn.execute("SELECT name, id FROM history_site").fetchall())
        conn.executemany(
            "INSERT INTO history_hour (site, period, probes, failures, covered_ms, down_ms,"
            " lat_max_us, hist) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (ids[n], h, *hours_t[rng.randrange(64)])
                for n in names
                for h in range(hour - min(days, 35) * 24, hour + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO history_day (site, period, probes, failures, covered_ms, down_ms,"
            " lat_max_us, hist) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (ids[n], d, *days_t[rng.randrange(64)])
                for n in names
                for d in range(day - min(days, 400), day + 1)
            ],
        )
    for name in names:
        for k in range(min(10, days // 3)):
            start = int((now - (k + 1) * 3 * 86400) * 1000)
            db.incident_opened(store, name, start, "timeout", "connect timed out after 10s")
            db.incident_updated(store, name, start, alerts=2, ended_ms=start + 300_000)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class LoopLag:
    """The longest the event loop was held: a task asks to wake every TICK seconds and records
    how late it woke (the usual loop-lag monitor). Wall-clock: on a loaded machine it includes
    the time the OS gave the CPU to other processes."""

    TICK = 0.002

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.longest = max(self.longest, time.perf_counter() - t - self.TICK)

    def start(self) -> None:
        self.longest = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.longest


class Timed:
    """Wraps the index route: times every piece the server renders and encodes, in wall time
    and in this thread's CPU time (what the piece costs on a machine to itself)."""

    def __init__(self, route: Callable[[], Reply]) -> None:
        self.route = route
        self.pieces: list[float] = []
        self.cpu: list[float] = []

    def __call__(self) -> Reply:
        t, c = time.perf_counter(), time.thread_time()
        reply = self.route()
        self.pieces.append(time.perf_counter() - t)
        self.cpu.append(time.thread_time() - c)
        inner = reply.chunks
        if inner is None:  # answered in one go
            return reply

        def timed(make: Callable[[], Iterable[bytes]]) -> Callable[[], Iterator[bytes]]:
            def chunks() -> Iterator[bytes]:
                it = iter(make())
                while True:
                    t0, c0 = time.perf_counter(), time.thread_time()
                    try:
                        piece = next(it)
                    except StopIteration:
                        return
                    self.pieces.append(time.perf_counter() - t0)
                    self.cpu.append(time.thread_time() - c0)
                    yield piece

            return chunks

        deflated = getattr(reply, "deflated", None)  # (the code before the compressed page)
        if deflated is None:
            return Reply(reply.status, reply.content_type, chunks=timed(inner))
        gzipped = getattr(reply, "gzipped", None)  # (the code before gzip)
        if gzipped is None:
            return Reply(
                reply.status, reply.content_type, chunks=timed(inner), deflated=timed(deflated)
            )
        return Reply(
            reply.status,
            reply.content_type,
            chunks=timed(inner),
            deflated=timed(deflated),
            gzipped=timed(gzipped),
        )


ACCEPT_ENCODING: list[str] = []  # `--accept-encoding`: sent with every request of /


async def fetch(port: int, path: str = "/") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"Accept-Encoding: {v}\r\n" for v in ACCEPT_ENCODING if path == "/")
    writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (path.encode(), extra.encode()))
    size = 0
    while True:
        data = await reader.read(1 << 20)
        if not data:
            break
        size += len(data)
    writer.close()
    return size


def probe_all(
    recorder: HistoryRecorder,
    sites: dict[str, SiteConfig],
    states: dict[str, SiteState],
    now: float,
    rng: random.Random,
) -> None:
    for name, site in sites.items():
        result = ProbeResult(
            ok=True, reason="ok", message="", started_at=now, total=rng.uniform(0.05, 0.12)
        )
        recorder.record(site, result, states[name], states[name], (), now)


async def measure(port: int, timed: Timed, lag: LoopLag, path: str = "/") -> dict[str, float]:
    timed.pieces, timed.cpu = [], []
    lag.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    size = await fetch(port, path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    longest = await lag.stop()
    return {
        "wall_ms": wall * 1000,
        "page_cpu_ms": sum(timed.cpu) * 1000,
        "page_wall_ms": sum(timed.pieces) * 1000,
        "process_cpu_ms": cpu * 1000,
        "longest_piece_cpu_ms": max(timed.cpu) * 1000,
        "longest_piece_wall_ms": max(timed.pieces) * 1000,
        "longest_loop_lag_ms": longest * 1000,
        "pieces": len(timed.pieces),
        "bytes": size,
    }


async def measure_warm(pages: StatusPages, lag: LoopLag) -> dict[str, float]:
    """`StatusPages.warm` (what the page task does in the background), slice by slice."""
    cpu: list[float] = []
    lag.start()
    t0 = time.perf_counter()
    steps = iter(pages.warm_steps())
    while True:
        c = time.thread_time()
        try:
            next(steps)
        except StopIteration:
            cpu.append(time.thread_time() - c)
            break
        cpu.append(time.thread_time() - c)
        await asyncio.sleep(0)  # (as StatusPages.warm: twice)
        await asyncio.sleep(0)
    wall = time.perf_counter() - t0
    longest = await lag.stop()
    return {
        "wall_ms": wall * 1000,
        "page_cpu_ms": sum(cpu) * 1000,
        "longest_piece_cpu_ms": max(cpu) * 1000,
        "longest_loop_lag_ms": longest * 1000,
        "pieces": len(cpu),
    }


def median_of(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    return {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]} | {
        "max_longest_piece_cpu_ms": round(max(r["longest_piece_cpu_ms"] for r in rows), 2),
        "max_longest_loop_lag_ms": round(max(r["longest_loop_lag_ms"] for r in rows), 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # Mid-hour, so `steady` polls do not cross an hour; `hour` moves on to the next one.
    real = time.time()
    start = (int(real) // 3600) * 3600 + 1200.0
    names = [f"site-{i:05d}.example.org" for i in range(args.sites)]
    sites = {n: SiteConfig(name=n, kind="http", target=f"https://{n}/") for n in names}
    ok = ResultSummary(at=start - 5, ok=True, status=200, total=0.08, reason="ok", message="")
    states = {
        n: SiteState(site=n, status=Status.UP, since=start - 86400, recent=(ok,)) for n in names
    }
    # `--down`: every so many sites DOWN since 10 minutes before the start, their incident open
    down_names = names[:: max(1, round(100 / args.down))] if args.down > 0 else []
    failed = ResultSummary(
        at=start - 5, ok=False, status=None, total=10.0, reason="timeout", message="timed out"
    )
    for n in down_names:
        states[n] = SiteState(
            site=n,
            status=Status.DOWN,
            since=start - 600,
            recent=(failed,),
            incident_started=start - 600,
        )
    rng = random.Random(2)
    result: dict[str, Any] = {
        "down_sites": len(down_names),
        "sites": args.sites,
        "runs": args.runs,
        "freeze": args.freeze,
        "warm_hour": args.warm_hour,
    }
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        t = time.perf_counter()
        build(store, names, start)
        for n in down_names:
            db.incident_opened(store, n, int((start - 600) * 1000), "timeout", "timed out")
        result["build_s"] = round(time.perf_counter() - t, 1)
        clock = Clock(start)
        lag = LoopLag()

        def api_route(pages: StatusPages) -> Callable[[], Reply]:
            def api_status() -> Reply:  # (as web.make_routes's, with the sites alone)
                entries: list[dict[str, Any]] = [{"site": n} for n in names]
                pages.annotate(entries)
                return Reply(200, "application/json", json.dumps(entries).encode())

            return api_status

        def serve() -> tuple[StatusPages, HistoryRecorder, Timed]:
            recorder = HistoryRecorder(store, HistoryConfig(), lambda exc: None, clock=clock)
            reader = HistoryReader(store, recorder, clock=clock)
            pages = StatusPages(
                sites=lambda: sites,
                states=lambda: states,
                settings=lambda: StatusPageConfig(title="Bench"),
                recorder=recorder,
                reader=reader,
                clock=clock,
            )
            return pages, recorder, Timed(pages.index)

        holder: dict[str, Timed] = {}

        def index() -> Reply:
            return holder["timed"]()

        def api() -> Reply:
            return holder["api"]()

        server, port = await start_server({"/": index, "/api/status": api}, "127.0.0.1:0")
        try:
            # /api/status's first call after a start (no warm-up yet), as the daemon serves it
            # (its figures read in slices first) and as before (read in one go: "unsliced")
            for name, sliced in (("api_first", True), ("api_first_unsliced", False)):
                rows = []
                for _ in range(args.runs):
                    clock.t = start
                    pages, recorder, _ = serve()
                    route = api_route(pages)
                    if sliced:
                        route = pages.routes({"/api/status": route})["/api/status"]
                    holder["api"] = api_timed = Timed(route)
                    probe_all(recorder, sites, states, clock.t, rng)
                    rows.append(await measure(port, api_timed, lag, "/api/status"))
                result[name] = median_of(rows)
            cold = []
            for _ in range(args.runs):
                clock.t = start
                _, recorder, timed = serve()
                holder["timed"] = timed
                probe_all(recorder, sites, states, clock.t, rng)
                cold.append(await measure(port, timed, lag))
            result["cold"] = median_of(cold)
            # warm-up: what the daemon's page task does after a start (StatusPages.keep_warm),
            # then the first request after it
            warmups, first = [], []
            for _ in range(args.runs):
                gc.unfreeze()
                gc.collect()  # (the previous runs' servers: not measured)
                clock.t = start
                pages, recorder, timed = serve()
                holder["timed"] = timed
                probe_all(recorder, sites, states, clock.t, rng)
                warmups.append(await measure_warm(pages, lag))
                if args.freeze:
                    gc.collect(1)
                    gc.freeze()
                first.append(await measure(port, timed, lag))
            result["warmup"] = median_of(warmups)
            result["first"] = median_of(first)
            # steady: the last server of the warm-up runs, polled every 10 s
            steady = []
            prof = cProfile.Profile() if args.profile else None
            if prof is not None:
                prof.enable()
            for i in range(args.runs * 6):
                clock.t += 10
                probe_all(recorder, sites, states, clock.t, rng)
                if i % 6 == 5:
                    await recorder.flush()
                steady.append(await measure(port, timed, lag))
            result["steady"] = median_of(steady)
            # flip: the same polls, but between two of them one site goes DOWN or comes back
            # (the last by name: DOWN sites are listed first, so it moves above all others)
            flip = []
            last = names[-1]
            for _ in range(args.runs * 2):
                clock.t += 10
                was = states[last]
                states[last] = replace(
                    was, status=Status.UP if was.status == Status.DOWN else Status.DOWN
                )
                probe_all(recorder, sites, states, clock.t, rng)
                flip.append(await measure(port, timed, lag))
            states[last] = replace(states[last], status=Status.UP)
            result["flip"] = median_of(flip)
            if prof is not None:
                prof.disable()
                pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            hour, hour_warm = [], []
            for _ in range(args.runs):
                clock.t = (int(clock.t) // 3600 + 1) * 3600 + 30
                probe_all(recorder, sites, states, clock.t, rng)
                await recorder.flush()
                if args.warm_hour:  # the page task's re-render a few seconds after the hour
                    hour_warm.append(await measure_warm(pages, lag))
                hour.append(await measure(port, timed, lag))
                clock.t += 10
                probe_all(recorder, sites, states, clock.t, rng)
                await measure(port, timed, lag)
            if hour_warm:
                result["hour_warm"] = median_of(hour_warm)
            result["hour"] = median_of(hour)
        finally:
            await server.close()
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--down", type=float, default=0, help="percent of the sites DOWN, their incident open"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() after the warm-up, as the daemon does (--no-freeze: before)",
    )
    parser.add_argument(
        "--warm-hour",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="re-render in the background after the hour changes, as the daemon does",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile of the steady requests, on stderr"
    )
    parser.add_argument(
        "--accept-encoding", default=None, help="the Accept-Encoding sent with each request of /"
    )
    args = parser.parse_args()
    if args.accept_encoding is not None:
        ACCEPT_ENCODING.append(args.accept_encoding)
    result = asyncio.run(run(args))
    result["accept_encoding"] = args.accept_encoding
    print(json.dumps(result, indent=1) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
