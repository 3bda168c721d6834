"""Where the CPU goes: top functions of py-spy "raw" (collapsed stack) profiles.

    .venv/bin/python bench/pyspy_top.py bench/results/*-pyspy-1000-run1.txt [--top 30]

py-spy records only non-idle samples by default, so the shares are of the time sentinel was on the
CPU. Prints (1) self time per function (the leaf frame; line numbers dropped), (2) inclusive time
per function (on the stack anywhere, counted once per sample), (3) self time by area (the file's
package: aiohttp, asyncio, prometheus_client, sentinel, ...), as markdown tables.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def parse_frame(frame: str) -> tuple[str, str]:
    m = _FRAME_RE.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return m.group("func"), m.group("file")


def area(path: str) -> str:
    p = path.replace("\\", "/")
    for marker, name in (
        ("/aiohttp/", "aiohttp"),
        ("/yarl/", "yarl"),
        ("/multidict/", "multidict"),
        ("/prometheus_client/", "prometheus_client"),
        ("/sentinel/", "sentinel"),
        ("/pydantic", "pydantic"),
        ("/aiosmtplib/", "aiosmtplib"),
        ("/asyncio/", "asyncio"),
        ("/sqlite3/", "sqlite3"),
    ):
        if marker in p:
            return name
    base = p.rsplit("/", 1)[-1]
    if base in ("ssl.py", "socket.py", "selectors.py", "logging/__init__.py"):
        return base
    if "/lib/python3" in p or p.startswith("<"):
        return f"stdlib:{base}"
    return base


def short(func: str, path: str) -> str:
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in p:
            p = p.split(marker, 1)[1]
            break
    return f"{func} ({p})"


def analyse(paths: list[Path]) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [parse_frame(f) for f in stack.split(";")]
            # py-spy puts the thread ("process 123:..." / "thread (0x..)") first: drop it
            frames = [f for f in frames if not f[0].startswith(("process ", "thread "))]
            if not frames:
                continue
            total += count
            leaf = frames[-1]
            self_time[short(*leaf)] += count
            areas[area(leaf[1])] += count
            for name in {short(*f) for f in frames}:
                inclusive[name] += count
    return self_time, inclusive, areas, total


def table(counter: Counter[str], total: int, top: int, header: str) -> str:
    lines = [f"| {header} | share | samples |", "|---|---|---|"]
    for name, count in counter.most_common(top):
        lines.append(f"| `{name}` | {100 * count / total:.1f} % | {count} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("profiles", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    self_time, inclusive, areas, total = analyse(args.profiles)
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples (non-idle) from {len(args.profiles)} profile(s)\n")
    print("Self time by area (leaf frame's package)\n")
    print(table(areas, total, args.top, "area"))
    print("\nSelf time by function\n")
    print(table(self_time, total, args.top, "function"))
    print("\nInclusive time by function\n")
    print(table(inclusive, total, args.top, "function"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
