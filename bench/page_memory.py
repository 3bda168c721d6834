"""Where the memory of the history and the status page goes at many sites.

Builds the same store as `status_page.py` (`--sites` sites of full history), then does what the
daemon does with history on and the page polled: the page's warm-up after a start, then
`--polls` requests 10 s of simulated time apart, every site probed in between and a write every
6th poll. Reports:

- tracemalloc: what was allocated since before the recorder, the reader and the page were made
  and is still held after the polls, in total and by source line (top `--top`);
- the same split by owner, measured by walking the objects (each object counted once, in this
  order): the reader's kept figures, the page's block cache, the recorder's pending deltas, its
  coverage and other per-site state;
- the process's RSS before and after (a rough figure: the allocator keeps freed memory).

    .venv/bin/python bench/page_memory.py [--sites 1000] [--polls 12] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import tempfile
import time
import tracemalloc
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from status_page import Clock, build, probe_all

from sentinel.config import SiteConfig
from sentinel.history.query import HistoryReader
from sentinel.history.recorder import HistoryRecorder
from sentinel.history.settings import HistoryConfig, StatusPageConfig
from sentinel.monitor import ResultSummary, SiteState, Status
from sentinel.store import Store
from sentinel.webviews.pages import StatusPages


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of `obj` and everything it holds that `seen` has not counted yet (containers,
    slotted and plain objects; functions, modules and classes are not followed)."""
    size = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (type, type(sys), type(deep_size))):
            continue
        seen.add(id(o))
        size += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, (str, bytes, int, float, array)) or o is None:
            continue
        else:
            for cls in type(o).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(o, slot):
                        stack.append(getattr(o, slot))
            if hasattr(o, "__dict__"):
                stack.append(o.__dict__)
            if hasattr(o, "func") and hasattr(o, "args"):  # functools.partial
                stack.extend(o.args)
    return size


async def run(args: argparse.Namespace) -> dict[str, Any]:
    start = (int(time.time()) // 3600) * 3600 + 1200.0
    names = [f"site-{i:05d}.example.org" for i in range(args.sites)]
    sites = {n: SiteConfig(name=n, kind="http", target=f"https://{n}/") for n in names}
    ok = ResultSummary(at=start - 5, ok=True, status=200, total=0.08, reason="ok", message="")
    states = {
        n: SiteState(site=n, status=Status.UP, since=start - 86400, recent=(ok,)) for n in names
    }
    rng = random.Random(2)
    out: dict[str, Any] = {"sites": args.sites, "polls": args.polls}
    with tempfile.TemporaryDirectory() as tmp, Store.open(tmp) as store:
        build(store, names, start)
        clock = Clock(start)
        gc.collect()
        rss0 = rss_kib()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
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
        probe_all(recorder, sites, states, clock.t, rng)
        warm = getattr(pages, "warm", None)
        if warm is not None:
            await warm()
        else:  # (code from before the warm-up: a first request instead)
            first = pages.index()
            assert first.chunks is not None
            for _ in first.chunks():
                pass
            del first
        for i in range(args.polls):
            clock.t += 10
            probe_all(recorder, sites, states, clock.t, rng)
            if i % 6 == 5:
                await recorder.flush()
            reply = pages.index()
            assert reply.chunks is not None
            for _ in reply.chunks():
                pass
        del reply  # (what a request holds while it is served is not kept)
        gc.collect()
        after = tracemalloc.take_snapshot()
        held = sum(s.size_diff for s in after.compare_to(before, "filename"))
        lines = after.compare_to(before, "lineno")[: args.top]
        tracemalloc.stop()
        seen: set[int] = {id(sites), id(states), *map(id, sites.values()), *map(id, names)}
        seen.update(id(s) for s in states.values())
        owners = {
            "reader: kept figures": deep_size(reader._sites, seen),
            "page: block cache": deep_size(pages._blocks._sites, seen),
            "recorder: pending deltas": deep_size(recorder.pending, seen),
            "recorder: coverage": deep_size(recorder._coverage, seen),
            "recorder: other": deep_size(
                (recorder.cert_expiry, recorder._last_failure, recorder._excused), seen
            ),
        }
        out["tracemalloc_held_kib"] = round(held / 1024)
        out["per_site_bytes"] = round(held / args.sites)
        out["owners_kib"] = {k: round(v / 1024) for k, v in owners.items()}
        out["owners_per_site_bytes"] = {k: round(v / args.sites) for k, v in owners.items()}
        out["top_lines"] = [
            {"where": str(s.traceback[0]), "kib": round(s.size_diff / 1024), "count": s.count_diff}
            for s in lines
        ]
        out["rss_mib_before_after"] = [round(rss0 / 1024, 1), round(rss_kib() / 1024, 1)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=12)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            if k != "top_lines":
                print(f"{k}: {v}")
        for line in result["top_lines"]:
            print(f"  {line['kib']:>7} KiB {line['count']:>8}  {line['where']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
