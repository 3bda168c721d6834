"""Outage grouping, the decision: which held alerts go out now, and which go out as one. Pure: no
clock, no I/O (`now` is passed in).

A DOWN or RECOVERED alert waits in the outbox for `wait` seconds (`[sentinel] group_wait`) with a
grouping key (the checked host). When the oldest waiting alert of a kind reaches its deadline, it
goes out together with every alert of that kind that arrived within `wait` of it:

- at least `min_size` of them (`[sentinel] group_min`): one alert for all;
- fewer: one alert per host, so the HTTP and TCP checks of one host give one alert, whatever
  `min_size` (checks of one host are grouped by default), and unrelated sites one each.

So every held alert is released exactly once, none waits longer than `wait` (plus the sender's
tick), and a release of several alerts has `min_size` of them or shares a host (tested with
hypothesis in tests/test_grouping.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["GROUPED_KINDS", "Held", "Release", "decide", "host_key"]

# The kinds that wait to be grouped; every other alert goes out at once.
GROUPED_KINDS = frozenset({"down", "recovered"})


@dataclass(frozen=True, slots=True)
class Held:
    """A waiting alert as the decision sees it."""

    id: int
    kind: str
    key: str  # the grouping key: the checked host
    created_at: float


@dataclass(frozen=True, slots=True)
class Release:
    """Alerts to send now: one id = as it is; several = one grouped alert (ids oldest first)."""

    kind: str
    ids: tuple[int, ...]

    @property
    def grouped(self) -> bool:
        return len(self.ids) > 1


def host_key(target: str | None) -> str:
    """The host a site checks: "example.org" for "https://example.org/x", "db" for "db:5432"
    (a URL without a scheme is host:port). Lower-cased; "" when there is none."""
    if not target:
        return ""
    if "://" in target:
        host = urlsplit(target).hostname or ""
    else:
        host = target.rpartition(":")[0] or target
        host = host.strip("[]")
    return host.lower()


def decide(held: Iterable[Held], now: float, *, wait: float, min_size: int) -> list[Release]:
    """The releases due at `now`, oldest first; alerts not in any of them keep waiting."""
    by_kind: dict[str, list[Held]] = {}
    for item in sorted(held, key=lambda h: (h.created_at, h.id)):
        by_kind.setdefault(item.kind, []).append(item)
    releases: list[tuple[float, Release]] = []
    for kind, items in by_kind.items():
        start = 0
        while start < len(items) and items[start].created_at + wait <= now:
            oldest = items[start].created_at
            end = start
            while end < len(items) and items[end].created_at <= oldest + wait:
                end += 1
            batch = items[start:end]
            for ids in _split(batch, min_size):
                releases.append((oldest, Release(kind, ids)))
            start = end
    releases.sort(key=lambda r: (r[0], r[1].ids[0]))
    return [release for _, release in releases]


def _split(batch: Sequence[Held], min_size: int) -> list[tuple[int, ...]]:
    """One group of a batch large enough, else one per host (in order of first arrival)."""
    if len(batch) >= min_size:
        return [tuple(sorted(h.id for h in batch))]
    hosts: dict[str, list[int]] = {}
    for item in batch:
        # A check without a host (should not happen) is never grouped with another.
        key = item.key or f"\0{item.id}"
        hosts.setdefault(key, []).append(item.id)
    return [tuple(sorted(ids)) for ids in hosts.values()]
