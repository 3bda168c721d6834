"""Real child processes that hold, leak or churn memory, always killed by PID at the end."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1024 * 1024

# Private anonymous mmap (a shared one would count as RssShmem), every page written: it counts in
# RssAnon at once, and munmap gives it back at once (no allocator keeping freed memory), so the
# numbers are exactly what the child does.
_PRELUDE = """
import mmap, sys, time
PAGE = 4096
def touched(size):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m[::PAGE] = b"\\x01" * (size // PAGE)
    return m
"""

HOLD = (
    _PRELUDE
    + """
held = touched(int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read()
"""
)

# Grows by `chunk` bytes at `rate` bytes per second (on a deadline schedule, so a late wake-up
# catches up) until `total`, then holds.
LEAK = (
    _PRELUDE
    + """
rate, total, chunk = (int(a) for a in sys.argv[1:4])
held = []
print("ready", flush=True)
start = time.monotonic()
while len(held) * chunk < total:
    delay = start + len(held) * chunk / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    held.append(touched(chunk))
sys.stdin.read()
"""
)

# Allocate-and-free: `size` bytes for `busy` seconds, then nothing for `idle` seconds, forever.
SAWTOOTH = (
    _PRELUDE
    + """
size, busy, idle = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print("ready", flush=True)
while True:
    m = touched(size)
    time.sleep(busy)
    m.close()
    time.sleep(idle)
"""
)


class Children:
    """Starts python children; `close()` kills every one of them by PID."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, code: str, *args: object) -> tuple[subprocess.Popen[str], str]:
        """Start a child and wait until it says it is ready. Returns it and a marker that is
        on its command line (and nobody else's)."""
        marker = f"sentinel-test-child-{uuid.uuid4().hex}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *(str(a) for a in args), marker],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"child did not start: {line!r}"
        return proc, marker

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@contextmanager
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()
