"""CPU per host-name lookup: uvloop's getaddrinfo (sentinel's path) vs c-ares (aiodns/pycares).

    .venv/bin/pip install aiodns   # not a dependency of sentinel: only this comparison uses it
    .venv/bin/python bench/dns_cpu.py [--lookups 3000] [--runs 3]

Runs inside loopdns.py's namespaces (root, `unshare`, `dnsmasq`): every lookup of
`t<i>.bench.test` is a real UDP query answered by dnsmasq on loopback, as in
`compare.py --names`. The lookups come as a daemon's do at 1,000 sites every 10 s: 5 at a time
every 50 ms (the scheduler's batch window). Each resolver's CPU (`time.process_time()`: this
process, all threads) per lookup is printed per run, interleaved, with the medians. Without
dnsmasq, root or aiodns it prints why and exits 0. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import loopdns

BATCH = 5
BATCH_WINDOW = 0.05


async def _lookups(kind: str, count: int) -> float:
    loop = asyncio.get_running_loop()
    one: Callable[[int], Awaitable[Any]]
    if kind == "c-ares":
        import aiodns

        resolver = aiodns.DNSResolver(loop=loop)

        def one(i: int) -> Awaitable[Any]:
            return resolver.getaddrinfo(  # type: ignore[no-any-return]
                f"t{i}.bench.test", port=80, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
    else:

        def one(i: int) -> Awaitable[Any]:
            return loop.getaddrinfo(
                f"t{i}.bench.test", 80, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )

    for i in range(50):  # warm up (threads, sockets)
        await one(i)
    cpu0, t0 = time.process_time(), time.monotonic()
    for i in range(0, count, BATCH):
        await asyncio.gather(*(one(i + k) for k in range(BATCH)))
        await asyncio.sleep(BATCH_WINDOW - ((time.monotonic() - t0) % BATCH_WINDOW))
    return 1000 * (time.process_time() - cpu0) / count


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--lookups", type=int, default=3000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    try:
        import aiodns  # noqa: F401
        import uvloop
    except ImportError as exc:
        print(f"dns_cpu.py skipped: {exc}", file=sys.stderr)
        return 0
    if not loopdns.inside():
        why = loopdns.unavailable()
        if why is not None:
            print(f"dns_cpu.py skipped: {why}", file=sys.stderr)
            return 0
        return loopdns.reexec([__file__, *sys.argv[1:]])
    runs: dict[str, list[float]] = {"getaddrinfo (uvloop)": [], "c-ares": []}
    with loopdns.LoopbackDns(args.lookups + BATCH):
        for _ in range(args.runs):
            for kind, figures in runs.items():
                figures.append(round(uvloop.run(_lookups(kind, args.lookups)), 4))
    result = {kind: {"runs": v, "median": statistics.median(v)} for kind, v in runs.items()}
    print(json.dumps({"ms_cpu_per_lookup": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
