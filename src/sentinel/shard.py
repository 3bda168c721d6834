"""Which sites this sentinel probes when N sentinels split one list: `[sentinel] shard = "k/n"`.

Pure. Rendezvous (highest-random-weight) hashing: every site scores each shard 1..n with a hash of
(shard, site name) and belongs to the shard with the highest score. So each site is on exactly one
shard, every shard decides on its own (no coordination, the same file everywhere), and going from
n to n+1 shards moves only the sites whose new shard n+1 outscores their old one: about 1/(n+1) of
them, all onto the new shard. The hash is BLAKE2b of the name's UTF-8 (never Python's `hash()`,
which is salted per process) mixed with the shard number by splitmix64's finalizer, so the answer
is the same in every process, on every machine and version.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_SHARDS", "Shard", "parse_shard", "shard_of"]

MAX_SHARDS = 256  # a typo guard: nobody splits one list over more machines
_SHARD_RE = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (1-based, as written: "2/3")."""

    index: int
    count: int

    def owns(self, site: str) -> bool:
        return shard_of(site, self.count) == self.index

    def select(self, sites: Iterable[str]) -> list[str]:
        """The names among `sites` that this shard probes, in their order."""
        return [name for name in sites if self.owns(name)]

    @property
    def owns_heartbeats(self) -> bool:
        """Heartbeats are pushed to one sentinel's /ping, not probed: shard 1 watches them all."""
        return self.index == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / phi: spreads the shard numbers over 64 bits


@functools.lru_cache(maxsize=8)
def _shard_keys(count: int) -> tuple[int, ...]:
    return tuple((shard * _GOLDEN) & _MASK for shard in range(1, count + 1))


def shard_of(site: str, count: int) -> int:
    """The shard (1..count) that probes `site`: the one with the highest score, splitmix64's
    finalizer (a 64-bit bijection that spreads every input bit) of the BLAKE2b hash of the name
    XOR the shard's key. One hash per site, then integer arithmetic. Ties (a 64-bit collision)
    go to the lowest shard."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if count == 1:
        return 1
    h = int.from_bytes(hashlib.blake2b(site.encode(), digest_size=8).digest(), "big")
    best, best_score = 0, -1
    for index, key in enumerate(_shard_keys(count)):
        x = h ^ key
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
        if x > best_score:
            best, best_score = index, x
    return best + 1


def parse_shard(value: object) -> Shard:
    """'2/3' -> Shard(2, 3); raises ValueError with a one-line message otherwise."""
    match = _SHARD_RE.match(value) if isinstance(value, str) else None
    if match is not None:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count <= MAX_SHARDS:
            return Shard(index, count)
    raise ValueError(
        f'invalid shard {value!r} (use "k/n" with 1 <= k <= n <= {MAX_SHARDS}, e.g. "2/3")'
    )
