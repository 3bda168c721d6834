"""A target fleet for the benchmarks: one cheap loopback HTTP/1.1 server serving N sites.

    python bench/fleet.py --port 0 --sites 1000

Paths (every response is `Connection: close`, and the server closes first, so the prober's side
never piles up TIME_WAIT sockets):

- `/t/<i>`: by `i % 100` (`KINDS` below): 0-79 fast `200 ok`; 80-89 `200` with a 16 KiB body;
  90-94 `500`; 95-98 `200` after 300 ms; 99 hangs (no answer; closed after `--hang` s, default 20).
- `/d/<ms>[/...]`: `200 ok` after `<ms>` ms (the latency-accuracy figure; the server's own timer
  overshoot is measured and reported in the stats). With `--stamp-requests` the delay runs from
  the request's arrival as the kernel stamped it (SO_TIMESTAMPNS, the same peek sentinel uses),
  not from when this process got to it, so the fleet's own wake-up lateness is not counted.
- `/flap/<k>/<id>`: alternates every `k` requests to this path: k times `200`, k times `500`, ...
- `/cycle/<up>/<down>/<id>`: `200` for `up` seconds, then `500` for `down` seconds, repeating
  (from the fleet's start).
- `/stats`: JSON counters (not counted as a request).
- `/record/start`, `/record/stop/<interval>`: record the arrival time of every `/t/` request in
  between; stop answers the schedule jitter seen from the target side (`Fleet.arrival_lag`).

So the correct success ratio of `/t/0 .. /t/<n-1>` is known in advance: exactly 94 % when n is a
multiple of 100 (`expected_success_ratio(n)` otherwise). The first stdout line is
`{"event": "listening", "port": P}`; SIGTERM or SIGINT prints the final stats as one JSON line and
exits. The stats include the server's own CPU seconds, so a benchmark can show what the fleet cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import sys
import time
from collections import Counter
from typing import Any

from sentinel.probes.rxstamp import RxStamp

# i % 100 -> kind. Order matters only for small N (the first sites are all "fast").
KINDS: tuple[tuple[int, str], ...] = (
    (80, "fast"),  # 0..79
    (90, "big"),  # 80..89
    (95, "error"),  # 90..94
    (99, "slow"),  # 95..98
    (100, "hang"),  # 99
)
SUCCESS_KINDS = frozenset({"fast", "big", "slow"})
BIG_BODY = 16 * 1024
SLOW_DELAY = 0.3
MAX_HEADER = 16 * 1024
OVERSHOOT_KEEP = 200_000  # /d/ timer overshoot samples kept (bounded)
MAX_RECORDED = 3_000_000  # /t/ arrival times kept while recording (bounded)


def kind_of(i: int) -> str:
    r = i % 100
    for bound, kind in KINDS:
        if r < bound:
            return kind
    raise AssertionError(r)


def expected_success_ratio(n: int) -> float:
    """The fraction of /t/0 .. /t/<n-1> that answers a probe with timeout < 20 s successfully."""
    if n <= 0:
        return 0.0
    return sum(1 for i in range(n) if kind_of(i) in SUCCESS_KINDS) / n


def _response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


OK = _response(200, b"ok\n")
BIG = _response(200, (b"0123456789abcdef" * (BIG_BODY // 16 - 1)) + b"ok-big-body-end\n")
ERROR = _response(500, b"error\n")
NOT_FOUND = _response(404, b"not found\n")


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Fleet:
    def __init__(self, sites: int, hang: float, stamp_requests: bool = False) -> None:
        self.sites = sites
        self.hang = hang
        self.stamp_requests = stamp_requests
        self.started = time.monotonic()
        self.requests = 0
        self.by_kind: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.open = 0
        self.max_open = 0
        self.flap_counts: dict[bytes, int] = {}
        self.overshoot: list[float] = []
        self._overshoot_i = 0
        # /d/ requests as the target saw them: (site name, accepted at (wall clock), seconds
        # from accept to the response written), for bench/latency_accuracy.py to take apart
        # sentinel's measurement from the target's own lateness. Bounded; read via /delay-log.
        self.delay_log: list[tuple[str, float, float]] = []
        self.recording = False
        self.arrivals: dict[int, list[float]] = {}
        self.recorded = 0

    # ------------------------------------------------------------------ routing

    def route(self, proto: FleetProtocol, path: bytes) -> None:
        if path.startswith(b"/t/"):
            try:
                i = int(path[3:].split(b"/", 1)[0])
            except ValueError:
                self._answer(proto, "other", 404, NOT_FOUND)
                return
            kind = kind_of(i)
            if self.recording and self.recorded < MAX_RECORDED:
                self.arrivals.setdefault(i, []).append(time.monotonic())
                self.recorded += 1
            if kind == "fast":
                self._answer(proto, kind, 200, OK)
            elif kind == "big":
                self._answer(proto, kind, 200, BIG)
            elif kind == "error":
                self._answer(proto, kind, 500, ERROR)
            elif kind == "slow":
                self._count(kind)
                proto.later(SLOW_DELAY, lambda: self._send(proto, 200, OK))
            else:  # hang: say nothing; close long after any sane probe timeout
                self._count(kind)
                proto.later(self.hang, proto.close)
        elif path.startswith(b"/d/"):
            try:
                ms = int(path[3:].split(b"/", 1)[0])
            except ValueError:
                self._answer(proto, "other", 404, NOT_FOUND)
                return
            self._count("delay")
            arrived = proto.arrived()
            due = arrived + ms / 1000

            name = path[3:].split(b"/", 1)[1].decode("latin-1") if path.count(b"/") > 2 else ""

            def send_delayed() -> None:
                now = time.perf_counter()
                self._record_overshoot(now - due)
                self._send(proto, 200, OK)
                if len(self.delay_log) < OVERSHOOT_KEEP:
                    self.delay_log.append((name, proto.accepted_wall, now - arrived))

            proto.later(max(0.0, due - time.perf_counter()), send_delayed)
        elif path.startswith(b"/flap/"):
            parts = path.split(b"/")
            try:
                k = max(1, int(parts[2]))
            except (IndexError, ValueError):
                self._answer(proto, "other", 404, NOT_FOUND)
                return
            count = self.flap_counts.get(path, 0)
            self.flap_counts[path] = count + 1
            if (count // k) % 2 == 0:
                self._answer(proto, "flap_ok", 200, OK)
            else:
                self._answer(proto, "flap_fail", 500, ERROR)
        elif path.startswith(b"/cycle/"):
            parts = path.split(b"/")
            try:
                up, down = float(parts[2]), float(parts[3])
            except (IndexError, ValueError):
                self._answer(proto, "other", 404, NOT_FOUND)
                return
            phase = (time.monotonic() - self.started) % (up + down)
            if phase < up:
                self._answer(proto, "cycle_ok", 200, OK)
            else:
                self._answer(proto, "cycle_fail", 500, ERROR)
        elif path == b"/record/start":
            self.arrivals, self.recorded, self.recording = {}, 0, True
            proto.send(_response(200, b"recording\n"))
        elif path.startswith(b"/record/stop/"):
            self.recording = False
            try:
                interval = float(path.rsplit(b"/", 1)[1])
            except ValueError:
                interval = 0.0
            body = json.dumps(self.arrival_lag(interval)).encode() + b"\n"
            self.arrivals, self.recorded = {}, 0
            proto.send(_response(200, body))
        elif path == b"/delay-log":
            body = json.dumps(self.delay_log).encode() + b"\n"
            self.delay_log = []
            proto.send(_response(200, body))
        elif path == b"/stats":
            body = json.dumps(self.stats()).encode() + b"\n"
            proto.send(_response(200, body))
        else:
            self._answer(proto, "other", 404, NOT_FOUND)

    def _count(self, kind: str) -> None:
        self.requests += 1
        self.by_kind[kind] += 1

    def _answer(self, proto: FleetProtocol, kind: str, status: int, data: bytes) -> None:
        self._count(kind)
        self._send(proto, status, data)

    def _send(self, proto: FleetProtocol, status: int, data: bytes) -> None:
        self.by_status[status] += 1
        proto.send(data)

    def _record_overshoot(self, value: float) -> None:
        if len(self.overshoot) < OVERSHOOT_KEEP:
            self.overshoot.append(value)
        else:  # a ring: the most recent samples
            self.overshoot[self._overshoot_i] = value
            self._overshoot_i = (self._overshoot_i + 1) % OVERSHOOT_KEEP

    # ------------------------------------------------------------------ reporting

    def arrival_lag(self, interval: float) -> dict[str, Any]:
        """Schedule jitter seen from the target side, for a prober that probes every site every
        `interval` s on a fixed grid (phase_i + k * interval). A site's arrivals t_k are put on
        the grid (k = round((t - t_first) / interval)); its lateness is t - k * interval minus the
        smallest such value of the site (its least late arrival: the phase estimate). So it is
        lateness relative to the site's best probe in the recording, and it needs no scrape of
        the prober. Sites with fewer than 2 arrivals are left out."""
        lags: list[float] = []
        sites = 0
        for times in self.arrivals.values():
            if len(times) < 2 or interval <= 0:
                continue
            sites += 1
            first = times[0]
            offsets = [t - round((t - first) / interval) * interval for t in times]
            best = min(offsets)
            ordered = sorted(offsets)
            lags.extend(o - best for o in ordered[1:])  # the reference itself is left out
        lags.sort()
        return {
            "interval_s": interval,
            "sites": sites,
            "arrivals": self.recorded,
            "lags": len(lags),
            "p50_s": _quantile(lags, 0.5),
            "p99_s": _quantile(lags, 0.99),
            "p999_s": _quantile(lags, 0.999),
            "max_s": lags[-1] if lags else None,
            "over_1s": sum(1 for v in lags if v > 1.0),
        }

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        ordered = sorted(self.overshoot)
        p50, p99 = _quantile(ordered, 0.5), _quantile(ordered, 0.99)
        return {
            "event": "stats",
            "sites": self.sites,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": self.requests,
            "by_kind": dict(self.by_kind),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "success_served": sum(self.by_kind[k] for k in SUCCESS_KINDS),
            "open_connections": self.open,
            "max_open_connections": self.max_open,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
            "max_rss_kib": usage.ru_maxrss,
            "delay_overshoot_ms": {
                "count": len(ordered),
                "p50": None if p50 is None else round(p50 * 1000, 4),
                "p99": None if p99 is None else round(p99 * 1000, 4),
                "max": round(ordered[-1] * 1000, 4) if ordered else None,
            },
            "expected_success_ratio": expected_success_ratio(self.sites),
        }


class FleetProtocol(asyncio.Protocol):
    """One connection: read the request head, route it once, answer, close."""

    __slots__ = (
        "accepted",
        "accepted_wall",
        "buf",
        "fleet",
        "handle",
        "routed",
        "stamp",
        "transport",
    )

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.buf = b""
        self.routed = False
        self.transport: asyncio.Transport | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.accepted = 0.0
        self.accepted_wall = 0.0
        self.stamp: RxStamp | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.accepted = time.perf_counter()
        self.accepted_wall = time.time()
        if self.fleet.stamp_requests:
            self.stamp = RxStamp()
            if not self.stamp.arm(asyncio.get_running_loop(), transport, lambda exc: None):
                self.stamp = None

    def arrived(self) -> float:
        """When the request's first byte arrived: the kernel's stamp, else when we accepted."""
        if self.stamp is not None and self.stamp.at is not None:
            return self.stamp.at
        return self.accepted
        self.fleet.open += 1
        self.fleet.max_open = max(self.fleet.max_open, self.fleet.open)

    def data_received(self, data: bytes) -> None:
        if self.routed:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEADER:
                self.close()
            return
        self.routed = True
        line = self.buf[: self.buf.find(b"\r\n")]
        self.buf = b""
        parts = line.split(b" ")
        path = parts[1] if len(parts) >= 2 else b"/"
        self.fleet.route(self, path.split(b"?", 1)[0])

    def later(self, delay: float, callback: Any) -> None:
        loop = asyncio.get_running_loop()
        self.handle = loop.call_later(delay, callback)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stamp is not None:
            self.stamp.disarm()
        self.fleet.open -= 1
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.transport = None


async def serve(host: str, port: int, sites: int, hang: float, stamp: bool = False) -> None:
    fleet = Fleet(sites, hang, stamp)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FleetProtocol(fleet), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "host": host, "port": bound}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(json.dumps(fleet.stats()), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--sites", type=int, default=1000, help="N, for the expected ratio")
    parser.add_argument("--hang", type=float, default=20.0, help="close hanging sites after s")
    parser.add_argument(
        "--stamp-requests",
        action="store_true",
        help="time /d/ delays from the kernel's receive stamp of the request",
    )
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the fleet serves loopback only")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.sites, args.hang, args.stamp_requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
