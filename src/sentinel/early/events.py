"""The values the early warnings hand to the rest of sentinel: trend started/ended, OOM. Frozen,
self-contained (an email can be built from an event alone), each with an id for threading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TrendKind = Literal["creeping", "disk", "slower", "self", "steal"]


@dataclass(frozen=True, slots=True)
class MemoryEvents:
    """Counters of a cgroup's memory.events (cumulative since the cgroup was created)."""

    oom_kill: int = 0
    high: int = 0
    max: int = 0
    oom: int = 0


@dataclass(frozen=True, slots=True)
class TrendStarted:
    """A confirmed trend. Field meanings by kind:

    - creeping / self: `level` bytes now (fitted floor), `rate_per_s` bytes/s, `limit` bytes
      (`limit_source` "memory.high", "memory.max", "limit" from the config, or "MemTotal").
    - disk: `level` bytes used, `rate_per_s` bytes/s, `limit` the size of the filesystem.
    - slower: `level` the recent median latency (s), `usual` the baseline median (s).
    - steal: `level` the mean steal ratio over the streak, `limit` the configured threshold.
    `samples`, `buckets`, `covered`, `window`, `evaluations` are the evidence behind the verdict.
    """

    kind: TrendKind
    subject: str  # the watch, the mount point, the site, "sentinel", "cpu"
    trend_id: str  # stable for the life of the trend: threads the RESOLVED email to this one
    at: float
    since: float  # the first evaluation that saw it
    level: float
    rate_per_s: float = 0.0
    limit: float | None = None
    limit_source: str = ""
    seconds_to_limit: float | None = None
    usual: float | None = None
    samples: int = 0
    buckets: int = 0
    covered: float = 0.0
    window: float = 0.0
    evaluations: int = 0
    source: str = ""  # "unit x.service", "pid file /run/x.pid", ... for the body


@dataclass(frozen=True, slots=True)
class TrendEnded:
    """The end of a trend that was warned about; carries the warning so RESOLVED can quote it."""

    warning: TrendStarted
    at: float
    reason: str  # "restarted", "stopped rising: ...", "back to usual", ...
    level: float | None = None  # the level when it ended, when known

    @property
    def kind(self) -> TrendKind:
        return self.warning.kind

    @property
    def subject(self) -> str:
        return self.warning.subject

    @property
    def trend_id(self) -> str:
        return self.warning.trend_id


@dataclass(frozen=True, slots=True)
class OomEvent:
    """The kernel killed a process of a watched unit (oom_kill) or throttled it at memory.high
    (high), since the last sample (or since the last OomEvent, when several were coalesced)."""

    watch: str
    event_id: str
    at: float
    oom_kills: int
    high_events: int
    level: float | None = None
    limit: float | None = None
    limit_source: str = ""
    source: str = ""

    @property
    def trend_id(self) -> str:
        return self.event_id


EarlyEvent = TrendStarted | TrendEnded | OomEvent


def trend_id_for(kind: str, subject: str, since: float) -> str:
    return f"{kind}:{subject}:{since:.3f}"
