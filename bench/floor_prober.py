"""The floor of sentinel's design: the least a Python + uvloop prober with fresh connections can
cost per probe at a daemon's rate, measured on the same fleet as sentinel and blackbox_exporter.

    .venv/bin/python bench/floor_prober.py --port P --sites 1000 --interval 10 \
        --warmup 15 --window 60

One process, no sentinel code: sites 0..N-1 of the fleet (`/t/<i>`), each probed every
`--interval` seconds, spread evenly, and every probe due within `--batch` seconds (50 ms, the
daemon's `batch_window`) started in one wake-up, as sentinel's scheduler does. A probe is what
any probe of this design must do and nothing else: `loop.create_connection` to the address,
write the prebuilt `GET` with `Connection: close`, feed what arrives to llhttp
(`httptools.HttpResponseParser`), take the connect / first byte / last byte times, close, and
count the status. No metrics, no state machine, no history, no body check, no TLS, no redirects,
no timeout but one `call_later` a probe (a probe must end).

After `--warmup` seconds it measures its own CPU (`time.process_time()`: user + system, all
threads) and the probes finished over `--window` seconds, then prints one JSON line and exits:
`{"probes": ..., "cpu_s": ..., "cpu_ms_per_probe": ..., "success_ratio": ..., "peak_rss_mib": ...}`.
Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import resource
import time
from typing import Any

import httptools


class _Probe(asyncio.Protocol):
    """One probe's connection: llhttp parses, three clock readings, the status kept. The
    readings are not reported: they are here because every real probe pays for them."""

    __slots__ = ("done", "first", "last", "parser", "started", "status", "transport")

    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.started = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.status = 0
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.first:
            self.first = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._end(-1)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.last = time.perf_counter()
        self._end(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(-2)

    def _end(self, status: int) -> None:
        if not self.done.done():
            self.done.set_result(status)
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.parser = None  # type: ignore[assignment]  # the cycle parser -> self


def _expire(done: asyncio.Future[int]) -> None:
    if not done.done():
        done.set_result(0)


class Floor:
    def __init__(self, port: int, sites: int, interval: float, batch: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.interval = interval
        self.batch = batch
        self.requests = [
            b"GET /t/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: floor\r\n"
            b"Accept: */*\r\nConnection: close\r\n\r\n" % (i, port)
            for i in range(sites)
        ]
        now = time.monotonic()
        self.heap = [(now + interval * i / sites, i) for i in range(sites)]
        heapq.heapify(self.heap)
        self.probes = 0
        self.ok = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def probe(self, i: int, timeout: float) -> None:
        done: asyncio.Future[int] = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, done)
        status = 0
        try:
            transport, _ = await self.loop.create_connection(
                lambda: _Probe(done), "127.0.0.1", self.port
            )
            transport.write(self.requests[i])
            status = await done
            transport.close()
        except OSError:
            status = -3
        finally:
            timer.cancel()
        self.probes += 1
        if 200 <= status < 400:
            self.ok += 1

    async def run(self, until: float, timeout: float) -> None:
        while True:
            now = time.monotonic()
            if now >= until:
                return
            while self.heap and self.heap[0][0] <= now:
                due, i = heapq.heappop(self.heap)
                heapq.heappush(self.heap, (due + self.interval, i))
                task = self.loop.create_task(self.probe(i, timeout))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(max(0.0, self.heap[0][0] + self.batch - time.monotonic()))


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    floor = Floor(args.port, args.sites, args.interval, args.batch)
    timeout = min(5.0, args.interval / 2)
    start = time.monotonic()
    await floor.run(start + args.warmup, timeout)
    cpu0, probes0, ok0 = time.process_time(), floor.probes, floor.ok
    await floor.run(start + args.warmup + args.window, timeout)
    cpu1, probes1, ok1 = time.process_time(), floor.probes, floor.ok
    for task in list(floor.tasks):
        task.cancel()
    probes = probes1 - probes0
    return {
        "probes": probes,
        "cpu_s": round(cpu1 - cpu0, 4),
        "cpu_ms_per_probe": round(1000 * (cpu1 - cpu0) / probes, 4) if probes else None,
        "success_ratio": round((ok1 - ok0) / probes, 4) if probes else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--batch", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--asyncio", action="store_true", help="the standard loop, not uvloop")
    args = p.parse_args()
    if args.sites < 1 or args.interval <= 0 or args.window <= 0:
        p.error("--sites must be at least 1, --interval and --window above 0")
    if args.asyncio:
        result = asyncio.run(_main(args))
    else:
        import uvloop

        result = uvloop.run(_main(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
