"""CPU per probe of the HTTP probers alone: HttpProber (aiohttp) vs LeanHttpProber, asyncio/uvloop.

    python bench/probe_cpu.py [--probes 3000] [--concurrency 50] [--runs 3] [--rate 300]
                              [--probers aiohttp,lean,bare,null] [--tls] [--json FILE]

A loopback server runs in a separate process (an asyncio protocol answering every request with
`HTTP/1.1 200 OK`, a small body, and closing, as the fleet does). Each measurement runs in a
fresh child process: it builds the prober, warms up, then runs `--probes` probes with
`--concurrency` workers (or, with `--rate`, evenly spaced like a daemon's schedule, which costs
more per probe: nothing is batched in one loop iteration) and reports `time.process_time()`
(user + system CPU of that process, all threads) divided by the probes. Configurations are
interleaved run by run so drift on the machine hits all of them alike; the medians and the
ratios to the first configuration are printed. The baselines: `bare` (connect, one GET, read
to EOF, nothing else: the floor on that loop) and `null` (the harness alone).

This measures the prober only, not the daemon's scheduling, metrics and state around it.
uvloop rows appear only when uvloop is importable. Every process started here is stopped by
its own PID. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve()
BODY = b"ok\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
PROBERS = ("aiohttp", "lean")
# Baselines, by --probers: "null", the harness alone (a probe that returns at once); "bare",
# the floor of a fresh-connection probe on this loop (connect, write one GET, read to EOF, no
# parsing, no timing, no checks), as in the PERF-NOTES table.
BASELINES = ("null", "bare")


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ the server (its own process)


class _Answer(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf and self.transport is not None:
            self.transport.write(RESPONSE)
            self.transport.close()  # the server closes first, like the fleet
            self.transport = None


async def _serve(cert_dir: str | None) -> None:
    ssl_context = None
    if cert_dir is not None:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(f"{cert_dir}/server.pem")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answer, "127.0.0.1", 0, backlog=1024, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()  # until terminated


# ------------------------------------------------------------------ one measurement (a child)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _NullProber:
    """The harness's own cost: a "probe" that returns a result at once."""

    async def __aenter__(self) -> _NullProber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def probe(self, site: Any) -> Any:
        from sentinel.probes.result import ProbeResult

        return ProbeResult(ok=True, reason="ok", message="", started_at=0.0, total=0.0)


class _BareProber(_NullProber):
    """The floor: one GET on a fresh connection, read to EOF, nothing else."""

    class _Protocol(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[None]) -> None:
            self.done = done

        def data_received(self, data: bytes) -> None:
            pass

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def probe(self, site: Any) -> Any:
        from sentinel.probes.result import ProbeResult

        loop = asyncio.get_running_loop()
        done = loop.create_future()
        port = int(site.target.rsplit(":", 1)[1].rstrip("/"))
        transport, _ = await loop.create_connection(lambda: self._Protocol(done), "127.0.0.1", port)
        transport.write(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        await done
        return ProbeResult(ok=True, reason="ok", message="", started_at=0.0, total=0.0)


async def _measure(
    prober_name: str, port: int, probes: int, concurrency: int, rate: float, cert_dir: str | None
) -> dict[str, Any]:
    import ssl

    sys.path.insert(0, str(HERE.parent.parent / "tests"))  # the aiohttp reference lives there
    from http_reference import HttpProber

    from sentinel.config import SiteConfig
    from sentinel.probes.lean import LeanHttpProber

    scheme = "https" if cert_dir else "http"
    site = SiteConfig(name="b", kind="http", target=f"{scheme}://127.0.0.1:{port}/", timeout=10)
    ssl_context = None
    if cert_dir is not None:
        ssl_context = ssl.create_default_context(cafile=f"{cert_dir}/ca.pem")
    prober: HttpProber | LeanHttpProber | _NullProber
    if prober_name == "null":
        prober = _NullProber()
    elif prober_name == "bare":
        prober = _BareProber()
    elif prober_name == "aiohttp":
        prober = HttpProber(ssl_context=ssl_context)
    else:
        prober = LeanHttpProber(ssl_context=ssl_context)
    reasons: dict[str, int] = {}

    async def one() -> None:
        result = await prober.probe(site)
        reasons[result.reason] = reasons.get(result.reason, 0) + 1

    async def run(count: int) -> None:
        if rate:  # evenly spaced, as a daemon's schedule: no batching of probes in the loop
            loop = asyncio.get_running_loop()
            tasks: list[asyncio.Task[None]] = []
            start = loop.time() + 0.05
            for i in range(count):
                loop.call_at(start + i / rate, lambda: tasks.append(loop.create_task(one())))
            while len(tasks) < count:
                await asyncio.sleep(max(0.01, start + count / rate - loop.time()))
            await asyncio.gather(*tasks)
            return
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async with prober:
        await run(max(200, probes // 10))  # warm-up: imports, caches, the loop's first wakeups
        reasons.clear()
        rss0 = _rss_mib()
        wall0, cpu0, times0 = time.perf_counter(), time.process_time(), os.times()
        await run(probes)
        cpu, wall, times1 = time.process_time() - cpu0, time.perf_counter() - wall0, os.times()
        rss1 = _rss_mib()
    return {
        "cpu_ms_per_probe": cpu / probes * 1000,
        "user_ms_per_probe": (times1.user - times0.user) / probes * 1000,
        "sys_ms_per_probe": (times1.system - times0.system) / probes * 1000,
        "probes_per_s": probes / wall,
        "rss_mib_before": rss0,
        "rss_mib_after": rss1,
        "reasons": reasons,
    }


def _child(args: argparse.Namespace) -> None:
    coro = _measure(args.prober, args.port, args.probes, args.concurrency, args.rate, args.cert_dir)
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(coro)
    else:
        result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------ the orchestration


def _make_certs(directory: str) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(f"{directory}/ca.pem")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        f"{directory}/server.pem"
    )


def _start_server(cert_dir: str | None, use_uvloop: bool) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, str(HERE), "--serve"]
    if cert_dir:
        cmd += ["--cert-dir", cert_dir]
    if use_uvloop:
        cmd += ["--loop", "uvloop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        proc.wait()
        raise SystemExit("the server did not start")
    return proc, int(json.loads(line)["port"])


def _run_child(
    prober: str, loop: str, port: int, args: argparse.Namespace, cert_dir: str | None
) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE), "--child", "--prober", prober, "--loop", loop]
    cmd += ["--port", str(port), "--probes", str(args.probes)]
    cmd += ["--concurrency", str(args.concurrency), "--rate", str(args.rate)]
    if cert_dir:
        cmd += ["--cert-dir", cert_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{prober}/{loop} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="probes per second, evenly spaced (default 0: as fast as --concurrency allows)",
    )
    parser.add_argument(
        "--probers",
        default=",".join(PROBERS),
        help="comma-separated, from aiohttp, lean and the baselines bare, null",
    )
    parser.add_argument("--tls", action="store_true", help="probe https:// (a trustme CA)")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop rows")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prober", choices=PROBERS + BASELINES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(_serve(args.cert_dir))
        else:
            asyncio.run(_serve(args.cert_dir))
        return
    if args.child:
        _child(args)
        return

    loops = ["asyncio"] + (["uvloop"] if _have_uvloop() and not args.no_uvloop else [])
    wanted = [p for p in args.probers.split(",") if p in PROBERS + BASELINES]
    configs = [(prober, loop) for loop in loops for prober in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        cert_dir = tmp if args.tls else None
        if cert_dir:
            _make_certs(cert_dir)
        # The server uses uvloop when it can, so that it is never the bottleneck.
        server, port = _start_server(cert_dir, use_uvloop="uvloop" in loops)
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
        try:
            for run in range(args.runs):
                for prober, loop in configs:
                    sample = _run_child(prober, loop, port, args, cert_dir)
                    samples[prober, loop].append(sample)
                    bad = {k: v for k, v in sample["reasons"].items() if k != "ok"}
                    print(
                        f"run {run + 1}: {prober:7} {loop:7} "
                        f"{sample['cpu_ms_per_probe']:.3f} ms CPU/probe "
                        f"(user {sample['user_ms_per_probe']:.3f}, "
                        f"sys {sample['sys_ms_per_probe']:.3f}), "
                        f"{sample['probes_per_s']:.0f} probes/s, RSS "
                        f"{sample['rss_mib_before']:.1f} -> {sample['rss_mib_after']:.1f} MiB"
                        + (f"  FAILURES {bad}" if bad else ""),
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)

    base = statistics.median(s["cpu_ms_per_probe"] for s in samples[configs[0]])
    print()
    first = "/".join(configs[0])
    print(f"{'prober':8} {'loop':8} {'median ms CPU/probe':>20} {'vs ' + first:>19}")
    table = []
    for prober, loop in configs:
        median = statistics.median(s["cpu_ms_per_probe"] for s in samples[prober, loop])
        table.append({"prober": prober, "loop": loop, "cpu_ms_per_probe_median": median})
        print(f"{prober:8} {loop:8} {median:20.3f} {median / base:18.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "probes": args.probes,
                    "concurrency": args.concurrency,
                    "runs": args.runs,
                    "tls": args.tls,
                    "rate": args.rate,
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "table": table,
                    "samples": {f"{p}/{lo}": v for (p, lo), v in samples.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
