"""What the early warnings know about the local services and the host right now, as plain values
for other parts of sentinel (a DOWN email says what happened to the services a site runs on).
Frozen; no behaviour beyond counting a bounded event log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DiskFacts", "HostFacts", "WatchFacts", "count_since"]

# How many restarts and OOM kills a watch remembers (its log is a ring of this many entries).
EVENT_LOG_SIZE = 64


@dataclass(frozen=True, slots=True)
class WatchFacts:
    """A watched service: its recent restarts and OOM kills, its memory and its trend."""

    name: str
    source: str  # "unit blog-app.service", ...
    span: float  # the seconds `restarts` and `oom_kills` count over (the last hour)
    restarts: int = 0
    oom_kills: int = 0
    memory: float | None = None  # bytes (anon memory, or RSS for a process)
    limit: float | None = None
    limit_source: str = ""  # "memory.max", "memory.high", "limit", "MemTotal"
    growth_per_s: float | None = None  # fitted growth of the memory floor, bytes/s
    growth_over: float = 0.0  # seconds of samples behind that growth
    error: str = ""  # why it cannot be read, when it cannot


@dataclass(frozen=True, slots=True)
class DiskFacts:
    mount: str
    used: float
    size: float


@dataclass(frozen=True, slots=True)
class HostFacts:
    steal: float | None = None  # share of CPU time stolen between the last two samples
    disks: tuple[DiskFacts, ...] = ()


def count_since(log: Iterable[tuple[float, str, int]], kind: str, since: float) -> int:
    """Sum of the counts of `kind` entries at or after `since` in an event log."""
    return sum(n for at, what, n in log if what == kind and at >= since)
