"""The network canary: is sentinel's own network down, rather than the sites?

`[sentinel] canaries` are URLs (`tcp://9.9.9.9:53`, `https://example.org/`) probed like sites (the
same probes) but not sites: not on the status page as sites, no alerts of their own. When every
canary failed CANARY_FAILURES probes in a row the network is down: while it is, site alerts are
held (the daemon mutes the sites, as in a maintenance window), and when a site fails too one
NETWORK alert goes out. When a canary passes again the network is up: the NETWORK incident gets
its RECOVERED, and sites still down are alerted at their next probe.

Canaries are probed every `interval` and at once (at most every MIN_GAP seconds) when a site
probe fails, so the network's state is fresh when a failing site is confirmed DOWN. The open
NETWORK incident is kept in the store (meta), so its RECOVERED also comes after a restart.
Visible as `sentinel_network_up` and as "network" in /api/status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sentinel.config import SiteConfig
from sentinel.notify.group_message import NetworkNews
from sentinel.notify.wording import failure_words
from sentinel.probes.result import ProbeResult
from sentinel.promtext import Gauge, Registry
from sentinel.sanitize import escape_html
from sentinel.store import Store, StoreError
from sentinel.web import iso_utc

__all__ = ["CANARY_FAILURES", "Canaries", "CanaryBoard", "canary_interval", "canary_site"]

log = logging.getLogger("sentinel")

CANARY_FAILURES = 2  # failed probes in a row, of every canary, before the network is down
DEFAULT_INTERVAL = 10.0
MIN_GAP = 1.0  # seconds between two rounds started by failing sites
META_KEY = "network_incident"


def canary_interval(sites: Sequence[SiteConfig]) -> float:
    """How often canaries are probed: every 10s, or as often as the quickest site retries."""
    return min([DEFAULT_INTERVAL, *(s.policy.retry_interval for s in sites)])


def canary_site(url: str, interval: float) -> SiteConfig:
    """The probe settings of a canary: a site named after its URL, timeout half the interval."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        return SiteConfig(
            name=url, kind="tcp", target=parts.netloc, interval=interval, timeout=interval / 2
        )
    return SiteConfig(name=url, kind="http", target=url, interval=interval, timeout=interval / 2)


@dataclass
class CanaryBoard:
    """The canaries' recent results and the NETWORK incident. Pure: times are passed in."""

    urls: tuple[str, ...]
    failures: dict[str, int] = field(default_factory=dict)  # consecutive failed probes
    last: dict[str, str] = field(default_factory=dict)  # the last result in words
    incident: str | None = None  # the open NETWORK incident (its alert went out)
    since: float | None = None  # when every canary had failed

    @property
    def down(self) -> bool:
        """Every canary failed its last CANARY_FAILURES probes (never without canaries)."""
        return bool(self.urls) and all(
            self.failures.get(u, 0) >= CANARY_FAILURES for u in self.urls
        )

    def record(self, url: str, ok: bool, what: str, now: float) -> None:
        self.failures[url] = 0 if ok else self.failures.get(url, 0) + 1
        self.last[url] = what
        if self.down and self.since is None:
            self.since = now
        if not self.down:
            self.since = None

    def news(self, now: float, sites_failing: bool) -> NetworkNews | None:
        """The NETWORK alert to send now (down, and a site fails too), its RECOVERED (a canary
        passes again), or None."""
        canaries = tuple((u, self.last.get(u, "not probed yet")) for u in self.urls)
        if self.down and self.incident is None and sites_failing:
            since = self.since if self.since is not None else now
            self.incident = f"net-{int(since)}"
            return NetworkNews(False, self.incident, since, now, canaries)
        if (
            not self.down
            and self.incident is not None
            and any(self.failures.get(u, 1) == 0 for u in self.urls)
        ):
            incident, self.incident = self.incident, None
            return NetworkNews(True, incident, _since_of(incident), now, canaries)
        return None


def _since_of(incident: str) -> float:
    try:
        return float(incident.removeprefix("net-"))
    except ValueError:
        return 0.0


def _words(result: ProbeResult) -> str:
    if result.ok:
        return f"ok in {round(result.total * 1000)} ms"
    return failure_words(result.reason, result.message)


class Canaries:
    """Probes the canaries (run `run()` as a task) and reports NETWORK news through `on_news`."""

    def __init__(
        self,
        urls: Sequence[str],
        probe: Callable[[SiteConfig], Any],  # async: a SiteConfig in, a ProbeResult out
        on_news: Callable[[NetworkNews], None],
        sites_failing: Callable[[], bool],
        registry: Registry,
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._probe = probe
        self._on_news = on_news
        self._sites_failing = sites_failing
        self._poke = asyncio.Event()
        self._store: Store | None = None
        self.board = CanaryBoard(tuple(urls))
        self.interval = interval
        self.up_gauge = Gauge(
            "sentinel_network_up",
            "1 while a network canary answers (or none is configured), 0 while every one fails",
            registry=registry,
        )
        self.up_gauge.set(1)

    @property
    def holding(self) -> bool:
        """Site alerts are held: sentinel's own network is down."""
        return self.board.down

    def configure(self, urls: Sequence[str], interval: float) -> None:
        """A reload: the new canaries start with a clean slate (an open incident stays open)."""
        if tuple(urls) != self.board.urls:
            self.board = CanaryBoard(tuple(urls), incident=self.board.incident)
        self.interval = interval

    def restore(self, store: Store | None) -> None:
        """Reopen the NETWORK incident left open by the last run."""
        self._store = store
        if store is None:
            return
        try:
            text = store.get_meta(META_KEY)
        except StoreError as exc:
            log.error("cannot read the network incident: %s", exc)
            return
        if text:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.board.incident = str(json.loads(text)["incident"])

    def poke(self) -> None:
        """A site probe failed: probe the canaries soon."""
        if self.board.urls:
            self._poke.set()

    def banner(self) -> str:
        """The status page's warning while the network is down (empty otherwise)."""
        if not self.board.down:
            return ""
        since = iso_utc(self.board.since) or ""
        return (
            "<p class='network' style='background:#fdd;border:2px solid #c00;padding:.6em'>"
            f"<strong>sentinel cannot reach the internet</strong> since {escape_html(since)}: "
            "every canary fails, so the sites' states below may be wrong and their alerts are "
            "held.</p>"
        )

    def view(self) -> dict[str, Any]:
        """/api/status's "network"."""
        board = self.board
        return {
            "up": not board.down,
            "since": iso_utc(board.since),
            "incident": board.incident,
            "canaries": [
                {"url": u, "failures": board.failures.get(u, 0), "last": board.last.get(u)}
                for u in board.urls
            ],
        }

    async def run(self) -> None:
        """Probe every `interval`, or at most every MIN_GAP while sites fail; never ends."""
        while True:
            if self.board.urls:
                await self.round()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poke.wait()
            await asyncio.sleep(MIN_GAP)
            self._poke.clear()

    async def round(self) -> None:
        """Probe every canary once, then say what changed."""
        board = self.board
        sites = [canary_site(u, self.interval) for u in board.urls]
        results = await asyncio.gather(*(self._probe(s) for s in sites), return_exceptions=True)
        now = time.time()
        for url, result in zip(board.urls, results, strict=True):
            if isinstance(result, ProbeResult):
                board.record(url, result.ok, _words(result), now)
            else:
                board.record(url, False, f"error: {result!r}", now)
        self.up_gauge.set(0 if board.down else 1)
        news = board.news(now, self._sites_failing())
        if news is None:
            return
        if news.up:
            log.warning("NETWORK up again: a canary answers %s", news.incident_id)
        else:
            log.warning("NETWORK down: every canary fails; site alerts are held")
        self._save(None if news.up else news.incident_id)
        self._on_news(news)

    def _save(self, incident: str | None) -> None:
        if self._store is None:
            return
        try:
            text = "" if incident is None else json.dumps({"incident": incident})
            self._store.set_meta(META_KEY, text)
        except StoreError as exc:
            log.error("cannot save the network incident: %s", exc)
